from typing import ClassVar

from pydantic import Field

from pruners.base import LayerPruner
from pruners.sparsegpt_math import sparsify


class SparseGPT(LayerPruner):
    """SparseGPT (Frantar & Alistarh 2023, arXiv:2301.00774): prune with OBS weight updates from the
    layer Hessian of the calibration inputs, block by block of columns; unstructured or N:M.

    Departures from the original: masks break ties by index and hit the exact count (the original's
    `<=` threshold prunes every tie); a failing Cholesky raises the damping tenfold instead of crashing;
    for N:M the block is rounded up to a multiple of M (the original lets a group straddle two blocks,
    and with blocksize 6 some groups of 2:4 keep one weight).

        method: sparsegpt
        options: {blocksize: 128, percdamp: 0.01}
    """

    name: ClassVar[str] = "sparsegpt"
    stats: ClassVar[tuple[str, ...]] = ("H",)
    blocksize: int = Field(128, gt=0)  # columns per lazy batch; the mask is chosen per block
    percdamp: float = Field(0.01, gt=0)  # damping as a share of the mean Hessian diagonal

    def prune_linear(self, name, weight, stats, spec):
        weight.copy_(sparsify(weight, stats["H"], spec, self.blocksize, self.percdamp, name).to(weight.dtype))
