"""The operators of the metric language, with Pruner-Zero's exact semantics (its lib/gptree.py).

Each operator has one torch meaning, one sympy meaning and one line of generated code. Leaves (LEAVES): W
(out, in) weights, X (1, in) input norms, G (out, in) gradient magnitudes, F (out, in) the empirical Fisher's
token-level diagonal (gradients package), D (1, in) SparseGPT's inverse Hessian diagonal, M and V (1, in)
each input channel's mean and variance (DSnoT's); broadcasting lets the per-input leaves meet W. Reductions
(mms, zsn, the norm in div) run over the whole tensor they receive, except those of divrow and divcol
(ours, not Pruner-Zero's), which divide by the sum of |y| along each row (over the inputs: (out, 1)) or
each column (over the outputs: (1, in)), so that RIA's relative importance is a metric of the language.
"""
from dataclasses import dataclass
from typing import Callable

import sympy
import torch

SEMANTICS = 1  # bump when any meaning below changes: canonical keys and stored fitness depend on it
LOG_EPS = 1e-3  # log(x) = log(|x| + 1e-3)
EXP_MAX = 100.0  # exp(x) = exp(min(x, 100))


def _mms(x):
    return (x - x.min()) / (x.max() - x.min())


def _zsn(x):
    # one value (a per-layer constant): 0 / 0 = NaN, as the unbiased std gives, without its warning on the terminal
    return (x - x.mean()) / x.std(correction=min(1, x.numel() - 1))


def _rowsum(y):  # (out, in) -> (out, 1); X (1, in) -> (1, 1)
    return y.abs().sum(dim=-1, keepdim=True)


def _colsum(y):  # (out, in) -> (1, in); X (1, in) -> |X|
    return y.abs().sum(dim=0, keepdim=True) if y.dim() else y.abs()


# sympy stand-ins for what sympy has no exact name for; they keep structure for canonical keys.
PLog = sympy.Function("plog")  # log(|x| + 1e-3)
CExp = sympy.Function("cexp")  # exp(min(x, 100))
Mms = sympy.Function("mms")
Zsn = sympy.Function("zsn")
Frob = sympy.Function("frob", positive=True)  # the Frobenius norm of a whole tensor
RowSum = sympy.Function("rowsum", positive=True)  # sum of |y| along each row
ColSum = sympy.Function("colsum", positive=True)  # sum of |y| along each column


@dataclass(frozen=True)
class Op:
    name: str
    arity: int
    torch: Callable  # tensors -> tensor
    sympy: Callable  # sympy expressions -> sympy expression
    code: str  # Python over torch, with {0} and {1} for the operands


OPS = {
    op.name: op
    for op in [
        Op("sqr", 1, lambda x: x * x, lambda x: x**2, "({0} * {0})"),
        Op("neg", 1, lambda x: -x, lambda x: -x, "(-{0})"),
        Op("abs", 1, torch.abs, sympy.Abs, "{0}.abs()"),
        Op("log", 1, lambda x: torch.log(x.abs() + LOG_EPS), PLog, f"({{0}}.abs() + {LOG_EPS}).log()"),
        Op("exp", 1, lambda x: torch.exp(x.clamp(max=EXP_MAX)), CExp, f"{{0}}.clamp(max={EXP_MAX}).exp()"),
        Op("sqrt", 1, lambda x: torch.sqrt(x.abs()), lambda x: sympy.sqrt(sympy.Abs(x)), "{0}.abs().sqrt()"),
        Op("tanh", 1, torch.tanh, sympy.tanh, "{0}.tanh()"),
        Op("skp", 1, lambda x: x, lambda x: x, "{0}"),
        Op("mms", 1, _mms, Mms, "_mms({0})"),
        Op("zsn", 1, _zsn, Zsn, "_zsn({0})"),
        Op("add", 2, torch.add, lambda x, y: x + y, "({0} + {1})"),
        Op("sub", 2, torch.sub, lambda x, y: x - y, "({0} - {1})"),
        Op("mul", 2, torch.mul, lambda x, y: x * y, "({0} * {1})"),
        Op("div", 2, lambda x, y: x / torch.linalg.vector_norm(y), lambda x, y: x / Frob(y), "({0} / _norm({1}))"),
        Op("divrow", 2, lambda x, y: x / _rowsum(y), lambda x, y: x / RowSum(y), "({0} / _rowsum({1}))"),
        Op("divcol", 2, lambda x, y: x / _colsum(y), lambda x, y: x / ColSum(y), "({0} / _colsum({1}))"),
    ]
}
# The search spaces: Pruner-Zero's primitives exactly (to reproduce its search), and ours with the
# row and column reductions.
LANGUAGES = {
    "pruner-zero": tuple(name for name in OPS if name not in ("divrow", "divcol")),
    "evolve": tuple(OPS),
}
ALIASES = {"pow": "sqr"}  # Pruner-Zero has both names for x * x



@dataclass(frozen=True)
class Leaf:
    """A statistic a metric reads. A new one is one entry here (and its collector where metrics are applied)."""

    name: str
    per: str  # "weight": (out, in), one value per weight; "input": (1, in), one per input channel, broadcast over rows
    nonnegative: bool  # a norm or a magnitude: the simplifier and sympy may rely on it
    scale: float  # its size on a real layer, for the random probe layer of the degenerate check
    doc: str

    @property
    def symbol(self) -> sympy.Symbol:
        """Its sympy symbol: a nonnegative leaf is never below 0, the others are any real."""
        return sympy.Symbol(self.name, nonnegative=True) if self.nonnegative else sympy.Symbol(self.name, real=True)


LEAVES = {
    leaf.name: leaf
    for leaf in (
        Leaf("W", "weight", False, 0.05, "the layer's dense weights"),
        Leaf("X", "input", True, 1.0, "the L2 norm of each input channel over the calibration tokens"),
        Leaf("G", "weight", True, 1e-3, "the L2 norm over calibration samples of each weight's gradient of the LM loss"),
        Leaf("F", "weight", True, 1e-3, "the L2 norm over calibration tokens of each token's share of a weight's gradient"),
        # SparseGPT's saliency is divcol(sqr(W), D): dividing by a (1, in) leaf's column sum divides by the leaf
        Leaf("D", "input", True, 1e-3, "SparseGPT's saliency denominator [U]_jj^2, U^T U = (H + damp I)^-1, U upper"),
        # DSnoT's statistics of each input channel over the calibration tokens (Zhang et al., ICLR 2024)
        Leaf("M", "input", False, 0.05, "the signed mean of each input channel over the calibration tokens"),
        Leaf("V", "input", True, 0.1, "the variance of each input channel over the calibration tokens"),
    )
}
