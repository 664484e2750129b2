"""Masks from scores: the lowest scores of each comparison group are pruned (True = pruned).

Ties are common (the embedded model's weights sit on a 16-level grid), so every mask breaks them the
way a stable ascending sort would: among equal scores, the lower index is pruned first. That makes a
mask a pure function of the scores, the same on every device and in every run.
"""
import torch

from pruners.errors import InputError
from pruners.permute import channel_order
from pruners.spec import Sparsity


def lowest(score: torch.Tensor, k: int) -> torch.Tensor:
    """(rows, n) bool: the k lowest entries of each row, equal to a stable sort's first k, in O(n) per row.

    kthvalue finds the threshold without sorting; entries below it are in, and of the entries equal to
    it, the first ones by index fill the remaining places.
    """
    if k <= 0:
        return torch.zeros_like(score, dtype=torch.bool)
    if k >= score.shape[1]:
        return torch.ones_like(score, dtype=torch.bool)
    threshold = score.kthvalue(k, dim=1, keepdim=True).values  # (rows, 1)
    below = score < threshold
    tied = score == threshold
    room = k - below.sum(dim=1, keepdim=True)  # (rows, 1) places left for tied entries
    return below | (tied & (tied.cumsum(dim=1) <= room))


def mask(score: torch.Tensor, spec: Sparsity, group: str = "row") -> torch.Tensor:
    """(out, in) bool mask of the weights to prune, from an (out, in) score.

    `group` is the method's default comparison group; spec.group overrides it.
    """
    return choose(score, spec, group)[0]


def choose(score: torch.Tensor, spec: Sparsity, group: str = "row") -> tuple[torch.Tensor, torch.Tensor | None]:
    """(mask, order): the mask as `mask` gives it, and for an N:M point with spec.permute the (in,) input
    order in which every group of M holds N kept weights (pruners.permute); None otherwise."""
    if not torch.isfinite(score).all():
        raise FloatingPointError("score has NaN or Inf entries")
    if spec.kind() not in ("unstructured", "N:M"):
        raise InputError(f"pattern {spec.pattern} removes structures, not weights chosen by score")
    rows, cols = score.shape
    score = score.float()
    if spec.nm:
        n, m = spec.nm
        if cols % m:
            raise InputError(f"pattern {spec.pattern} needs the input width ({cols}) to be a multiple of {m}")
        if not spec.permute:
            return lowest(score.reshape(-1, m), m - n).reshape(rows, cols), None  # (rows * cols/m, m) groups
        order = channel_order(score, n, m).to(score.device)
        pruned = torch.empty_like(score, dtype=torch.bool)
        pruned[:, order] = lowest(score[:, order].reshape(-1, m), m - n).reshape(rows, cols)
        return pruned, order
    group = spec.group or group
    if group == "layer":
        return lowest(score.reshape(1, -1), int(rows * cols * spec.ratio)).reshape(rows, cols), None
    if group == "column":  # each input channel loses the same share of its weights, across the outputs
        return lowest(score.T, int(rows * spec.ratio)).T, None
    return lowest(score, int(cols * spec.ratio)), None
