"""Symbolic baselines prune exactly as the hand-written methods do, on the real embedded model."""
import pytest
import torch

import pruners
from pruners import models
from pruners.spec import Sparsity


@pytest.fixture(scope="module")
def model_and_calibration(smollm):
    model, tokenizer = smollm
    calibration = torch.randint(0, tokenizer.vocab_size, (4, 64), generator=torch.Generator().manual_seed(0))
    dense = {n: lin.weight.detach().clone() for n, lin in models.target_linears(model).items()}
    return model, calibration, dense


def pruned_weights(model, dense, method, calibration, spec):
    for name, lin in models.target_linears(model).items():
        lin.weight.data.copy_(dense[name])
    pruners.method(method).prune(model, calibration, spec, torch.device("cpu"))
    return {n: lin.weight.detach().clone() for n, lin in models.target_linears(model).items()}


@pytest.mark.parametrize(
    "hand, symbolic, spec",
    [
        ("wanda", "metric:wanda", Sparsity.parse("unstructured", 0.5)),
        ("wanda", "metric:wanda", Sparsity.parse("2:4")),
        ("magnitude", "metric:magnitude", Sparsity.parse("unstructured", 0.5, "layer")),
        ("magnitude", "metric:magnitude", Sparsity.parse("4:8")),
    ],
)
def test_symbolic_equals_hand_written(model_and_calibration, hand, symbolic, spec):
    model, calibration, dense = model_and_calibration
    a = pruned_weights(model, dense, hand, calibration, spec)
    b = pruned_weights(model, dense, symbolic, calibration, spec)
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert sum((w == 0).sum().item() for w in a.values()) > 0.49 * sum(w.numel() for w in a.values())


def test_a_metric_that_turns_nan_on_a_layer_names_the_layer(tiny):
    from pruners.errors import InputError

    G = {name: torch.rand_like(lin.weight) for name, lin in models.target_linears(tiny).items()}
    G["1.mlp.up_proj"][3, 5] = float("nan")
    with pytest.raises(InputError, match=r"yields NaN or Inf on layer 1.mlp.up_proj"):
        pruners.method("metric:taylor").prune(tiny, None, Sparsity.parse("unstructured", 0.5), torch.device("cpu"), {"G": G})


def test_a_metric_using_G_without_G_is_refused(tiny):
    from pruners.errors import InputError

    with pytest.raises(InputError, match="uses G"):
        pruners.method("metric:pruner-zero").prune(tiny, None, Sparsity.parse("2:4"), torch.device("cpu"))


def test_rescale_follows_how_each_statistic_grows_with_the_calibration():
    """Windows twice as long (each token twice) and twice as many samples (each sample twice): the factors
    bring the shorter calibration's X, D and G to the longer one's exactly."""
    import gradients
    from pruners import stats

    from conftest import tiny_llama

    linear = torch.nn.Linear(6, 3)
    x = torch.randn(2, 5, 6)  # (samples, tokens, in)
    gathered = {}
    for tokens, inputs in ((5, x), (10, torch.cat([x, x], dim=1))):
        norm, hessian = stats.InputNorm(linear), stats.Hessian(linear)
        norm.add(inputs), hessian.add(inputs)
        gathered[tokens] = norm.result(2), stats.obs_diagonal(hessian.result(2))
    factors = stats.rescale((2, 10), (2, 5))
    assert torch.allclose(gathered[5][0] * factors["X"], gathered[10][0], rtol=1e-6)
    assert torch.allclose(gathered[5][1] * factors["D"], gathered[10][1], rtol=1e-5)
    model, calibration = tiny_llama(3), torch.randint(0, 96, (3, 8))
    once = gradients.compute(model, calibration, torch.device("cpu"))
    twice = gradients.compute(model, torch.cat([calibration, calibration]), torch.device("cpu"))
    for leaf in ("G", "F"):
        factor = stats.rescale((6, 8), (3, 8))[leaf]
        assert all(torch.allclose(once[leaf][n] * factor, twice[leaf][n], rtol=1e-4, atol=1e-8) for n in once[leaf])


def zeros_at_half(tiny, metric: str, leaf: str) -> list[torch.Tensor]:
    """Each target linear's zeros after a copy of `tiny` is pruned to 50% by `metric`, calibrated on two windows
    of 12 tokens, with a random `leaf` (G or F) standing for the gradients; the same draws at every call."""
    import copy

    calibration = torch.randint(0, 96, (2, 12), generator=torch.Generator().manual_seed(1))
    gradients = {name: torch.rand(lin.weight.shape, generator=torch.Generator().manual_seed(2))
                 for name, lin in models.target_linears(tiny).items()}
    model = copy.deepcopy(tiny)
    pruners.method(f"metric:{metric}").prune(model, calibration, Sparsity.parse("unstructured", 0.5), torch.device("cpu"),
                                             {leaf: gradients})
    return [lin.weight == 0 for lin in models.target_linears(model).values()]


@pytest.mark.parametrize("found, by_hand", [
    ("mul(mul(sqr(W), X), abs(log(X)))", "mul(mul(sqr(W), X), abs(log(mul(X, 1.4142135623730951))))"),
    ("mul(abs(W), add(X, G))", "mul(abs(W), add(mul(X, 1.4142135623730951), mul(G, 2)))"),
])
def test_a_found_metric_sees_its_leaves_on_its_calibrations_scale(tiny, tmp_path, found, by_hand):
    """A file found on 8 windows of 24 tokens, pruning with 2 windows of 12: X grows by sqrt 2, G by 2."""
    import metrics

    path = tmp_path / "found.json"
    metrics.save(str(path), metrics.parse(found), fitness={"perplexity": 20.0, "context": {"nsamples": 8, "seqlen": 24}})
    pruned = {metric: zeros_at_half(tiny, metric, "G") for metric in (str(path), by_hand, found)}
    assert all(torch.equal(a, b) for a, b in zip(pruned[str(path)], pruned[by_hand]))
    assert not all(torch.equal(a, b) for a, b in zip(pruned[str(path)], pruned[found]))  # the scale matters here


def test_the_named_search_metric_says_where_it_was_found():
    from pathlib import Path

    import metrics
    from metrics.named import NAMED

    found = Path(__file__).parents[1] / "results/evolve-smollm2/best_metric.json"
    assert NAMED["evolve-smollm2"].calibration == metrics.calibration_of(str(found)) == (32, 512)


def test_the_make_run_metric_is_named_with_its_group_and_prunes_as_its_file(tiny):
    """evolve-fisher-smollm2 is the committed `make run` pick: its tree, group and calibration, and pruning by
    name gives exactly its file's masks, compared over each layer (not the per-row masks of its expression)."""
    from pathlib import Path

    import metrics
    from metrics.named import NAMED

    found = str(Path(__file__).parents[1] / "results/threetext-make-run-smollm2/best_metric.json")
    named = NAMED["evolve-fisher-smollm2"]
    assert named.tree == metrics.load(found)
    assert named.group == metrics.choice_of(found, "group", "row") == "layer"
    assert named.calibration == metrics.calibration_of(found) == (32, 512)
    pruned = {metric: zeros_at_half(tiny, metric, "F") for metric in ("evolve-fisher-smollm2", found, named.expression)}
    assert all(torch.equal(a, b) for a, b in zip(pruned["evolve-fisher-smollm2"], pruned[found]))
    rows = [m.sum(dim=1) for m in pruned[found]]
    assert any(len(set(r.tolist())) > 1 for r in rows)  # rows lose different shares: compared over the layer
    assert all(len(set(m.sum(dim=1).tolist())) == 1 for m in pruned[named.expression])  # the expression: per row
