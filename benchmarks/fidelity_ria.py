"""Fidelity of RIA and its channel permutation: ours (`metric:ria`, `--group layer`, `--permute`) against
the paper's own code (biomedical-cybernetics/Relative-importance-and-activation-pruning, lib/prune.py
`prune_ria` with `--reallocation --lsa`), on one model load, the same calibration samples and the same
evaluation tokens, side by side in one run.

    git clone https://github.com/biomedical-cybernetics/Relative-importance-and-activation-pruning /tmp/ria
    python benchmarks/fidelity_ria.py --theirs /tmp/ria

Their code runs unchanged with fidelity.py's adaptations (transformers 5 layers called the 4.3x way, our
samples from their loader, `.cuda()` the identity without CUDA) and one more: without CUDA, `.to()` of a
CUDA device (their assignment runs on "cuda:7") stays on the CPU. Their defaults: a = 0.5, unstructured
scores compared per layer (`--per_outneuron` off, ours `--group layer`), channels sorted by their summed
score (`--importance_score sum`), the assignment over whole layers (`--fast` off).

Printed per pattern: both perplexities, the share of weights whose pruned/kept state differs (over all
blocks, and in block 0, where both sides prune from the same inputs), and in block 0 the RIA score that
each side keeps, summed over its linears, beside what the unpermuted 2:4 mask keeps: the permutation's
whole purpose is to raise it.
"""
import argparse
import contextlib
import sys
import time
import types
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pruners  # noqa: E402
from evolve import config  # noqa: E402
from evolve.workbench import Workbench  # noqa: E402
from fidelity import compare, first_block, old_transformers, stub_datasets, their_inputs, their_perplexity, weights  # noqa: E402
from pruners import models  # noqa: E402
from pruners.spec import Sparsity  # noqa: E402

POINTS = {  # ours (pattern, group, permute), theirs (n, m, reallocation and assignment)
    "50% per layer": (("unstructured", "layer", False), (0, 0, False)),
    "2:4": (("2:4", None, False), (2, 4, False)),
    "2:4 permuted": (("2:4", None, True), (2, 4, True)),
}


def import_theirs(checkout: Path):
    stub_datasets()
    if not (checkout / "lib" / "prune.py").is_file():
        raise SystemExit(f"no checkout of RIA's code at {checkout}")
    sys.path.insert(0, str(checkout))
    import lib.eval as ria_eval
    import lib.prune as ria_prune

    return ria_prune, ria_eval


@contextlib.contextmanager
def cuda_on_cpu():
    """`.to("cuda:7")` and the like stay on the CPU when there is no CUDA."""
    to = torch.Tensor.to
    if not torch.cuda.is_available():
        def cpu_to(self, *args, **kwargs):
            args = tuple("cpu" if str(a).startswith("cuda") else a for a in args)
            return to(self, *args, **kwargs)

        torch.Tensor.to = cpu_to
    try:
        yield
    finally:
        torch.Tensor.to = to


def ria_scores(model, X: dict[str, torch.Tensor], names: set[str]) -> dict[str, torch.Tensor]:
    """RIA of the dense weights, (out, in) per linear: |W| over its column's and its row's sums of |W|, times
    sqrt(X)."""
    out = {}
    for name, lin in models.target_linears(model).items():
        if name in names:
            a = lin.weight.detach().abs()  # (out, in)
            out[name] = (a / a.sum(0, keepdim=True) + a / a.sum(1, keepdim=True)) * X[name].sqrt()
    return out


def kept(scores: dict[str, torch.Tensor], w: dict[str, torch.Tensor]) -> float:
    return sum((s * (w[n] != 0)).sum().item() for n, s in scores.items())


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--theirs", type=Path, required=True, help="a checkout of RIA's repository")
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    parser.add_argument("--eval-tokens", type=int, default=16384)
    parser.add_argument("--points", type=lambda t: t.split(","), default=list(POINTS), help=", ".join(POINTS))
    args = parser.parse_args()
    if unknown := set(args.points) - set(POINTS):
        raise SystemExit(f"unknown points {sorted(unknown)}; choose from {', '.join(POINTS)}")
    ria_prune, ria_eval = import_theirs(args.theirs)

    overrides = {"data.nsamples": args.nsamples, "data.seqlen": args.seqlen, "data.eval_tokens": args.eval_tokens}
    bench = Workbench(config.load(None, {"data.calib": "pydoc", "data.eval": "pydoc", **overrides}))
    model, device = bench.host.model, bench.host.device
    _, testenc = their_inputs(bench, ria_prune)
    first = first_block(model)
    scores = ria_scores(model, bench.host.statistic("X"), first)
    plain = None  # block 0's kept score under the unpermuted 2:4 mask (ours)
    print(f"{args.nsamples} x {args.seqlen} calibration tokens, {bench.host.windows.numel()} evaluation tokens", flush=True)
    print("| point | ours | theirs | masks differ | in block 0 | block 0 kept score ours / theirs | ours s | theirs s |")
    print("|---|---|---|---|---|---|---|---|")
    for point in args.points:
        (pattern, group, permute), (n, m, realloc) = POINTS[point]
        row = bench.run(pruners.method("metric:ria"), Sparsity.parse(pattern, 0.5, group=group, permute=permute))
        ours = weights(model)
        bench.host.restore()
        options = types.SimpleNamespace(
            model="llama", nsamples=args.nsamples, seed=0, seqlen=args.seqlen, calib_dataset="pydoc",
            sparsity_ratio=0.5, prune_method="ria", a=0.5, reconstruction=False, gptq=False, per_outneuron=False,
            reallocation=realloc, lsa=realloc, importance_score="sum", fast=False, semi_sparse_acc=False,
        )
        start = time.perf_counter()
        with old_transformers(model), cuda_on_cpu():
            ria_prune.prune_ria(options, model, None, device, prune_n=n, prune_m=m)
        seconds = time.perf_counter() - start
        ppl = their_perplexity(ria_eval, model, testenc, device)
        theirs = weights(model)
        _, masks, masks0, _ = compare(ours, theirs, first)
        if point == "2:4":
            plain = kept(scores, ours)
        base = f" (unpermuted {plain:.4g})" if permute and plain is not None else ""
        print(f"| {point} | {row.scores['perplexity']:.3f} | {ppl:.3f} | {masks:.2%} | {masks0:.2%} "
              f"| {kept(scores, ours):.6g} / {kept(scores, theirs):.6g}{base} | {row.prune_seconds:.0f} | {seconds:.0f} |",
              flush=True)


if __name__ == "__main__":
    main()
