"""sympy forms and canonical keys. Two metrics share a key when their simplified sympy forms agree, up
to what cannot change a ranking at the root (a positive factor, an added constant)."""
import hashlib

import sympy

from metrics.ops import LEAVES, OPS, SEMANTICS, Frob, RowSum
from metrics.simplify import simplify
from metrics.tree import Node


def to_sympy(tree: Node) -> sympy.Expr:
    if not tree.args:
        return LEAVES[tree.op].symbol if tree.op in LEAVES else sympy.nsimplify(tree.value)
    return OPS[tree.op].sympy(*(to_sympy(a) for a in tree.args))


def _invisible_scale(factor: sympy.Expr, rows_only: bool) -> bool:
    """A positive factor no comparison can see: a power of a Frobenius norm (div's divisor) or of a row sum
    of statistics that are one per input channel (divrow(x, X): X's row is the whole tensor), one number
    per layer; with rows_only, a power of any row sum, one number per row."""
    base = factor.as_base_exp()[0]
    if base.func == Frob:
        return True
    return base.func == RowSum and (rows_only or all(LEAVES[s.name].per == "input" for s in base.free_symbols))


def _root(expr: sympy.Expr) -> sympy.Expr:
    """A score that is never negative ranks, in every group, as any power k > 0 of it does: a product of
    powers whose absolute exponents sum to 1, so that W^2 X^2 is |W| X and W^4 X^3 log(X)^2 is
    W^2 X^1.5 |log X|. Every operator is real-valued, so a factor is nonnegative when its base is (a
    nonnegative leaf, an absolute value) or its exponent is even; otherwise the form stays as it is."""
    powers = [factor.as_base_exp() for factor in sympy.Mul.make_args(expr)]
    nonnegative = lambda base: base.is_nonnegative or isinstance(base, sympy.Abs)
    if not all(e.is_number and e.is_real and (nonnegative(b) or e.is_even) for b, e in powers):
        return expr
    total = sum(abs(e) for _, e in powers)
    return sympy.Mul(*(sympy.Pow(b if nonnegative(b) else sympy.Abs(b), e / total) for b, e in powers))


def rank_form(tree: Node, rows_only: bool = False) -> sympy.Expr:
    """The sympy form of the simplified tree with a positive factor and an added constant removed, and a
    nonnegative product of powers as its root (`_root`); a
    positive factor is a number, or a norm or sum over the whole tensor (the same for every weight of a
    layer, so no comparison group can tell it: rows, columns, the layer, N:M blocks). `rows_only`: every
    comparison is inside a row (per-row and N:M masks), so a factor per row is invisible too. A number common
    to a sum's terms comes out of it first: sympy writes 10000 (G + X) as 10000 G + 10000 X, which would
    hide the factor (a permuted search evaluated W^2 X (G + X) and W^2 X (G + X) 10000 apart)."""
    expr = sympy.factor_terms(to_sympy(simplify(tree)))
    constant, rest = expr.as_coeff_Add()
    if rest != 0:
        expr = rest
    # any positive number, not just a rational: an evolved 3.1623 is sqrt(10) to sympy, which as_coeff_Mul
    # leaves in the product (a search evaluated sqrt(10) W^2 X |log X| beside W^2 X |log X|)
    factor, rest = expr.as_independent(*expr.free_symbols, as_Add=False)
    if factor.is_positive and rest != 1:
        expr = rest
    if isinstance(expr, sympy.Mul):
        kept = [f for f in expr.args if not _invisible_scale(f, rows_only)]
        if kept:
            expr = sympy.Mul(*kept)
    return _root(expr)


def canonical_key(tree: Node, rows_only: bool = False) -> str:
    """16 hex digits: the hash of the rank form and the semantics version. With rows_only the key holds for
    per-row and N:M masks only (a search whose every point compares inside rows), and says so."""
    text = f"{SEMANTICS}:{'rows:' if rows_only else ''}{sympy.srepr(rank_form(tree, rows_only))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
