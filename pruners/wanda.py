from typing import ClassVar

from pruners.base import ScorePruner


class Wanda(ScorePruner):
    """Wanda: score |W| * X, compared within each output row (Sun et al. 2023, arXiv:2306.11695).

    X is the L2 norm of each input channel over the calibration tokens, gathered block by block with
    the earlier blocks already pruned (the paper's sequential scheme).

        method: wanda
        batch_size: 8
    """

    name: ClassVar[str] = "wanda"
    stats: ClassVar[tuple[str, ...]] = ("X",)

    def score(self, name, weight, stats):
        return weight.abs() * stats["X"]  # (out, in) * (1, in)
