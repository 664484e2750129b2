"""Scoring plus masking of every linear of the embedded model with Pruner-Zero's metric: the compiled
form (simplified, generated code, shared subtrees once) against the same metric evaluated node by node
in plain Python over torch; then G's computation time and peak memory at 128 x 512 tokens."""
import argparse
import time

import torch

import metrics
from metrics.named import NAMED
from pruners import masks, models
from pruners.spec import Sparsity

from fresh import measure


def score_and_mask(score, layers, spec):
    start = time.perf_counter()
    out = [masks.mask(score(W, X, G), spec) for W, X, G in layers]
    return time.perf_counter() - start, out


def G_cost(nsamples: int, seqlen: int) -> tuple[float, float, float]:
    """(seconds, RSS before, peak RSS while computing G) in a fresh process."""
    return measure("gradients.compute(model, calib, torch.device('cpu'))", nsamples, seqlen)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nsamples", type=int, default=128)
    parser.add_argument("--seqlen", type=int, default=512)
    args = parser.parse_args()
    model, _ = models.load(models.EMBEDDED)
    gen = torch.Generator().manual_seed(0)
    layers = [
        (lin.weight.detach(), torch.rand(1, lin.in_features, generator=gen), torch.rand(lin.weight.shape, generator=gen) * 1e-3)
        for lin in models.target_linears(model).values()
    ]
    tree = NAMED["pruner-zero"].tree
    compiled = metrics.compile_metric(metrics.simplify(tree))
    interpreted = lambda W, X, G: metrics.evaluate(tree, W=W, X=X, G=G)
    for name, spec in (("50% per row", Sparsity.parse("unstructured", 0.5)), ("2:4", Sparsity.parse("2:4"))):
        fast = min(score_and_mask(compiled, layers, spec)[0] for _ in range(args.repeats))
        slow = min(score_and_mask(interpreted, layers, spec)[0] for _ in range(args.repeats))
        same = all(torch.equal(a, b) for a, b in zip(score_and_mask(compiled, layers, spec)[1], score_and_mask(interpreted, layers, spec)[1]))
        print(f"pruner-zero metric, {len(layers)} linears, {name}: compiled {fast:.3f} s, node by node {slow:.3f} s, "
              f"speed-up {slow / fast:.2f}x, identical masks: {same}")
    seconds, before, peak = G_cost(args.nsamples, args.seqlen)
    print(f"G on {models.EMBEDDED}, {args.nsamples} x {args.seqlen} tokens: {seconds:.1f} s, "
          f"peak RSS {peak:.0f} MiB ({peak - before:.0f} MiB above the loaded model)")


if __name__ == "__main__":
    main()
