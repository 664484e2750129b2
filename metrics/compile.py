"""From a tree to torch: a generated function that scores a whole layer at once, and a plain interpreter
(node by node) that serves as the reference the compiled form is tested and measured against."""
import math
from collections.abc import Callable

import torch

from metrics.ops import OPS, _colsum, _mms, _rowsum, _zsn
from metrics.tree import Node

Scorer = Callable[..., torch.Tensor]  # (W (out, in), X (1, in), G (out, in)) -> (out, in) score


def evaluate(tree: Node, W=None, X=None, G=None) -> torch.Tensor:
    """The reference: each node computed by its operator's torch meaning, recursively."""
    leaves = {"W": W, "X": X, "G": G}
    if not tree.args:
        return leaves[tree.op] if tree.op in leaves else torch.tensor(tree.value)
    return OPS[tree.op].torch(*(evaluate(a, W, X, G) for a in tree.args))


def evaluate_scalar(tree: Node) -> float:
    """A tree of constants only, in float64 (for constant folding)."""
    if not tree.args:
        return tree.value
    return OPS[tree.op].torch(*(torch.tensor(evaluate_scalar(a), dtype=torch.float64) for a in tree.args)).item()


def source(tree: Node) -> str:
    """Python source of `score(W, X, G)`: one statement per distinct subtree (shared subtrees once)."""
    lines, names = [], {}

    def emit(n: Node) -> str:
        if n in names:
            return names[n]
        if not n.args:
            # a constant as a 0-d tensor: every operator's code (x.abs(), _norm(x), ...) then applies to it
            return n.op if n.op in ("W", "X", "G") else f"torch.tensor({n.value!r})"
        expr = OPS[n.op].code.format(*(emit(a) for a in n.args))
        names[n] = f"t{len(names)}"
        lines.append(f"    {names[n]} = {expr}")
        return names[n]

    result = emit(tree)
    body = "\n".join(lines) if lines else ""
    return f"def score(W, X, G):\n{body}\n    return {result}\n" if body else f"def score(W, X, G):\n    return {result}\n"


def _norm(y):
    return torch.linalg.vector_norm(y)


def compile_metric(tree: Node) -> Scorer:
    """A function that scores a whole layer in float32 on whatever device its inputs are on.

    Inputs are promoted to float32 first: half precision overflows in sqr/exp long before the ranking
    that the metric expresses runs out of resolution."""
    namespace = {"_mms": _mms, "_zsn": _zsn, "_norm": _norm, "_rowsum": _rowsum, "_colsum": _colsum, "math": math,
                 "torch": torch}
    exec(compile(source(tree), f"<metric {tree}>", "exec"), namespace)
    raw = namespace["score"]

    def score(W=None, X=None, G=None) -> torch.Tensor:
        f32 = lambda t: None if t is None else t.float()
        out = raw(f32(W), f32(X), f32(G))
        if not isinstance(out, torch.Tensor) or out.shape != W.shape:
            out = torch.as_tensor(out, dtype=torch.float32, device=W.device).expand(W.shape)
        return out

    score.tree = tree
    return score
