"""Fidelity of reconstruction: ours against the paper's own code (LOG-postech/rethinking-LLM-pruning,
lib/llama/prune.py `prune_model` with lib/llama/finetune.py `train`), on one model load, the same
calibration samples and the same evaluation tokens, side by side in one run.

    git clone https://github.com/LOG-postech/rethinking-LLM-pruning /tmp/rethinking
    python benchmarks/fidelity_reconstruct.py --theirs /tmp/rethinking --runs wanda:br,sparsegpt:br+gp

Their pruning, training and SparseGPT run as written for their own LLaMA modeling file and a GPU; what is
adapted, from the outside unless said:
- their decoder layers are the model's own, each in a wrapper that takes their call (attention_mask,
  position_ids, device) and returns a tuple, its linears their `LinearMasked` sharing the model's weight
  parameters; a wrapper is built from the config alone too, as their cross-block code copies layers;
- `prepare_calibration_input` (their modeling's `flag=True` forward) gives our block-0 inputs, and their
  loader our calibration samples; the attention mask they pass is ignored (SDPA's causal mask), positions
  are 0..T-1 as theirs;
- one line of their source: without cr they prune block 0 only (`update_round = 1`); it runs with their
  own commented-out `update_round = len(layers)`;
- without CUDA `.cuda()` is the identity and `torch.cuda.synchronize()` does nothing; their autocast and GradScaler disable themselves (fp32 on CPU).
Both models are evaluated by our perplexity (the Wanda paper's protocol, matched in fidelity.py), and
both sides' reconstruction error is measured afterwards the same way: the sum over blocks of
||f_pruned - f_dense||^2 / ||f_dense||^2, the pruned model's own path against the dense one, on the
calibration samples. Our row's own `recon error` is printed next to it as a check.
"""
import argparse
import contextlib
import inspect
import io
import sys
import time
import types
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pruners  # noqa: E402
from evolve import config  # noqa: E402
from evolve.workbench import Workbench  # noqa: E402
from fidelity import stub_datasets  # noqa: E402
from pruners import models, walker  # noqa: E402
from pruners.data import short_name  # noqa: E402
from pruners.spec import Sparsity  # noqa: E402


def import_theirs(checkout: Path):
    """Their prune module, with `update_round = 1` (block 0 only, without cr) set to their own
    commented-out `len(layers)`."""
    stub_datasets()
    import transformers
    from transformers import pytorch_utils

    if not hasattr(transformers, "Conv1D"):  # their sparsegpt.py checks isinstance against it
        transformers.Conv1D = pytorch_utils.Conv1D
    if not (checkout / "lib" / "llama" / "prune.py").is_file():
        raise SystemExit(f"no checkout of rethinking-LLM-pruning at {checkout}")
    sys.path.insert(0, str(checkout))
    import lib.llama.prune as prune
    from lib.linear_type import LinearMasked

    source = inspect.getsource(prune)
    if source.count("update_round = 1\n") != 1:
        raise SystemExit("their prune.py changed: no single 'update_round = 1' to fix")
    exec(compile(source.replace("update_round = 1\n", "update_round = len(layers)\n"), prune.__file__, "exec"), prune.__dict__)
    return prune, LinearMasked


def their_layer_class(model, LinearMasked):
    """A decoder layer called their way, its target linears `LinearMasked`; built from the config alone as
    their cr code does (`type(layer)(config)`), or around one of the model's layers."""
    decoder, rotary = type(models.blocks(model)[0]), model.model.rotary_emb

    class TheirLayer(nn.Module):
        def __init__(self, config, layer: nn.Module | None = None):
            super().__init__()
            self.layer = layer if layer is not None else decoder(config, 0)
            for name, linear in list(models.linears(self.layer).items()):
                masked = LinearMasked(linear.in_features, linear.out_features, bias=linear.bias is not None)
                masked.weight, masked.bias = linear.weight, linear.bias  # shared: what they change, the model has
                parent, _, leaf = name.rpartition(".")
                setattr(self.layer.get_submodule(parent), leaf, masked)

        def forward(self, hidden, attention_mask=None, position_ids=None, device=None, **kwargs):
            positions = torch.arange(hidden.shape[1]).unsqueeze(0)  # (1, T)
            return (self.layer(hidden, position_embeddings=rotary(hidden, positions), position_ids=positions),)

    return TheirLayer


@contextlib.contextmanager
def their_world(model, calibration: torch.Tensor, prune, LinearMasked, device):
    """The model's layers in their wrappers and their calibration capture answered from ours; undone after,
    with every linear back as the model's own (their weight changes stay: the parameters are shared)."""
    layers = model.model.layers
    originals = [(layer, dict(models.linears(layer))) for layer in layers]
    TheirLayer = their_layer_class(model, LinearMasked)
    states = walker.block_inputs(model, calibration, device, batch_size=8)
    inps = torch.cat([hidden for hidden, _, _ in states]).float()  # (N, T, D)
    T = calibration.shape[1]

    def capture(_model, _loader, _device, _config):
        return inps.clone(), torch.zeros_like(inps), torch.zeros(1, 1, T, T), torch.arange(T).unsqueeze(0)

    saved = prune.prepare_calibration_input, prune.get_loaders, torch.Tensor.cuda, torch.cuda.synchronize
    prune.prepare_calibration_input = capture
    prune.get_loaders = lambda *a, **k: ([(s.unsqueeze(0), None) for s in calibration], None)
    if not torch.cuda.is_available():
        torch.Tensor.cuda = lambda self, *a, **k: self
        torch.cuda.synchronize = lambda *a, **k: None
    for i, layer in enumerate(list(layers)):
        layers[i] = TheirLayer(model.config, layer)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        prune.prepare_calibration_input, prune.get_loaders, torch.Tensor.cuda, torch.cuda.synchronize = saved
        for i, (layer, linears) in enumerate(originals):
            for name, linear in linears.items():
                parent, _, leaf = name.rpartition(".")
                setattr(layer.get_submodule(parent), leaf, linear)
            layers[i] = layer


def path_error(model, calibration, device, dense: list[list[torch.Tensor]]) -> float:
    """Sum over blocks of ||f_pruned - f_dense||^2 / ||f_dense||^2, each model on its own path."""
    total = 0.0
    for i, outputs in walker.boundaries(model, calibration, device):
        if i == 0:
            continue
        diff = sum((p.double() - d.double()).pow(2).sum().item() for p, d in zip(outputs, dense[i]))
        total += diff / sum(d.double().pow(2).sum().item() for d in dense[i])
    return total


def their_config(args, method: str, stages: set[str]):
    return types.SimpleNamespace(
        nsamples=args.nsamples, self_nsamples=0, seed=0, seqlen=args.seqlen, prune_method=method,
        sparsity_ratio=0.5, use_fp32=True, infer_batch_size=1, learning_rate=2e-4, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.95, adam_eps=1e-8, max_grad_norm=1000.0, warmup_steps=0, batch_size=8,
        epochs=5, lr_scheduler="linear", accumulation_steps=1, use_gp="gp" in stages, use_cr="cr" in stages,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--theirs", type=Path, required=True, help="a checkout of LOG-postech/rethinking-LLM-pruning")
    parser.add_argument("--runs", type=lambda t: [r.split(":") for r in t.split(",")], default=[["wanda", "br"], ["sparsegpt", "br+gp"]],
                        help="method:reconstruction, comma separated (reconstruction br, br+gp or br+gp+cr)")
    parser.add_argument("--patterns", type=lambda t: t.split(","), default=["unstructured"])
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--also-eval", type=lambda t: t.split(","), default=[], help="other texts' perplexity, e.g. text:/tmp/licenses")
    args = parser.parse_args()
    prune, LinearMasked = import_theirs(args.theirs)

    overrides = {"data.calib": "pydoc", "data.eval": "pydoc", "data.nsamples": args.nsamples, "data.seqlen": args.seqlen,
                 "data.eval_tokens": args.eval_tokens, "evaluate.options.perplexity.texts": args.also_eval}
    bench = Workbench(config.load(None, overrides))
    model, device, calibration = bench.host.model, bench.host.device, bench.host.calibration
    model.hf_device_map = {}  # what their code reads off the model
    dense = [outputs for _, outputs in walker.boundaries(model, calibration, device)]
    texts = ["perplexity"] + [f"perplexity {short_name(t)}" for t in args.also_eval]
    print(f"{args.nsamples} x {args.seqlen} calibration tokens from pydoc, {bench.host.windows.numel()} evaluation tokens", flush=True)
    dense_scores = bench.measure()
    print("dense: " + ", ".join(f"{t} {dense_scores[t]:.3f}" for t in texts))
    print("| method | pattern | side | " + " | ".join(texts) + " | recon error | row's own | seconds |")
    print("|---|---|---|" + "---|" * len(texts) + "---|---|---|", flush=True)
    for method, recon in args.runs:
        for pattern in args.patterns:
            n, m = (0, 0) if pattern == "unstructured" else map(int, pattern.split(":"))
            row = bench.run(pruners.method(method, reconstruct=recon), Sparsity.parse(pattern, 0.5))
            ours = path_error(model, calibration, device, dense)
            print(f"| {method} +{recon} | {pattern} | ours | " + " | ".join(f"{row.scores[t]:.3f}" for t in texts)
                  + f" | {ours:.4f} | {row.scores['recon error']:.4f} | {row.prune_seconds:.0f} |", flush=True)
            bench.host.restore()
            start = time.perf_counter()
            with their_world(model, calibration, prune, LinearMasked, device):
                prune.prune_model(their_config(args, method, set(recon.split("+"))), model, None, device, prune_n=n, prune_m=m)
            seconds = time.perf_counter() - start
            scores = bench.measure()
            theirs = path_error(model, calibration, device, dense)
            print(f"| {method} +{recon} | {pattern} | theirs | " + " | ".join(f"{scores[t]:.3f}" for t in texts)
                  + f" | {theirs:.4f} | | {seconds:.0f} |", flush=True)


if __name__ == "__main__":
    main()
