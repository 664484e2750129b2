"""Per-block sparsity: how an unstructured sparsity is spread over the decoder blocks.

"uniform" gives every block the target. "owl" is OWL, outlier-weighted layerwise sparsity (Yin et al.,
ICML 2024, arXiv:2310.05175; code luuyin/OWL): blocks whose Wanda scores |W| X hold more outliers (scores
above M times their block's mean) keep more weights. The outlier shares, min-max scaled to [0, 2 lambda],
are shifted so that their mean is the target density; a block's sparsity is one minus its share. Every
block of a LLaMA holds the same number of weights, so the blocks' mean is the model's sparsity.
"""
import torch

from pruners import models
from pruners.spec import Sparsity
from pruners.walker import walk

OWL_M = 5.0  # an outlier is above M times its block's mean score (OWL's LLaMA setting)
OWL_LAMBDA = 0.08  # the blocks' sparsities span at most 2 lambda (OWL's LLaMA setting)


def outlier_share(scores: list[torch.Tensor], m: float = OWL_M) -> float:
    """The share of a block's scores (its linears' together) above m times their mean."""
    flat = torch.cat([s.flatten() for s in scores])
    return (flat > m * flat.mean()).float().mean().item()


def owl(shares: list[float], sparsity: float, lam: float = OWL_LAMBDA) -> list[float]:
    """Per-block sparsities from per-block outlier shares: mean `sparsity`, spread 2 lam, the most outliers
    the least sparse. Equal shares (nothing to tell the blocks apart) give the target everywhere."""
    low, high = min(shares), max(shares)
    if high == low:
        return [sparsity] * len(shares)
    density = [(s - low) / (high - low) * 2 * lam for s in shares]
    mean = sum(density) / len(density)
    return [1 - (d - mean + 1 - sparsity) for d in density]


def owl_of_scores(block_scores: list[list[torch.Tensor]], sparsity: float) -> list[float]:
    """Per-block sparsities from each block's Wanda scores |W| X (its linears', any shapes)."""
    return owl([outlier_share(scores) for scores in block_scores], sparsity)


def block_sparsities(model, calibration: torch.Tensor, device: torch.device, spec: Sparsity, batch_size: int = 8) -> list[float]:
    """Each decoder block's sparsity under spec.allocation. OWL reads the dense model (one calibration pass
    that prunes nothing), as its code does before pruning."""
    blocks = len(models.blocks(model))
    if spec.allocation == "uniform":
        return [spec.ratio] * blocks
    scores = []

    def record(step):
        scores.append([lin.weight.abs() * step.stats[name]["X"] for name, lin in step.linears.items()])

    walk(model, calibration, device, ("X",), record, batch_size)
    return owl_of_scores(scores, spec.ratio)
