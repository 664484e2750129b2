"""Metric trees and their three spellings: prefix strings (`mul(abs(W), X)`, as DEAP prints them),
Pruner-Zero's JSON (`{"data": "mul", "left": ..., "right": ...}`) and our metric file, which wraps the
latter with the expression, the sympy form, the semantics version and the fitness the metric earned."""
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

from metrics.ops import ALIASES, LEAVES, OPS, SEMANTICS


class MetricError(ValueError):
    """A metric that cannot be read or used; the message names the node or the problem."""


@dataclass(frozen=True)
class Node:
    op: str  # an operator of metrics.ops.OPS, a leaf W/X/G, or a number written as text ("100")
    args: tuple["Node", ...] = ()

    def __str__(self) -> str:
        return f"{self.op}({', '.join(map(str, self.args))})" if self.args else self.op

    @property
    def is_constant(self) -> bool:
        return not self.args and self.op not in LEAVES

    @property
    def value(self) -> float:
        return float(self.op)

    def leaves(self) -> set[str]:
        if not self.args:
            return {self.op} if self.op in LEAVES else set()
        return set().union(*(a.leaves() for a in self.args))

    def nodes(self):
        """Every node of the tree, this one first."""
        yield self
        for a in self.args:
            yield from a.nodes()

    def ops(self) -> set[str]:
        """The operators used anywhere in the tree."""
        return {n.op for n in self.nodes() if n.args}

    def size(self) -> int:
        """Nodes in the tree: the complexity of hall-of-fame tables."""
        return 1 + sum(a.size() for a in self.args)

    def height(self) -> int:
        return 1 + max((a.height() for a in self.args), default=0)


def constant(value: float) -> Node:
    return Node(repr(int(value)) if float(value).is_integer() else repr(float(value)))


def make(op: str, *args: Node, where: str = "") -> Node:
    """A checked node: known operator, right number of children."""
    op = ALIASES.get(op, op)
    if op in OPS:
        if len(args) != OPS[op].arity:
            raise MetricError(f"{op} takes {OPS[op].arity} operand(s), got {len(args)}{where}")
        return Node(op, tuple(args))
    try:
        number = None if op in LEAVES else float(op)
    except (TypeError, ValueError):
        raise MetricError(f"unknown operator or leaf {op!r}{where}; operators: {', '.join(OPS)}; leaves: W, X, G") from None
    if args:
        raise MetricError(f"leaf {op!r} cannot have operands{where}")
    if number is None:
        return Node(op)
    if not math.isfinite(number):
        raise MetricError(f"constant {op!r} is not finite{where}")
    return constant(number)


_TOKEN = re.compile(r"\s*(?:([A-Za-z_][A-Za-z_0-9]*|[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)|(.))")


def parse(text: str) -> Node:
    """A prefix string such as `mul(abs(W), mms(G))`."""
    tokens = [(m[1], m[2]) for m in _TOKEN.finditer(text) if m[1] or m[2]]
    pos = 0

    def expect(symbol):
        nonlocal pos
        if pos >= len(tokens) or tokens[pos][1] != symbol:
            found = "the end" if pos >= len(tokens) else repr(tokens[pos][0] or tokens[pos][1])
            raise MetricError(f"expected {symbol!r} at token {pos + 1} of {text!r}, found {found}")
        pos += 1

    def node() -> Node:
        nonlocal pos
        if pos >= len(tokens) or not tokens[pos][0]:
            raise MetricError(f"expected an operator or leaf at token {pos + 1} of {text!r}")
        name = tokens[pos][0]
        pos += 1
        args = []
        if pos < len(tokens) and tokens[pos][1] == "(":
            pos += 1
            args.append(node())
            while pos < len(tokens) and tokens[pos][1] == ",":
                pos += 1
                args.append(node())
            expect(")")
        return make(name, *args, where=f" in {text!r}")

    tree = node()
    if pos != len(tokens):
        raise MetricError(f"unexpected {tokens[pos][0] or tokens[pos][1]!r} after a complete metric in {text!r}")
    return tree


def from_pruner_zero(data, path: str = "root") -> Node:
    """Pruner-Zero's JSON: unary operators keep their operand under "left"."""
    if not isinstance(data, dict) or "data" not in data:
        raise MetricError(f"node {path}: expected an object with a 'data' field")
    unknown = set(data) - {"data", "left", "right"}
    if unknown:
        raise MetricError(f"node {path}: unknown field(s) {', '.join(sorted(unknown))}")
    args = [from_pruner_zero(data[side], f"{path}.{side}") for side in ("left", "right") if data.get(side) is not None]
    return make(str(data["data"]), *args, where=f" at node {path}")


def to_pruner_zero(tree: Node) -> dict:
    out = {"data": tree.op}
    for side, arg in zip(("left", "right"), tree.args):
        out[side] = to_pruner_zero(arg)
    return out


def metric_document(tree: Node, **extra) -> dict:
    """Our metric file: Pruner-Zero's tree plus what a reader or a later search needs."""
    from metrics.symbolic import canonical_key, to_sympy

    return {
        "format": "evolve-metric",
        "semantics": SEMANTICS,
        "expression": str(tree),
        "sympy": str(to_sympy(tree)),
        "key": canonical_key(tree),
        "tree": to_pruner_zero(tree),
        **extra,
    }


def load(path: str) -> Node:
    """A metric file (ours or Pruner-Zero's), or a prefix expression given in place of a path."""
    if not path.strip():
        raise MetricError("the metric is empty: name a metric file, or write one such as mul(abs(W), X)")
    p = Path(path)
    if not p.is_file():
        if "(" in path or path in LEAVES:
            return parse(path)
        raise MetricError(f"no metric file at {path}")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as error:
        raise MetricError(f"{path} is not valid JSON: {error.msg} at line {error.lineno}") from None
    if isinstance(data, dict) and data.get("format") == "evolve-metric":
        if data.get("semantics") != SEMANTICS:
            raise MetricError(f"{path} was written with metric semantics {data.get('semantics')}, this is {SEMANTICS}")
        tree = from_pruner_zero(data["tree"]) if data.get("tree") is not None else None
        written = parse(data["expression"]) if data.get("expression") is not None else None
        if tree is None and written is None:
            raise MetricError(f"{path} holds no metric: neither an expression nor a tree")
        # Both are written; a reader who edits the readable one must not have the other pruned with silently.
        if tree is not None and written is not None and written != tree:
            raise MetricError(f"{path}: its expression {data['expression']} and its tree {tree} differ; keep the one "
                              "you mean and delete the other")
        return tree if tree is not None else written
    return from_pruner_zero(data)


def _ours(path: str) -> dict:
    """The fields of our metric file at `path`; {} for Pruner-Zero's files and expressions. Unchecked:
    load() says what is wrong with a file."""
    p = Path(path)
    try:
        data = json.loads(p.read_text()) if p.is_file() else {}
    except json.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) and data.get("format") == "evolve-metric" else {}


def choice_of(path: str, name: str, default: str) -> str:
    """What a metric file says the search that found it chose beside the tree, e.g. its comparison "group"
    or its "allocation"; `default` when it names none (Pruner-Zero's files, expressions). Unchecked: the
    pruner that reads it knows the values."""
    return _ours(path).get(name, default)


def calibration_of(path: str) -> tuple[int, int] | None:
    """(samples, tokens per sample) of the calibration whose statistics a search scored the file's metric
    with (its fitness context); None where the file does not say (Pruner-Zero's files, expressions, a
    search that left the window length to the model)."""
    context = _ours(path).get("fitness", {}).get("context", {})
    found = context.get("nsamples"), context.get("seqlen")
    return found if all(isinstance(v, int) and v > 0 for v in found) else None


def save(path: str, tree: Node, **extra) -> None:
    Path(path).write_text(json.dumps(metric_document(tree, **extra), indent=2) + "\n")
