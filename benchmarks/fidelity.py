"""Fidelity: magnitude, Wanda and SparseGPT here against the original repositories' own code, on one model
load, the same calibration samples and the same evaluation tokens, side by side in one run.

    git clone https://github.com/locuslab/wanda /tmp/wanda
    git clone https://github.com/IST-DASLab/sparsegpt /tmp/sparsegpt
    python benchmarks/fidelity.py --wanda /tmp/wanda --sparsegpt /tmp/sparsegpt

Their pruning and perplexity functions run unchanged: magnitude and Wanda from locuslab/wanda's
lib/prune.py, SparseGPT from IST-DASLab/sparsegpt's llama.py (`llama_sequential`), perplexity from
locuslab/wanda's `eval_ppl_wikitext`. They were written for transformers 4.3x and a GPU; what is adapted
here, and only from the outside:
- their calibration loader returns our samples, as (input, target) pairs like theirs;
- transformers 5 decoder layers need the rotary embeddings passed in and return a tensor, where they call
  `layer(h, attention_mask=..., position_ids=...)[0]`: each layer sits in a wrapper that computes the
  embeddings from the position ids (0..T-1 when none are given, as old layers did) and returns a tuple;
- without CUDA, `.cuda()` (Wanda's magnitude threshold) is the identity and `torch.cuda.synchronize()`
  (SparseGPT's timing) does nothing; `hf_device_map` is empty;
- `datasets` may be absent: their data module only needs the name at import.
To measure each side's own numerical spread: `--batch-size` sets our walker's samples per forward (our
Hessian sums batches of that many), `--their-hessian-batch K` makes SparseGPT's `add_batch` take K samples
at once where their loop adds one at a time (the same sum in another rounding order), `--seed` another
calibration sampling for both.
Printed per method and pattern: our perplexity, theirs, the share of weights whose pruned/kept state differs
(over all blocks, and in block 0, where both prune from the same inputs) and the relative difference of the
weights (for SparseGPT, the updated ones).
"""
import argparse
import contextlib
import io
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pruners  # noqa: E402
from evolve import config  # noqa: E402
from evolve.workbench import Workbench  # noqa: E402
from pruners import models  # noqa: E402
from pruners.data import short_name  # noqa: E402
from pruners.spec import Sparsity  # noqa: E402


class OldCall(nn.Module):
    """A transformers 5 decoder layer called the transformers 4.3x way."""

    def __init__(self, layer: nn.Module, rotary: nn.Module):
        super().__init__()
        self.layer = layer
        object.__setattr__(self, "rotary", rotary)  # shared with the model, not owned

    def forward(self, hidden, attention_mask=None, position_ids=None, **kwargs):
        if position_ids is None:
            position_ids = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)  # (1, T)
        kwargs.setdefault("position_embeddings", self.rotary(hidden, position_ids))
        out = self.layer(hidden, attention_mask=attention_mask, position_ids=position_ids, **kwargs)
        return (out,)


def quiet():
    return contextlib.redirect_stdout(io.StringIO())  # their progress prints


def their_perplexity(eval_module, model, testenc, device) -> float:
    with torch.no_grad(), quiet():  # no_grad as their eval_ppl calls it
        return eval_module.eval_ppl_wikitext(model, testenc, 1, device)


@contextlib.contextmanager
def old_transformers(model):
    """Their pruning functions' world; their perplexity needs none of it (the wrappers' tuples would break
    the transformers 5 model loop)."""
    layers = model.model.layers
    originals = list(layers)
    cuda, synchronize = torch.Tensor.cuda, torch.cuda.synchronize
    if model.config._attn_implementation != "sdpa":
        # their layers get attention_mask=None from the capture; only SDPA reads that as causal
        raise SystemExit(f"fidelity needs SDPA attention, the model uses {model.config._attn_implementation}")
    for i, layer in enumerate(originals):
        layers[i] = OldCall(layer, model.model.rotary_emb)
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *args, **kwargs: self
        torch.cuda.synchronize = lambda *args, **kwargs: None
    try:
        with quiet():
            yield
    finally:
        torch.Tensor.cuda, torch.cuda.synchronize = cuda, synchronize
        for i, layer in enumerate(originals):
            layers[i] = layer


def stub_datasets() -> None:
    """`datasets` may be absent: the originals' data modules only need the name at import."""
    try:
        import datasets  # noqa: F401
    except ImportError:
        sys.modules["datasets"] = types.SimpleNamespace(load_dataset=None)


def their_inputs(bench: Workbench, prune_module) -> tuple[list, types.SimpleNamespace]:
    """Our calibration samples as their (input, target) pairs, patched in as `prune_module`'s loader, and our
    evaluation tokens as their `testenc`; sets what their code reads off the model."""
    calibration = [(s.unsqueeze(0), None) for s in bench.host.calibration]
    prune_module.get_loaders = lambda *a, **k: (calibration, None)
    bench.host.model.seqlen, bench.host.model.hf_device_map = bench.host.seqlen, {}
    return calibration, types.SimpleNamespace(input_ids=bench.host.windows.reshape(1, -1))


def first_block(model) -> set[str]:
    """The target names of block 0's linears, where both sides prune from the same inputs."""
    block0 = {id(lin.weight) for lin in models.linears(models.blocks(model)[0]).values()}
    return {n for n, lin in models.target_linears(model).items() if id(lin.weight) in block0}


def import_originals(wanda: Path, sparsegpt: Path):
    stub_datasets()
    for path in (wanda, sparsegpt):
        if not path.is_dir():
            raise SystemExit(f"no checkout at {path}")
        sys.path.insert(0, str(path))
    import lib.eval as wanda_eval
    import lib.prune as wanda_prune
    import llama as sparsegpt_llama

    return wanda_prune, wanda_eval, sparsegpt_llama


def batch_their_hessian(SparseGPT, k: int) -> None:
    """Their H from k samples per add_batch call instead of one: the same sum, rounded in another order."""
    add_batch = SparseGPT.add_batch

    def batched(self, inp, out):
        pending = self.__dict__.setdefault("pending", [])
        pending.append(inp)
        if len(pending) == k:
            add_batch(self, torch.cat(pending), out)
            pending.clear()

    SparseGPT.add_batch = batched


def weights(model) -> dict[str, torch.Tensor]:
    return {n: lin.weight.detach().clone() for n, lin in models.target_linears(model).items()}


def mask_difference(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> float:
    """The share of weights pruned by one side only."""
    return sum(((ours[n] == 0) != (theirs[n] == 0)).sum().item() for n in ours) / sum(w.numel() for w in ours.values())


def compare(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], first: set[str]) -> tuple[float, ...]:
    """(their sparsity, mask difference, the same in the first block alone, whose inputs both sides share,
    relative Frobenius difference of the weights)"""
    their_zeros = sum((w == 0).sum().item() for w in theirs.values()) / sum(w.numel() for w in theirs.values())
    diff = sum((ours[n] - theirs[n]).pow(2).sum().item() for n in ours) ** 0.5
    norm = sum(w.pow(2).sum().item() for w in ours.values()) ** 0.5
    in_first = {n: ours[n] for n in first}
    return their_zeros, mask_difference(ours, theirs), mask_difference(in_first, theirs), diff / norm


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wanda", type=Path, required=True, help="a checkout of github.com/locuslab/wanda")
    parser.add_argument("--sparsegpt", type=Path, required=True, help="a checkout of github.com/IST-DASLab/sparsegpt")
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--methods", type=lambda t: t.split(","), default=["magnitude", "wanda", "sparsegpt"])
    parser.add_argument("--patterns", type=lambda t: t.split(","), default=["unstructured", "2:4"])
    parser.add_argument("--seed", type=int, default=0, help="calibration sampling, both sides")
    parser.add_argument("--batch-size", type=int, default=8, help="our samples per forward")
    parser.add_argument("--their-hessian-batch", type=int, default=1, help="SparseGPT's samples per add_batch (theirs: 1)")
    parser.add_argument("--also-eval", type=lambda t: t.split(","), default=[], help="other texts' perplexity (ours), e.g. text:/tmp/licenses")
    args = parser.parse_args()
    wanda_prune, wanda_eval, sparsegpt_llama = import_originals(args.wanda, args.sparsegpt)
    if args.nsamples % args.their_hessian_batch:
        raise SystemExit("--their-hessian-batch must divide --nsamples")
    if args.their_hessian_batch > 1:
        batch_their_hessian(sys.modules["sparsegpt"].SparseGPT, args.their_hessian_batch)

    overrides = {"data.nsamples": args.nsamples, "data.seqlen": args.seqlen, "data.eval_tokens": args.eval_tokens,
                 "data.seed": args.seed, "evaluate.options.perplexity.texts": args.also_eval}
    bench = Workbench(config.load(None, {"data.calib": "pydoc", "data.eval": "pydoc", **overrides}))
    model, device = bench.host.model, bench.host.device
    calibration, testenc = their_inputs(bench, wanda_prune)  # SparseGPT's llama_sequential takes the same pairs

    def theirs(method: str, n: int, m: int) -> None:
        options = types.SimpleNamespace(nsamples=args.nsamples, seed=0, sparsity_ratio=0.5, use_variant=False)
        if method == "sparsegpt":
            sparsegpt_llama.args = types.SimpleNamespace(
                nsamples=args.nsamples, sparsity=0.5, prunen=n, prunem=m, percdamp=0.01, blocksize=128,
                true_sequential=False, minlayer=-1, maxlayer=1000, prune_only="", invert=False, wbits=16,
            )
            sparsegpt_llama.llama_sequential(model, calibration, device)
        else:
            getattr(wanda_prune, f"prune_{method}")(options, model, None, device, prune_n=n, prune_m=m)

    print(f"{args.nsamples} x {args.seqlen} calibration tokens, {bench.host.windows.numel()} evaluation tokens", flush=True)
    dense = their_perplexity(wanda_eval, model, testenc, device)
    print(f"dense: ours {bench.run(pruners.method('dense'), Sparsity.parse('unstructured')).scores['perplexity']:.3f}, "
          f"theirs {dense:.3f}")
    first = first_block(model)
    print("| method | pattern | ours | theirs | our sparsity | their sparsity | masks differ | in block 0 "
          "| weights differ | ours s | theirs s |" + "".join(f" {short_name(t)} ours / theirs |" for t in args.also_eval))
    print("|---|---|---|---|---|---|---|---|---|---|---|" + "---|" * len(args.also_eval))
    for method in args.methods:
        for pattern in args.patterns:
            n, m = (0, 0) if pattern == "unstructured" else map(int, pattern.split(":"))
            # their n of m are the pruned ones, ours the kept ones: the same pattern when n = m / 2
            row = bench.run(pruners.method(method, batch_size=args.batch_size), Sparsity.parse(pattern, 0.5))
            ours = weights(model)
            bench.host.restore()
            start = time.perf_counter()
            with old_transformers(model):
                theirs(method, n, m)
            seconds = time.perf_counter() - start
            ppl = their_perplexity(wanda_eval, model, testenc, device)
            their_sparsity, masks, masks0, rel = compare(ours, weights(model), first)
            other = bench.measure() if args.also_eval else {}  # their model on the other texts, by our perplexity
            others = "".join(f" | {row.scores[f'perplexity {short_name(t)}']:.3f} / {other[f'perplexity {short_name(t)}']:.3f}"
                             for t in args.also_eval)
            print(f"| {method} | {pattern} | {row.scores['perplexity']:.3f} | {ppl:.3f} | {row.sparsity:.4f} | {their_sparsity:.4f} "
                  f"| {masks:.2%} | {masks0:.2%} | {rel:.2e} | {row.prune_seconds:.0f} | {seconds:.0f}{others} |", flush=True)


if __name__ == "__main__":
    main()
