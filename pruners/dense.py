from typing import ClassVar

from pruners.base import Pruner
from pruners.spec import PATTERNS


class Dense(Pruner):
    """No pruning: the reference row of every comparison.

        method: dense
    """

    name: ClassVar[str] = "dense"
    patterns: ClassVar[tuple[str, ...]] = PATTERNS  # it prunes nothing, at any point

    @property
    def needs_calibration(self) -> bool:
        return False

    def prune(self, model, calibration, spec, device, gradients=None):
        pass
