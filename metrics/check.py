"""Degenerate metrics, found without a model: ones that cannot rank the weights of a row."""
import torch

from metrics.compile import compile_metric
from metrics.ops import LEAVES
from metrics.simplify import DIVISIONS, simplify
from metrics.tree import MetricError, Node


class DegenerateMetric(MetricError):
    """A metric that is constant within a row, or depends on the inputs only through X."""


def _elementwise_leaves(n: Node) -> set[str]:
    """Leaves that reach the score entry by entry: not only through a divisor, which is one number per
    tensor (div), per row (divrow: the same for a row's entries) or per column (divcol: the same for
    every row, as X is)."""
    if not n.args:
        return {n.op} if n.op in LEAVES else set()
    args = n.args[:1] if n.op in DIVISIONS else n.args
    return set().union(*(_elementwise_leaves(a) for a in args))


def probe(rows: int = 16, cols: int = 64, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random stand-ins on the scale of a real layer, one per leaf: N(0, 1) (its absolute value for a
    nonnegative leaf) times the leaf's scale, W ~ N(0, 0.05), X ~ |N(0, 1)|, G ~ |N(0, 1e-3)|."""
    gen = torch.Generator().manual_seed(seed)
    stats = {}
    for name, leaf in LEAVES.items():
        draw = torch.randn(rows if leaf.per == "weight" else 1, cols, generator=gen)
        stats[name] = (draw.abs() if leaf.nonnegative else draw) * leaf.scale
    return stats


def check(tree: Node) -> Node:
    """The simplified tree, or DegenerateMetric saying why it cannot prune.

    The simplified tree is what gets applied; the original must still be finite on the probe, since a
    metric that yields NaN or Inf is a bad candidate even where simplification would hide it."""
    simple = simplify(tree)
    leaves = _elementwise_leaves(simple)
    if not any(LEAVES[name].per == "weight" for name in leaves):  # per-input leaves rank every row alike
        what = f"{' and '.join(sorted(leaves))} alone" if leaves else "no leaf at all"
        raise DegenerateMetric(f"{tree} is degenerate: entry by entry it sees {what}, so every row ranks alike")
    stats = probe()
    for form in (tree, simple):
        if not torch.isfinite(compile_metric(form)(**stats)).all():
            raise DegenerateMetric(f"{tree} yields NaN or Inf on a random probe layer")
    score = compile_metric(simple)(**stats)
    if (score == score[:, :1]).all(dim=1).any():
        raise DegenerateMetric(f"{tree} is constant within a row on a random probe layer")
    if (score == score[:1]).all():
        raise DegenerateMetric(f"{tree} ranks every row alike on a random probe layer (it sees the column only)")
    return simple
