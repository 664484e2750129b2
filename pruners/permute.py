"""Channel permutation for N:M masks (RIA, Zhang et al., ICLR 2024, arXiv:2401.11200, section 3.3).

An N:M mask keeps N of every M consecutive input channels of a row, so two important channels that
happen to sit in one group of M compete for its N places. Reordering a layer's input channels before
choosing changes which channels compete: the layer computes the same function when its inputs are
gathered in the same order, so the mask is chosen in the new order and written back in the old one.

RIA's recipe, which this follows: sort the channels by their summed score; give position k of every
group one channel of the k-th quantile (alternate quantiles in reverse, so that the groups' totals
even out); then, for each position in turn, reassign that position's channels to the groups by a linear
sum assignment that maximises the kept score. The identity order stays when the result keeps no more.
"""
import torch
from scipy.optimize import linear_sum_assignment


def kept(score: torch.Tensor, n: int, m: int, order: torch.Tensor | None = None) -> float:
    """The sum of the N largest scores of every group of M consecutive columns (in `order` when given)."""
    if order is not None:
        score = score[:, order]
    return score.reshape(-1, m).topk(n, dim=1).values.sum().item()


def reallocate(score: torch.Tensor, m: int) -> torch.Tensor:
    """(in,) order: the k-th quantile of channels by summed score fills position k of every group."""
    cols = score.shape[1]
    by_sum = score.sum(dim=0).argsort(stable=True)  # (in,) ascending
    order = torch.empty_like(by_sum)
    per = cols // m  # groups, and channels per quantile
    for k in range(m):
        quantile = by_sum[k * per:(k + 1) * per]
        order[k::m] = quantile.flip(0) if k % 2 else quantile
    return order


def assign(score: torch.Tensor, order: torch.Tensor, n: int, m: int, position: int) -> torch.Tensor:
    """`order` with the channels at `position` of every group reassigned to the groups by a linear sum
    assignment. Placing channel v in a group adds to its kept score max(0, v - t) per row, t being the
    N-th largest of the group's other M-1 scores: v displaces that one only when larger."""
    groups = score.shape[1] // m
    ordered = score[:, order].reshape(score.shape[0], groups, m).double()  # (rows, groups, m), float64 for the distances
    others = torch.cat([ordered[:, :, :position], ordered[:, :, position + 1:]], dim=2)  # (rows, groups, m-1)
    threshold = others.topk(n, dim=2).values[:, :, -1]  # (rows, groups)
    candidates = ordered[:, :, position]  # (rows, groups): the channel now at `position` of each group
    # Over rows, max(0, v - t) sums to (|v - t| + v - t) / 2. An assignment places every candidate and fills
    # every group once, so the v and t terms add the same to each assignment: the L1 distance alone decides
    # (cdist, with no (rows, groups, groups) temporary: five times faster).
    distance = torch.cdist(threshold.T, candidates.T, p=1)  # (group, candidate)
    _, chosen = linear_sum_assignment(distance.numpy(), maximize=True)  # chosen[g]: the candidate group g takes
    moved = order.clone()
    moved[position::m] = order[position::m][torch.from_numpy(chosen)]
    return moved


def channel_order(score: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """(in,) the input order in which an N:M mask keeps the most score: RIA's reallocation refined by one
    assignment per position, or the identity when that keeps no more."""
    score = score.detach().float().cpu()
    order = reallocate(score, m)
    for position in range(m):
        order = assign(score, order, n, m, position)
    identity = torch.arange(score.shape[1])
    return order if kept(score, n, m, order) > kept(score, n, m, identity) else identity
