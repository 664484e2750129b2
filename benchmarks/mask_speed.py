"""Mask computation on every linear of the embedded model at 50% unstructured (per row): ours against a
plain per-row stable torch.sort, side by side, and the peak memory of pruning the model with Wanda."""
import argparse
import time

import torch

from pruners import masks, models
from pruners.spec import Sparsity

from fresh import measure


def sort_mask(score: torch.Tensor, ratio: float) -> torch.Tensor:
    k = int(score.shape[1] * ratio)
    order = torch.sort(score, dim=1, stable=True).indices[:, :k]
    return torch.zeros_like(score, dtype=torch.bool).scatter_(1, order, True)


def timed(fn, scores, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        out = [fn(s) for s in scores]
        best = min(best, time.perf_counter() - start)
    return best, out


def wanda_peak_memory(nsamples: int, seqlen: int) -> tuple[float, float]:
    """(RSS with the model loaded, peak RSS while pruning it with Wanda) in MiB, in a fresh process."""
    work = "pruners.method('wanda').prune(model, calib, Sparsity.parse('unstructured', 0.5), torch.device('cpu'))"
    _, loaded, peak = measure(work, nsamples, seqlen)
    return loaded, peak


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nsamples", type=int, default=32)
    parser.add_argument("--seqlen", type=int, default=512)
    args = parser.parse_args()
    model, _ = models.load(models.EMBEDDED)
    scores = [lin.weight.detach().abs() for lin in models.target_linears(model).values()]
    spec = Sparsity.parse("unstructured", 0.5, "row")
    ours, a = timed(lambda s: masks.mask(s, spec), scores, args.repeats)
    plain, b = timed(lambda s: sort_mask(s, 0.5), scores, args.repeats)
    assert all(torch.equal(x, y) for x, y in zip(a, b)), "the two masks differ"
    print(f"masks, {len(scores)} linears, 50% per row: kthvalue {ours:.3f} s, stable sort {plain:.3f} s, "
          f"speed-up {plain / ours:.2f}x (identical masks)")
    loaded, peak = wanda_peak_memory(args.nsamples, args.seqlen)
    print(f"wanda on {models.EMBEDDED}, {args.nsamples} x {args.seqlen} calibration: peak RSS {peak:.0f} MiB "
          f"(loaded model: {loaded:.0f} MiB; pruning adds {peak - loaded:.0f} MiB)")


if __name__ == "__main__":
    main()
