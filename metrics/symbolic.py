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


def _whole_tensor_scale(factor: sympy.Expr) -> bool:
    """A positive number for the whole layer: a power of a Frobenius norm (div's divisor), or of a row sum
    of statistics that are one per input channel (divrow(x, X): X's row is the whole tensor)."""
    base = factor.as_base_exp()[0]
    if base.func == Frob:
        return True
    return base.func == RowSum and all(LEAVES[s.name].per == "input" for s in base.free_symbols)


def rank_form(tree: Node) -> sympy.Expr:
    """The sympy form of the simplified tree with a positive factor and an added constant removed; a
    positive factor is a number, or a norm or sum over the whole tensor (the same for every weight of a
    layer, so no comparison group can tell it: rows, columns, the layer, N:M blocks)."""
    expr = to_sympy(simplify(tree))
    constant, rest = expr.as_coeff_Add()
    if rest != 0:
        expr = rest
    factor, rest = expr.as_coeff_Mul()
    if factor.is_number and factor > 0 and rest != 1:
        expr = rest
    if isinstance(expr, sympy.Mul):
        kept = [f for f in expr.args if not _whole_tensor_scale(f)]
        if kept:
            expr = sympy.Mul(*kept)
    return expr


def canonical_key(tree: Node) -> str:
    """16 hex digits: the hash of the rank form and the semantics version."""
    text = f"{SEMANTICS}:{sympy.srepr(rank_form(tree))}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]
