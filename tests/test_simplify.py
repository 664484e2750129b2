import pytest
import torch

import metrics
from metrics import parse, simplify
from metrics.check import DegenerateMetric, check, probe
from metrics.compile import compile_metric
from metrics.named import NAMED
from metrics.simplify import RULES
from pruners import masks
from pruners.spec import Sparsity

# (metric, its simplified form, a rule that must fire)
CASES = [
    ("mul(skp(W), X)", "mul(W, X)", "skp(x) -> x"),
    ("mul(neg(neg(W)), G)", "mul(W, G)", "neg(neg(x)) -> x"),
    ("mul(abs(neg(W)), X)", "mul(abs(W), X)", "abs(neg(x)) -> abs(x)"),
    ("mul(abs(sqr(W)), sub(W, G))", "mul(sqr(W), sub(W, G))", "abs(x >= 0) -> x"),
    ("mul(sqr(neg(W)), sub(W, G))", "mul(sqr(W), sub(W, G))", "sqr(neg|abs(x)) -> sqr(x)"),
    ("add(sqrt(neg(W)), log(abs(G)))", "add(sqrt(W), log(G))", "sqrt|log(neg|abs(x)) -> sqrt|log(x)"),
    ("mul(sqrt(sqr(W)), X)", "mul(abs(W), X)", "sqrt(sqr(x)) -> abs(x)"),
    ("mul(exp(log(W)), X)", "mul(add(abs(W), 0.001), X)", "exp(log(x)) -> add(abs(x), 0.001)"),
    ("add(mul(sqr(W), 1), G)", "add(sqr(W), G)", "mul(x, 1) -> x"),
    ("add(mul(1, W), divcol(G, 1))", "add(W, G)", "mul(x, 1) -> x"),
    ("add(mul(W, W), G)", "add(sqr(W), G)", "mul(x, x) -> sqr(x)"),
    ("add(sub(G, G), W)", "W", "sub(x, x) -> 0"),
    ("mul(add(W, neg(G)), X)", "mul(sub(W, G), X)", "add(x, neg(y)) -> sub(x, y)"),
    ("mul(sub(W, neg(G)), X)", "mul(add(W, G), X)", "sub(x, neg(y)) -> add(x, y)"),
    ("mul(div(W, neg(G)), X)", "mul(div(W, G), X)", "div|divrow|divcol(x, neg|abs(y)) -> div|divrow|divcol(x, y)"),
    ("add(divrow(abs(W), abs(W)), G)", "add(divrow(abs(W), W), G)", "div|divrow|divcol(x, neg|abs(y)) -> div|divrow|divcol(x, y)"),
    ("add(divcol(abs(W), neg(G)), G)", "add(divcol(abs(W), G), G)", "div|divrow|divcol(x, neg|abs(y)) -> div|divrow|divcol(x, y)"),
    ("mul(abs(divrow(sqr(W), G)), X)", "mul(divrow(sqr(W), G), X)", "abs(x >= 0) -> x"),
    ("mul(mul(sqr(W), divcol(X, 0.01)), log(X))", "mul(mul(sqr(W), mul(X, 100)), log(X))", "div|divrow|divcol(x, c != 0) -> mul(x, 1/|c|)"),
    ("add(divrow(W, -4), G)", "add(mul(W, 0.25), G)", "div|divrow|divcol(x, c != 0) -> mul(x, 1/|c|)"),
    ("mul(mms(zsn(G)), W)", "mul(mms(G), W)", "mms|zsn(mms|zsn(x)) -> mms|zsn(x)"),
    ("mul(add(2, 3), sub(W, G))", "sub(W, G)", "constant folding"),
    ("mms(mul(abs(W), X))", "mul(abs(W), X)", "mms|zsn|skp(f) -> f"),
    ("div(sub(W, G), X)", "sub(W, G)", "div(f, y) -> f"),
    ("mul(3, sub(W, G))", "sub(W, G)", "mul(c > 0, f) -> f"),
    ("mul(sub(W, G), -2)", "neg(sub(W, G))", "mul(c < 0, f) -> neg(f)"),
    ("sub(mul(W, X), 7)", "mul(W, X)", "add|sub(f, c) -> f"),
    ("add(1, mul(W, X))", "mul(W, X)", "add(c, f) -> f"),
    ("sub(1, mul(W, X))", "neg(mul(W, X))", "sub(c, f) -> neg(f)"),
    ("sqr(mul(W, X))", "abs(mul(W, X))", "sqr|sqrt|log(f) -> abs(f)"),
    ("exp(mul(W, X))", "mul(W, X)", "exp(f) -> f"),
    ("tanh(mul(W, G))", "mul(W, G)", "tanh(f) -> f"),
]


def test_every_rule_has_a_case():
    assert {rule for *_, rule in CASES} == {rule.name for rule in RULES}


@pytest.mark.parametrize("before, after, rule", CASES)
def test_rule(before, after, rule):
    fired = []
    assert simplify(parse(before), fired) == parse(after)
    assert rule in fired


@pytest.mark.parametrize("before, after, rule", CASES)
def test_rule_keeps_the_mask(before, after, rule):
    """A simplified metric prunes exactly the weights its original prunes (per row, per layer and 2:4)."""
    stats = probe(rows=32, cols=64, seed=1)
    stats["W"] = stats["W"] * 10  # |W| around 0.5: exp and tanh stay far from saturation
    a = compile_metric(parse(before))(**stats)
    b = compile_metric(parse(after))(**stats)
    for spec in (Sparsity.parse("unstructured", 0.5, "row"), Sparsity.parse("unstructured", 0.3, "layer"), Sparsity.parse("2:4")):
        assert torch.equal(masks.mask(a, spec), masks.mask(b, spec)), spec


def test_inside_a_product_rank_maps_stay():
    assert simplify(parse("mul(W, mms(G))")) == parse("mul(W, mms(G))")
    assert simplify(parse("add(W, sqr(G))")) == parse("add(W, sqr(G))")


def test_metrics_with_one_key_give_one_mask():
    expressions = [
        "mul(abs(W), X)", "mul(X, abs(W))", "mms(mul(abs(W), X))", "sqr(mul(W, X))", "zsn(sqrt(mul(W, X)))",
        "mul(abs(W), G)", "sqr(mul(W, G))", "div(mul(G, abs(W)), X)", "log(mul(W, G))",
        "mul(sqr(W), mms(G))", "mul(abs(mul(W, W)), mms(G))", "mul(mms(G), sqr(neg(W)))",
        "abs(W)", "sqrt(sqr(W))", "exp(log(W))", "mul(2, abs(W))", "divcol(abs(W), 0.01)", "mul(divrow(abs(W), 10), divcol(X, 2))",
    ]
    stats = probe(rows=32, cols=64, seed=2)
    spec = Sparsity.parse("unstructured", 0.5, "row")
    by_key = {}
    for e in expressions:
        by_key.setdefault(metrics.canonical_key(parse(e)), []).append(e)
    assert len(by_key) == 4  # Wanda, Taylor, Pruner-Zero, magnitude
    for group in by_key.values():
        first = masks.mask(compile_metric(parse(group[0]))(**stats), spec)
        for other in group[1:]:
            assert torch.equal(first, masks.mask(compile_metric(parse(other))(**stats), spec)), (group[0], other)


def test_different_rankings_get_different_keys():
    keys = {metrics.canonical_key(parse(e)) for e in ["mul(abs(W), X)", "mul(W, X)", "neg(mul(abs(W), X))", "mul(abs(W), mms(G))"]}
    assert len(keys) == 4


def test_a_factor_over_the_whole_tensor_leaves_the_key():
    """A norm of anything, or a row sum of X, is one positive number per layer: it changes no mask in any
    group, so metrics that differ by it share a key (a 50-generation search spent evaluations on such
    copies of W^2 X log(X)^2); a row sum of W differs per row and keeps its own."""
    same = ["mul(mul(sqr(W), X), sqr(log(X)))", "mul(mul(sqr(W), div(divrow(X, X), sqr(G))), sqr(log(X)))",
            "mul(div(sqr(W), G), mul(X, sqr(log(X))))"]
    assert len({metrics.canonical_key(parse(e)) for e in same}) == 1
    stats = probe(rows=32, cols=64, seed=5)
    scores = [compile_metric(parse(e))(**stats) for e in same]
    for spec in (Sparsity.parse("unstructured", 0.5, g) for g in ("row", "column", "layer")):
        assert all(torch.equal(masks.mask(scores[0], spec), masks.mask(s, spec)) for s in scores[1:]), spec
    assert torch.equal(masks.mask(scores[0], Sparsity.parse("2:4")), masks.mask(scores[1], Sparsity.parse("2:4")))
    assert metrics.canonical_key(parse("mul(sqr(W), divrow(X, W))")) != metrics.canonical_key(parse("mul(sqr(W), X)"))
    # a search whose every comparison is inside a row (per-row points, N:M) cannot see a per-row factor either
    rows = {metrics.canonical_key(parse(e), rows_only=True) for e in ["mul(sqr(W), divrow(X, W))", "mul(sqr(W), X)",
                                                                      "divrow(mul(sqr(W), X), G)"]}
    assert len(rows) == 1 and rows.isdisjoint({metrics.canonical_key(parse("mul(sqr(W), X)"))})
    assert metrics.canonical_key(parse("add(W, divrow(X, W))"), rows_only=True) != \
        metrics.canonical_key(parse("add(W, X)"), rows_only=True)  # inside a sum it is no factor of the score


def test_a_number_common_to_a_sum_is_a_factor_of_the_score():
    """sympy multiplies a number into a sum (10000 (G + X) becomes 10000 G + 10000 X): the key takes it out
    again, so the scaled copies share a key; a number on one term only changes the ranking and stays."""
    same = ["mul(mul(sqr(W), X), add(G, X))", "mul(mul(sqr(W), mul(add(G, X), 10000)), X)",
            "mul(mul(sqr(W), X), add(mul(G, 3), mul(3, X)))", "add(mul(mul(sqr(W), X), G), mul(sqr(mul(W, X)), 1))"]
    assert len({metrics.canonical_key(parse(e)) for e in same}) == 1
    stats = probe(rows=32, cols=64, seed=11)
    scores = [compile_metric(parse(e))(**stats) for e in same]
    for spec in [Sparsity.parse("unstructured", 0.5, g) for g in ("row", "column", "layer")] + [Sparsity.parse("2:4")]:
        assert all(torch.equal(masks.mask(scores[0], spec), masks.mask(s, spec)) for s in scores[1:]), spec
    assert metrics.canonical_key(parse("mul(mul(sqr(W), X), add(mul(G, 3), X))")) != metrics.canonical_key(parse(same[0]))


def test_an_irrational_factor_leaves_the_key():
    """An evolved constant such as 3.1623 is sqrt(10) to sympy, a factor as_coeff_Mul does not take out: the
    key drops any positive number multiplying the score (a search evaluated 3.1623 W^2 X |log X| beside
    W^2 X |log X|, with one fitness); a negative one reverses the ranking and keeps its own."""
    same = ["mul(mul(sqr(W), X), abs(log(X)))", "mul(mul(X, mul(sqr(W), 3.162277660168379)), abs(log(X)))",
            "mul(mul(sqr(W), mul(X, 0.31622776601683794)), abs(log(X)))"]
    assert len({metrics.canonical_key(parse(e)) for e in same}) == 1
    stats = probe(rows=32, cols=64, seed=13)
    scores = [compile_metric(parse(e))(**stats) for e in same]
    for spec in [Sparsity.parse("unstructured", 0.5, g) for g in ("row", "column", "layer")] + [Sparsity.parse("2:4")]:
        assert all(torch.equal(masks.mask(scores[0], spec), masks.mask(s, spec)) for s in scores[1:]), spec
    assert metrics.canonical_key(parse("mul(mul(sqr(W), X), mul(abs(log(X)), -3.162277660168379))")) != \
        metrics.canonical_key(parse(same[0]))


def test_a_power_of_a_nonnegative_score_shares_its_key():
    """W^2 X^2 is (|W| X)^2 and W^4 X^3 log(X)^2 is (W^2 X^1.5 |log X|)^2: a nonnegative score and its powers
    prune alike in every group, so they share a key (the searches spent evaluations on such copies); a
    signed one does not (W X^2 against |W| X^2), nor another exponent (W^2 X |log X| against W^2 X log(X)^2)."""
    same = [["mul(abs(W), X)", "mul(mul(sqr(W), X), X)", "sqrt(mul(abs(W), X))"],
            ["mul(mul(sqr(sqr(W)), mul(X, sqr(X))), sqr(log(X)))", "mul(mul(sqr(W), mul(X, sqrt(X))), abs(log(X)))"]]
    stats = probe(rows=32, cols=64, seed=7)
    specs = [Sparsity.parse("unstructured", 0.5, g) for g in ("row", "column", "layer")] + [Sparsity.parse("2:4")]
    for group in same:
        assert len({metrics.canonical_key(parse(e)) for e in group}) == 1, group
        scores = [compile_metric(parse(e))(**stats) for e in group]
        for spec in specs:
            assert all(torch.equal(masks.mask(scores[0], spec), masks.mask(s, spec)) for s in scores[1:]), (group, spec)
    apart = [("mul(W, sqr(X))", "mul(abs(W), sqr(X))"),
             ("mul(mul(sqr(W), X), abs(log(X)))", "mul(mul(sqr(W), X), sqr(log(X)))")]
    for a, b in apart:
        assert metrics.canonical_key(parse(a)) != metrics.canonical_key(parse(b))


def test_a_per_row_factor_keeps_its_key():
    """Dividing by a row's sum keeps every comparison inside a row (per-row and N:M masks) but not one across
    rows (a per-layer mask): the key must tell the metrics apart, or a layer-wise fitness would be wrong."""
    stats = probe(rows=32, cols=64, seed=3)
    wanda, scaled = parse("mul(abs(W), X)"), parse("divrow(mul(abs(W), X), W)")
    a, b = compile_metric(wanda)(**stats), compile_metric(scaled)(**stats)
    for spec in (Sparsity.parse("unstructured", 0.5, "row"), Sparsity.parse("2:4")):
        assert torch.equal(masks.mask(a, spec), masks.mask(b, spec))
    layer = Sparsity.parse("unstructured", 0.5, "layer")
    assert not torch.equal(masks.mask(a, layer), masks.mask(b, layer))
    assert metrics.canonical_key(wanda) != metrics.canonical_key(scaled)


def test_ria_in_the_language_is_ria():
    """RIA as its authors compute it (relative importance plus activations to the power a = 0.5, their
    activation being Wanda's squared norm over the samples), against the named metric, on a probe layer."""
    stats = probe(rows=32, cols=64, seed=4)
    W, X, samples = stats["W"], stats["X"], 16
    scaler_row = X**2 / samples  # what their wrapped layer accumulates
    relative = W.abs() / W.abs().sum(dim=0) + W.abs() / W.abs().sum(dim=1).reshape(-1, 1)
    hand = relative * torch.sqrt(scaler_row) ** 0.5
    ours = compile_metric(NAMED["ria"].tree)(**stats)
    for spec in (Sparsity.parse("unstructured", 0.5, "row"), Sparsity.parse("unstructured", 0.6, "layer"), Sparsity.parse("2:4")):
        assert torch.equal(masks.mask(hand, spec), masks.mask(ours, spec)), spec
    check(NAMED["ria"].tree)  # not degenerate


@pytest.mark.parametrize(
    "text, why",
    [
        ("X", "X alone"),
        ("sqr(mms(X))", "X alone"),
        ("div(X, W)", "X alone"),
        ("divrow(X, W)", "X alone"),
        ("divcol(X, G)", "X alone"),
        ("sub(W, W)", "no leaf at all"),
        ("add(3, 4)", "no leaf at all"),
        ("mul(W, sub(X, X))", "constant within a row"),
        ("mul(tanh(exp(exp(exp(G)))), X)", "ranks every row alike"),
        ("div(W, sub(G, G))", "NaN or Inf"),
    ],
)
def test_degenerate_metrics_are_found_without_a_model(text, why):
    with pytest.raises(DegenerateMetric, match=why):
        check(parse(text))


def test_useful_metrics_pass_the_check():
    for text in ["abs(W)", "mul(abs(W), X)", "mul(abs(mul(W, W)), mms(G))", "G", "mul(X, G)"]:
        check(parse(text))


def _trees_to_depth_two():
    """Every tree of depth <= 2 over W (signed), X, G and the constants -1 and 0.5, with any operator."""
    from metrics.ops import OPS
    from metrics.tree import constant, make

    leaves = [make("W"), make("X"), make("G"), constant(-1), constant(0.5)]
    unary = [op for op, o in OPS.items() if o.arity == 1]
    binary = [op for op, o in OPS.items() if o.arity == 2]
    one = leaves + [make(u, a) for u in unary for a in leaves] + [make(b, x, y) for b in binary for x in leaves for y in leaves]
    return one + [make(u, t) for u in unary for t in one] + [make(b, t, y) for b in binary for t in one for y in leaves] + \
        [make(b, y, t) for b in binary for t in one for y in leaves]


@pytest.mark.filterwarnings("ignore:std")  # zsn of a lone constant
def test_what_simplification_calls_nonnegative_is_nonnegative_on_signed_inputs():
    """abs(x >= 0) -> x drops an abs on this claim: a wrong claim would change masks wherever x < 0."""
    from metrics.check import probe
    from metrics.compile import evaluate
    from metrics.simplify import nonnegative

    leaves = probe(rows=8, cols=16)
    trees = _trees_to_depth_two()
    claimed = [t for t in trees if nonnegative(t)]
    for tree in claimed:
        value = evaluate(tree, **leaves)
        assert (value[~value.isnan()] >= 0).all(), tree
    assert 0.2 < len(claimed) / len(trees) < 0.8  # the claim is made, and withheld, often


def test_the_searched_named_metric_ranks_as_its_doc_says():
    """evolve-smollm2, W^4 X^3 log(X)^2, prunes per row and 2:4 as |W| X^0.75 |log X|^0.5 written by hand."""
    stats = probe(rows=32, cols=64, seed=6)
    W, X = stats["W"], stats["X"]
    hand = W.abs() * X**0.75 * (X.abs() + 1e-3).log().abs() ** 0.5
    ours = compile_metric(NAMED["evolve-smollm2"].tree)(**stats)
    for spec in (Sparsity.parse("unstructured", 0.5, "row"), Sparsity.parse("unstructured", 0.6, "row"), Sparsity.parse("2:4")):
        assert torch.equal(masks.mask(hand, spec), masks.mask(ours, spec)), spec
