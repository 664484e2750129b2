"""From a tree to torch: a generated function that scores a whole layer at once, and a plain interpreter
(node by node) that serves as the reference the compiled form is tested and measured against."""
import math
from collections.abc import Callable

import torch

from metrics.ops import LEAVES, OPS, _colsum, _mms, _rowsum, _zsn
from metrics.tree import Node

Scorer = Callable[..., torch.Tensor]  # leaves by name (W=(out, in), X=(1, in), G=(out, in)) -> (out, in) score


def evaluate(tree: Node, **leaves: torch.Tensor) -> torch.Tensor:
    """The reference: each node computed by its operator's torch meaning, recursively."""
    if not tree.args:
        return leaves.get(tree.op) if tree.op in LEAVES else torch.tensor(tree.value)
    return OPS[tree.op].torch(*(evaluate(a, **leaves) for a in tree.args))


def evaluate_scalar(tree: Node) -> float:
    """A tree of constants only, in float64 (for constant folding)."""
    if not tree.args:
        return tree.value
    return OPS[tree.op].torch(*(torch.tensor(evaluate_scalar(a), dtype=torch.float64) for a in tree.args)).item()


def source(tree: Node) -> str:
    """Python source of `score(W, X, G)` (every leaf a parameter): one statement per distinct subtree (shared
    subtrees once)."""
    lines, names = [], {}

    def emit(n: Node) -> str:
        if n in names:
            return names[n]
        if not n.args:
            # a constant as a 0-d tensor: every operator's code (x.abs(), _norm(x), ...) then applies to it
            return n.op if n.op in LEAVES else f"torch.tensor({n.value!r})"
        expr = OPS[n.op].code.format(*(emit(a) for a in n.args))
        names[n] = f"t{len(names)}"
        lines.append(f"    {names[n]} = {expr}")
        return names[n]

    result = emit(tree)
    head = f"def score({', '.join(LEAVES)}):\n"
    return head + "".join(line + "\n" for line in lines) + f"    return {result}\n"


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

    def score(**leaves: torch.Tensor) -> torch.Tensor:
        if leaves.keys() - LEAVES.keys():
            raise TypeError(f"unknown leaves {sorted(leaves.keys() - LEAVES.keys())}; the language has {', '.join(LEAVES)}")
        out = raw(**{n: None if leaves.get(n) is None else leaves[n].float() for n in LEAVES})
        W = leaves["W"]
        if not isinstance(out, torch.Tensor) or out.shape != W.shape:
            out = torch.as_tensor(out, dtype=torch.float32, device=W.device).expand(W.shape)
        return out

    score.tree = tree
    return score
