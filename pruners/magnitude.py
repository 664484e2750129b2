from typing import ClassVar

from pruners.base import ScorePruner


class Magnitude(ScorePruner):
    """Magnitude pruning: score |W|, no calibration.

    One threshold per layer by default, as the Wanda repository's baseline does (`--group row` for a
    threshold per output row). Ties on |W| are broken by index (see pruners.masks).

        method: magnitude
    """

    name: ClassVar[str] = "magnitude"
    default_group: ClassVar[str] = "layer"

    def score(self, name, weight, stats):
        return weight.abs()
