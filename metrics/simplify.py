"""Simplification: identities that hold anywhere in a tree, and transforms that only change the scale of
the whole score (so they cannot change which weights are pruned) removed where they act on it.

A score is only compared inside a group (a row, a layer, an M-block), and a strictly increasing map
of the whole score keeps every such comparison. So at the root, and under other such maps, `mms(f)`,
`zsn(f)`, `div(f, y)`, `skp(f)`, positive scaling and shifts go; `sqr`, `sqrt` and `log` (all increasing
in |f|) become `abs(f)`. Inside a sum or a product they change the ranking and stay.

Rules marked exact=False hold in real arithmetic but not in floating point: the clamped exp and
the saturating tanh map large scores to equal values, so the original makes ties the simplified form
does not have.
"""
from collections.abc import Callable
from dataclasses import dataclass

from metrics.ops import LEAVES
from metrics.tree import Node, constant

NONNEGATIVE_OPS = {"abs", "sqr", "sqrt", "exp", "mms"}
DIVISIONS = ("div", "divrow", "divcol")  # x over a sum or norm of |y|: positive, whatever the sign of y


def nonnegative(n: Node) -> bool:
    """Known to be >= 0 everywhere: X and G are norms, and so on."""
    if n.op in LEAVES and LEAVES[n.op].nonnegative or n.op in NONNEGATIVE_OPS:
        return True
    if n.is_constant:
        return n.value >= 0
    if n.op in ("mul", "add"):
        return all(nonnegative(a) for a in n.args)
    if n.op in DIVISIONS:
        return nonnegative(n.args[0])
    return False


def _op(n: Node, name: str) -> bool:
    return n.op == name


def _arg(n: Node) -> Node:
    return n.args[0]


@dataclass(frozen=True)
class Rule:
    name: str
    where: str  # "anywhere": an identity; "root": keeps every ranking, applied to the whole score
    exact: bool  # also exact in floating point
    apply: Callable[[Node], Node | None]  # the rewritten node, or None when the rule does not match


def _fold(n: Node) -> Node | None:
    """An elementwise operator on constants becomes a constant (reductions of constants are degenerate)."""
    from metrics.compile import evaluate_scalar

    if n.args and all(a.is_constant for a in n.args) and n.op not in ("mms", "zsn", "divrow", "divcol"):
        value = evaluate_scalar(n)
        return constant(value) if value == value and abs(value) != float("inf") else None
    return None


RULES = [
    # identities: the rewritten tree computes the same score (up to rounding)
    Rule("skp(x) -> x", "anywhere", True, lambda n: _arg(n) if _op(n, "skp") else None),
    Rule("neg(neg(x)) -> x", "anywhere", True, lambda n: _arg(_arg(n)) if _op(n, "neg") and _op(_arg(n), "neg") else None),
    Rule("abs(neg(x)) -> abs(x)", "anywhere", True, lambda n: Node("abs", (_arg(_arg(n)),)) if _op(n, "abs") and _op(_arg(n), "neg") else None),
    Rule("abs(x >= 0) -> x", "anywhere", True, lambda n: _arg(n) if _op(n, "abs") and nonnegative(_arg(n)) else None),
    Rule("sqr(neg|abs(x)) -> sqr(x)", "anywhere", True, lambda n: Node("sqr", (_arg(_arg(n)),)) if _op(n, "sqr") and _arg(n).op in ("neg", "abs") else None),
    Rule("sqrt|log(neg|abs(x)) -> sqrt|log(x)", "anywhere", True, lambda n: Node(n.op, (_arg(_arg(n)),)) if n.op in ("sqrt", "log") and _arg(n).op in ("neg", "abs") else None),
    Rule("sqrt(sqr(x)) -> abs(x)", "anywhere", True, lambda n: Node("abs", (_arg(_arg(n)),)) if _op(n, "sqrt") and _op(_arg(n), "sqr") else None),
    Rule("exp(log(x)) -> add(abs(x), 0.001)", "anywhere", True, lambda n: Node("add", (Node("abs", (_arg(_arg(n)),)), constant(1e-3))) if _op(n, "exp") and _op(_arg(n), "log") else None),
    # a mutation can draw the constant 1 into a product; the key drops it as a factor already, the text did not
    Rule("mul(x, 1) -> x", "anywhere", True, lambda n: next((b for a, b in (n.args, n.args[::-1]) if a.is_constant and a.value == 1), None) if _op(n, "mul") else None),
    Rule("mul(x, x) -> sqr(x)", "anywhere", True, lambda n: Node("sqr", (n.args[0],)) if _op(n, "mul") and n.args[0] == n.args[1] else None),
    Rule("sub(x, x) -> 0", "anywhere", True, lambda n: constant(0) if _op(n, "sub") and n.args[0] == n.args[1] else None),
    Rule("add(x, neg(y)) -> sub(x, y)", "anywhere", True, lambda n: Node("sub", (n.args[0], _arg(n.args[1]))) if _op(n, "add") and _op(n.args[1], "neg") else None),
    Rule("sub(x, neg(y)) -> add(x, y)", "anywhere", True, lambda n: Node("add", (n.args[0], _arg(n.args[1]))) if _op(n, "sub") and _op(n.args[1], "neg") else None),
    Rule("div|divrow|divcol(x, neg|abs(y)) -> div|divrow|divcol(x, y)", "anywhere", True, lambda n: Node(n.op, (n.args[0], _arg(n.args[1]))) if n.op in DIVISIONS and n.args[1].op in ("neg", "abs") else None),
    # the norm or sum of |c| over a constant is |c|: a fixed positive scale, which the key then drops as a factor
    # (a search drew divcol(X, 0.01) again and again, each a new key that pruned as X did); not bit-exact: x * (1/|c|)
    Rule("div|divrow|divcol(x, c != 0) -> mul(x, 1/|c|)", "anywhere", False, lambda n: Node("mul", (n.args[0], constant(1 / abs(n.args[1].value)))) if n.op in DIVISIONS and n.args[1].is_constant and n.args[1].value != 0 else None),
    Rule("mms|zsn(mms|zsn(x)) -> mms|zsn(x)", "anywhere", True, lambda n: Node(n.op, (_arg(_arg(n)),)) if n.op in ("mms", "zsn") and _arg(n).op in ("mms", "zsn") else None),
    Rule("constant folding", "anywhere", True, _fold),
    # ranking-preserving maps of the whole score
    Rule("mms|zsn|skp(f) -> f", "root", True, lambda n: _arg(n) if n.op in ("mms", "zsn", "skp") else None),
    Rule("div(f, y) -> f", "root", True, lambda n: n.args[0] if _op(n, "div") else None),
    Rule("mul(c > 0, f) -> f", "root", True, lambda n: next((b for a, b in (n.args, n.args[::-1]) if a.is_constant and a.value > 0), None) if _op(n, "mul") else None),
    Rule("mul(c < 0, f) -> neg(f)", "root", True, lambda n: next((Node("neg", (b,)) for a, b in (n.args, n.args[::-1]) if a.is_constant and a.value < 0), None) if _op(n, "mul") else None),
    Rule("add|sub(f, c) -> f", "root", True, lambda n: n.args[0] if n.op in ("add", "sub") and n.args[1].is_constant else None),
    Rule("add(c, f) -> f", "root", True, lambda n: n.args[1] if _op(n, "add") and n.args[0].is_constant else None),
    Rule("sub(c, f) -> neg(f)", "root", True, lambda n: Node("neg", (n.args[1],)) if _op(n, "sub") and n.args[0].is_constant else None),
    Rule("sqr|sqrt|log(f) -> abs(f)", "root", True, lambda n: Node("abs", (_arg(n),)) if n.op in ("sqr", "sqrt", "log") else None),
    Rule("exp(f) -> f", "root", False, lambda n: _arg(n) if _op(n, "exp") else None),
    Rule("tanh(f) -> f", "root", False, lambda n: _arg(n) if _op(n, "tanh") else None),
]


def identities(tree: Node, fired: list[str] | None = None) -> Node:
    """Bottom-up rewriting with the "anywhere" rules until none applies."""
    args = tuple(identities(a, fired) for a in tree.args)
    node = Node(tree.op, args)
    for rule in RULES:
        if rule.where == "anywhere" and node.args:
            out = rule.apply(node)
            if out is not None and out != node:
                if fired is not None:
                    fired.append(rule.name)
                return identities(out, fired)
    return node


def simplify(tree: Node, fired: list[str] | None = None) -> Node:
    """The smallest tree found that prunes exactly as `tree` does (see the module's note on exactness).

    `fired`, when given, collects the names of the rules used."""
    node = identities(tree, fired)
    changed = True
    while changed and node.args:
        changed = False
        for rule in RULES:
            if rule.where == "root":
                out = rule.apply(node)
                if out is not None:
                    if fired is not None:
                        fired.append(rule.name)
                    node, changed = identities(out, fired), True
                    break
    return node
