import json

import pytest
import torch

import metrics
from metrics import MetricError, parse
from metrics.compile import compile_metric, evaluate, source
from metrics.ops import OPS
from metrics.tree import Node, from_pruner_zero, to_pruner_zero

# Pruner-Zero's released metric, as its repository ships it
PRUNER_ZERO = {
    "data": "mul",
    "left": {"data": "abs", "left": {"data": "mul", "left": {"data": "W"}, "right": {"data": "W"}}},
    "right": {"data": "mms", "left": {"data": "G"}},
}


def test_pruner_zero_json_loads_as_is(tmp_path):
    path = tmp_path / "metric.json"
    path.write_text(json.dumps(PRUNER_ZERO))
    tree = metrics.load(str(path))
    assert str(tree) == "mul(abs(mul(W, W)), mms(G))"
    assert to_pruner_zero(tree) == PRUNER_ZERO


def test_our_file_round_trips_with_its_extra_fields(tmp_path):
    path = tmp_path / "m.json"
    metrics.save(str(path), parse("mul(abs(W), X)"), fitness={"perplexity": 12.5})
    doc = json.loads(path.read_text())
    assert doc["expression"] == "mul(abs(W), X)" and doc["sympy"] == "X*Abs(W)"
    assert doc["semantics"] == metrics.SEMANTICS and doc["fitness"] == {"perplexity": 12.5}
    assert doc["key"] == metrics.canonical_key(parse("mul(X, abs(W))"))
    assert metrics.load(str(path)) == parse("mul(abs(W), X)")


def test_our_file_with_an_edited_expression_is_read_as_written_or_refused(tmp_path):
    """apply pruned with the tree, so a file whose expression a reader had edited pruned with the old metric."""
    path = tmp_path / "m.json"
    metrics.save(str(path), parse("mul(abs(W), X)"))
    doc = json.loads(path.read_text())
    path.write_text(json.dumps({**doc, "expression": "mul(W, X)"}))
    with pytest.raises(MetricError, match=r"its expression mul\(W, X\) and its tree mul\(abs\(W\), X\) differ"):
        metrics.load(str(path))
    path.write_text(json.dumps({**doc, "expression": "mul(W,X)", "tree": None}))  # the tree deleted
    assert metrics.load(str(path)) == parse("mul(W, X)")
    path.write_text(json.dumps({**doc, "expression": " mul(abs(W),X)"}))  # the same metric, spaced otherwise
    assert metrics.load(str(path)) == parse("mul(abs(W), X)")
    path.write_text(json.dumps({k: v for k, v in doc.items() if k not in ("expression", "tree")}))
    with pytest.raises(MetricError, match="holds no metric"):
        metrics.load(str(path))


@pytest.mark.parametrize("text", ["mul(abs(W), X)", "add(sqr(W), mul(100, G))", "W", "zsn(div(W, G))", "mul(-1.5, W)"])
def test_prefix_strings_round_trip(text):
    assert str(parse(text)) == text
    assert from_pruner_zero(to_pruner_zero(parse(text))) == parse(text)


@pytest.mark.parametrize(
    "text, message",
    [
        ("mul(W)", "mul takes 2 operand(s), got 1"),
        ("foo(W)", "unknown operator or leaf 'foo'"),
        ("abs(W, X)", "abs takes 1 operand(s), got 2"),
        ("mul(W, X", "expected ')'"),
        ("mul(W, X) W", "after a complete metric"),
        ("W(X)", "leaf 'W' cannot have operands"),
    ],
)
def test_bad_expressions_name_the_problem(text, message):
    with pytest.raises(MetricError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse(text)


def test_bad_json_names_the_node(tmp_path):
    bad = {"data": "mul", "left": {"data": "W"}, "right": {"data": "sqr", "left": {"data": "Q"}}}
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(MetricError, match=r"unknown operator or leaf 'Q' at node root.right.left"):
        metrics.load(str(path))
    path.write_text("{not json")
    with pytest.raises(MetricError, match="is not valid JSON"):
        metrics.load(str(path))
    path.write_text(json.dumps({"data": "mul", "left": {"data": "W"}}))
    with pytest.raises(MetricError, match="mul takes 2 operand"):
        metrics.load(str(path))


def test_operators_have_pruner_zero_semantics():
    x = torch.tensor([[-2.0, 0.0, 3.0], [1.0, -1.0, 200.0]])
    y = torch.tensor([[3.0, 4.0, 0.0], [0.0, 0.0, 0.0]])
    expected = {
        "sqr": x * x,
        "neg": -x,
        "abs": x.abs(),
        "log": torch.log(x.abs() + 0.001),
        "exp": torch.exp(torch.clamp(x, max=100)),
        "sqrt": torch.sqrt(x.abs()),
        "tanh": torch.tanh(x),
        "skp": x,
        "mms": (x - x.min()) / (x.max() - x.min()),
        "zsn": (x - x.mean()) / x.std(),
        "add": x + y,
        "sub": x - y,
        "mul": x * y,
        "div": x / 5.0,  # ||y||_F = 5
        # ours: the sums of |y| along each row are 7 and 0, along each column 3, 4 and 0 (x / 0 is inf)
        "divrow": x / torch.tensor([[7.0], [0.0]]),
        "divcol": x / torch.tensor([[3.0, 4.0, 0.0]]),
    }
    assert set(expected) == set(OPS)
    for name, want in expected.items():
        tree = Node(name, (Node("W"),) if OPS[name].arity == 1 else (Node("W"), Node("G")))
        assert torch.allclose(evaluate(tree, W=x, G=y), want), name
        assert torch.allclose(compile_metric(tree)(W=x, G=y), want), name


def random_tree(gen: torch.Generator, depth: int) -> Node:
    names = list(OPS)
    if depth == 0 or torch.rand(1, generator=gen).item() < 0.3:
        return Node(["W", "X", "G", "0.5", "2"][torch.randint(5, (1,), generator=gen).item()])  # constants too
    op = OPS[names[torch.randint(len(names), (1,), generator=gen).item()]]
    return Node(op.name, tuple(random_tree(gen, depth - 1) for _ in range(op.arity)))


@pytest.mark.filterwarnings("error")  # zsn of a lone constant is NaN, quietly: a search's terminal shows no warning
def test_compiled_equals_the_node_by_node_interpreter_on_random_trees():
    gen = torch.Generator().manual_seed(0)
    W, X, G = torch.randn(8, 16) * 0.1, torch.rand(1, 16), torch.rand(8, 16) * 1e-3
    for _ in range(300):
        tree = random_tree(gen, 4)
        want = evaluate(tree, W=W, X=X, G=G).expand(8, 16)
        got = compile_metric(tree)(W=W, X=X, G=G)
        assert torch.allclose(got, want, equal_nan=True, rtol=1e-5, atol=1e-6), str(tree)


def test_shared_subtrees_are_computed_once():
    code = source(parse("add(sqr(mul(W, X)), mms(sqr(mul(W, X))))"))
    assert code.count("(W * X)") == 1


def test_constant_subtrees_fold_to_their_float64_value():
    from metrics.compile import evaluate_scalar

    assert evaluate_scalar(metrics.parse("add(1, mul(2, 3))")) == 7.0
    assert evaluate_scalar(metrics.parse("sqrt(sqr(neg(3)))")) == 3.0
    assert evaluate_scalar(metrics.parse("0.001")) == 0.001


def test_a_new_leaf_is_one_registration(monkeypatch):
    """A statistic registered in LEAVES parses, compiles, simplifies, keys and is checked like X, with no
    other change: V here is a nonnegative per-input-channel statistic, U a per-weight one."""
    from metrics.ops import LEAVES, Leaf

    monkeypatch.setitem(LEAVES, "V", Leaf("V", "input", True, 1.0, "a test statistic"))
    monkeypatch.setitem(LEAVES, "U", Leaf("U", "weight", False, 0.1, "another"))
    W = torch.tensor([[1.0, -2.0, 3.0], [-4.0, 5.0, 0.5]])  # (out 2, in 3)
    V = torch.tensor([[2.0, 0.5, 1.0]])  # (1, in 3)
    tree = metrics.check(parse("mul(abs(W), abs(V))"))
    assert str(tree) == "mul(abs(W), V)"  # |V| = V: the registration says it is never negative
    assert torch.equal(compile_metric(tree)(W=W, V=V), torch.tensor([[2.0, 1.0, 3.0], [8.0, 2.5, 0.5]]))
    assert metrics.canonical_key(parse("mul(V, abs(W))")) == metrics.canonical_key(tree)
    assert metrics.canonical_key(tree) != metrics.canonical_key(parse("mul(abs(W), X)"))
    with pytest.raises(metrics.DegenerateMetric, match="V and X alone"):
        metrics.check(parse("mul(V, X)"))
    assert str(metrics.check(parse("mul(U, X)"))) == "mul(U, X)"  # a per-weight leaf ranks within a row
    with pytest.raises(TypeError, match="unknown leaves"):
        compile_metric(tree)(W=W, Q=V)
