"""Per-linear statistics gathered from calibration inputs, by the name a method asks for them.

A collector sees every input of its linear (of any shape: OPT's fc1 receives (B*T, in)) and is told at
the end how many calibration samples went through, since the papers normalise by samples."""
import math
from collections.abc import Callable

import torch
from torch import nn

from pruners.sparsegpt_math import damped_inverse_factor


class InputNorm:
    """X, (1, in): Wanda's sqrt(scaler_row), the L2 norm per input channel over all calibration tokens
    divided by sqrt(number of samples). The division keeps X on the scale Pruner-Zero's metrics were
    found at; within a layer it changes no ranking."""

    def __init__(self, linear: nn.Linear):
        self.sum_sq = torch.zeros(linear.in_features, dtype=torch.float32, device=linear.weight.device)

    def add(self, x: torch.Tensor) -> None:  # x: (..., in)
        self.sum_sq += x.float().pow(2).reshape(-1, x.shape[-1]).sum(dim=0)

    def result(self, samples: int) -> torch.Tensor:
        return (self.sum_sq / samples).sqrt().unsqueeze(0)


class Hessian:
    """H, (in, in): SparseGPT's 2/N sum of x x^T over every calibration token, N the number of samples."""

    def __init__(self, linear: nn.Linear):
        self.sum = torch.zeros(linear.in_features, linear.in_features, dtype=torch.float32, device=linear.weight.device)

    def add(self, x: torch.Tensor) -> None:  # x: (..., in)
        flat = x.reshape(-1, x.shape[-1]).float()  # (tokens, in)
        self.sum.addmm_(flat.T, flat)

    def result(self, samples: int) -> torch.Tensor:
        return self.sum * (2 / samples)


class InputMoments:
    """(2, in): each input channel's mean and (population) variance over every calibration token, DSnoT's
    statistics; float64 sums, since a variance is a difference of two large sums."""

    def __init__(self, linear: nn.Linear):
        self.sum = torch.zeros(2, linear.in_features, dtype=torch.float64, device=linear.weight.device)
        self.tokens = 0

    def add(self, x: torch.Tensor) -> None:  # x: (..., in)
        flat = x.reshape(-1, x.shape[-1]).double()  # (tokens, in)
        self.sum += torch.stack([flat.sum(dim=0), flat.pow(2).sum(dim=0)])
        self.tokens += flat.shape[0]

    def result(self, samples: int) -> torch.Tensor:
        mean, square = self.sum / self.tokens
        return torch.stack([mean, square - mean.pow(2)]).float()


COLLECTORS = {"X": InputNorm, "H": Hessian, "moments": InputMoments}


def obs_diagonal(H: torch.Tensor, percdamp: float = 0.01) -> torch.Tensor:
    """D, (1, in): SparseGPT's saliency denominator [U]_jj^2, U the upper Cholesky factor of (H + damp I)^-1
    (damp = percdamp x mean diag H), so that w^2 / D is the saliency by which SparseGPT picks each block's
    weights before its update. Inputs that never fire get H_jj = 1, as SparseGPT sets them (it also zeroes
    their weights first; a metric sees them as they are)."""
    H = H.clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    return damped_inverse_factor(H, percdamp).diagonal().pow(2).unsqueeze(0)


# Leaves of the metric language (metrics.ops.LEAVES) that the walker gathers from calibration inputs: the
# collector each needs and how the leaf follows from what it collected.
WALKED_LEAVES: dict[str, tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = {
    "X": ("X", lambda X: X),
    "D": ("H", obs_diagonal),
    "M": ("moments", lambda moments: moments[0:1]),
    "V": ("moments", lambda moments: moments[1:2].clamp(min=0)),  # a constant channel may round below 0
}


# The leaves the gradients package computes, both in one backward pass per calibration sample.
GRADIENT_LEAVES = ("G", "F")


def rescale(found: tuple[int, int], now: tuple[int, int]) -> dict[str, float]:
    """Factors that bring the leaves gathered from a calibration of `now` = (samples, tokens per sample) to
    the scale a calibration of `found` gives them, so that a metric not homogeneous in a leaf (log X, X + G)
    ranks as it did where it was found. X^2 and H sum over a sample's tokens and average over samples, so X
    grows as sqrt(tokens) and D = diag (H + damp I)^-1 (damp proportional to H) as 1/tokens; G^2 sums over
    samples, so G grows as sqrt(samples) (its dependence on tokens, through each sample's mean loss, is not
    a law and is left alone). F^2 sums over samples and tokens the square of each token's share of a
    sample's mean loss, a 1/tokens share, so F grows as sqrt(samples / tokens). M and V are means over
    tokens: no factor."""
    (samples0, tokens0), (samples, tokens) = found, now
    return {"X": math.sqrt(tokens0 / tokens), "D": tokens / tokens0, "G": math.sqrt(samples0 / samples),
            "F": math.sqrt(samples0 * tokens / (samples * tokens0))}
