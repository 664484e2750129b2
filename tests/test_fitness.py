"""The fitness against numbers computed another way: masks chosen by argsort here, perplexity by
evolve.perplexity over the same windows (what `evolve eval` reports)."""
import copy
import dataclasses
import json
import math

import pytest
import torch

import metrics
import pruners
from evolve.fitness import Choice, FitnessEvaluator, FitnessSetup
from evolve.perplexity import perplexity
from pruners import models
from pruners.errors import InputError
from pruners.spec import Sparsity

from conftest import summed_inputs
from test_walker import naive_wanda


@pytest.fixture(scope="module")
def evaluator(tiny_dir):
    setup = FitnessSetup(
        model=tiny_dir, dtype="float32", device="cpu", calib="pydoc", eval="pydoc", nsamples=4, seqlen=32, seed=0,
        batch_size=4, points=("0.5", "2:4"), fitness_tokens=128, early_windows=1, recalibrate=False,
    )
    return FitnessEvaluator(setup)


def pruned_by_argsort(evaluator, group: int | None) -> torch.nn.Module:
    """A copy of the dense model with |W| X's lowest half dropped per row (group None) or 2 of every 4."""
    model = copy.deepcopy(evaluator.host.model)
    for name, lin in models.target_linears(model).items():
        W = evaluator.W[name]
        score = W.abs() * evaluator.leaf("X")[name]  # (out, in); random float weights: no ties
        rows = score.reshape(-1, group) if group else score
        drop = rows.argsort(dim=1)[:, : rows.shape[1] // 2]
        lin.weight.data = W.clone().reshape(rows.shape).scatter_(1, drop, 0.0).reshape(W.shape)
    return model


def test_fitness_is_the_geometric_mean_of_the_points_perplexities(evaluator):
    windows, cpu = evaluator.host.windows, torch.device("cpu")
    assert windows.shape == (4, 32)
    dense = perplexity(evaluator.host.model, windows, cpu)
    half = perplexity(pruned_by_argsort(evaluator, None), windows, cpu, batch_size=4)
    two_four = perplexity(pruned_by_argsort(evaluator, 4), windows, cpu, batch_size=4)
    result = evaluator.evaluate("mul(abs(W), X)")
    assert (result["status"], result["error"]) == ("ok", "")
    points = eval(result["points"])
    assert points["0.5"] == pytest.approx(half, rel=1e-5)
    assert points["2:4"] == pytest.approx(two_four, rel=1e-5)
    assert result["fitness"] == pytest.approx(math.sqrt(half * two_four), rel=1e-5)
    # the combination itself, exactly: the two points are so close that an arithmetic mean is within 1e-7
    assert result["fitness"] == pytest.approx(math.sqrt(points["0.5"] * points["2:4"]), rel=1e-12)
    vocabulary = evaluator.host.model.config.vocab_size  # a random model: every metric within 1% of it, which is
    assert half == pytest.approx(vocabulary, rel=0.01) == two_four  # why the search's own tests use an oracle fitness
    assert half != pytest.approx(two_four, rel=1e-4)  # two numbers, not one counted twice (a random model: both near the vocabulary size)
    assert perplexity(evaluator.host.model, windows, cpu) == dense  # and the model was put back dense


def test_early_stop_returns_the_first_windows_perplexity(evaluator):
    first = perplexity(pruned_by_argsort(evaluator, None), evaluator.host.windows[:1], torch.device("cpu"))
    stopped = evaluator.evaluate("mul(abs(W), X)", thresholds={"0.5": 1.0, "2:4": 1.0})  # every perplexity is above 1
    assert stopped["status"] == "early"
    assert eval(stopped["points"]) == pytest.approx({"0.5": first}, rel=1e-5)
    assert stopped["fitness"] == pytest.approx(first, rel=1e-5)
    whole = evaluator.evaluate("mul(abs(W), X)", thresholds={"0.5": 1e9, "2:4": 1e9})
    assert whole["status"] == "ok" and set(eval(whole["points"])) == {"0.5", "2:4"}


def test_early_stop_at_a_later_point_takes_the_worst_point_seen(evaluator):
    """A candidate stopped at its second point scores its worst point seen, not the mean of a full first
    point and a partial second."""
    first = {g: perplexity(pruned_by_argsort(evaluator, g), evaluator.host.windows[:1], torch.device("cpu")) for g in (None, 4)}
    assert first[None] != pytest.approx(first[4], rel=1e-5)
    threshold = (first[None] + first[4]) / 2  # the lower point passes its first window, the higher one stops
    order = ("0.5", "2:4") if first[None] < first[4] else ("2:4", "0.5")
    stopping = FitnessEvaluator(dataclasses.replace(evaluator.setup, points=order))
    result = stopping.evaluate("mul(abs(W), X)", thresholds={"0.5": threshold, "2:4": threshold})
    points = eval(result["points"])
    assert result["status"] == "early" and list(points) == list(order)
    assert points[order[1]] == pytest.approx(max(first.values()), rel=1e-5)
    assert result["fitness"] == max(points.values()) != pytest.approx(math.sqrt(points["0.5"] * points["2:4"]), rel=1e-7)


def test_each_point_has_its_own_early_stop_bound(evaluator):
    """A bound that stops one point does not stop the other: 2:4 perplexity is several times 50%'s."""
    first = {g: perplexity(pruned_by_argsort(evaluator, g), evaluator.host.windows[:1], torch.device("cpu")) for g in (None, 4)}
    passes = evaluator.evaluate("mul(abs(W), X)", thresholds={"0.5": 1e9, "2:4": first[4] * 1.001})
    assert passes["status"] == "ok"
    stops = evaluator.evaluate("mul(abs(W), X)", thresholds={"0.5": 1e9, "2:4": first[4] * 0.999})
    assert stops["status"] == "early" and eval(stops["points"])["2:4"] == pytest.approx(first[4], rel=1e-5)


def test_a_point_read_whole_before_its_early_windows_stops_the_later_points(evaluator):
    """With no more windows than early_windows, a point above its bound stops the candidate after it: a
    one-window fitness must not spend its later points on a metric already clearly bad."""
    whole = perplexity(pruned_by_argsort(evaluator, None), evaluator.host.windows, torch.device("cpu"))
    few = FitnessEvaluator(dataclasses.replace(evaluator.setup, early_windows=len(evaluator.host.windows) + 1))
    result = few.evaluate("mul(abs(W), X)", thresholds={"0.5": whole * 0.999, "2:4": 1e9})
    assert result["status"] == "early" and eval(result["points"]) == pytest.approx({"0.5": whole}, rel=1e-5)
    assert few.evaluate("mul(abs(W), X)", thresholds={"0.5": whole * 1.001, "2:4": 1e9})["status"] == "ok"


def test_recalibrate_takes_X_from_the_pruned_model_block_by_block(evaluator):
    recalibrating = FitnessEvaluator(dataclasses.replace(evaluator.setup, recalibrate=True, points=("0.5",)))
    host = recalibrating.host
    model = copy.deepcopy(host.model)
    naive_wanda(model, host.calibration, Sparsity.parse("unstructured", 0.5))  # X from the pruned path, the slow way
    expected = perplexity(model, host.windows, torch.device("cpu"))
    result = recalibrating.evaluate("mul(abs(W), X)")
    assert result["fitness"] == pytest.approx(expected, rel=1e-5)
    one_shot = perplexity(pruned_by_argsort(evaluator, None), evaluator.host.windows, torch.device("cpu"))
    assert expected != pytest.approx(one_shot, rel=1e-4)  # on this model dense X and pruned-path X choose differently
    # a metric without X scores the same on either path: recalibrating must hand it G as the one-shot path does
    with_G = recalibrating.evaluate("mul(abs(W), G)")
    assert with_G["status"] == "ok"
    one_shot_G = eval(evaluator.evaluate("mul(abs(W), G)")["points"])["0.5"]
    assert with_G["fitness"] == pytest.approx(one_shot_G, rel=1e-6)


def test_the_d_leaf_is_sparsegpts_denominator_from_the_dense_models_hessians(evaluator):
    """D of every target from the walker equals obs_diagonal of a Hessian summed by hooks on the whole dense
    model (2/N x^T x), and a metric reading D is scored with it."""
    from pruners.stats import obs_diagonal

    model, calibration = evaluator.host.model, evaluator.host.calibration
    sums = summed_inputs(model, calibration, models.target_linears(model), lambda x: x.T @ x)  # (in, in) each
    D = evaluator.leaf("D")
    assert D.keys() == sums.keys()
    for name, total in sums.items():
        assert torch.allclose(D[name], obs_diagonal(total * 2 / len(calibration)), rtol=1e-3), name  # float32 sums in other orders
    saliency = eval(evaluator.evaluate("divcol(sqr(W), D)")["points"])
    assert saliency != pytest.approx(eval(evaluator.evaluate("sqr(W)")["points"]), rel=1e-4)  # D changes the masks


def test_a_layer_group_compares_a_points_scores_over_the_whole_layer(evaluator):
    layered = FitnessEvaluator(dataclasses.replace(evaluator.setup, group="layer", points=("0.5",)))
    model = copy.deepcopy(evaluator.host.model)
    for name, lin in models.target_linears(model).items():
        W = evaluator.W[name]
        score = (W.abs() * evaluator.leaf("X")[name]).flatten()  # (out * in,)
        drop = score.argsort()[: score.numel() // 2]
        lin.weight.data = W.clone().flatten().scatter_(0, drop, 0.0).reshape(W.shape)
    cpu = torch.device("cpu")
    expected = perplexity(model, evaluator.host.windows, cpu, batch_size=4)
    assert layered.evaluate("mul(abs(W), X)")["fitness"] == pytest.approx(expected, rel=1e-5)
    per_row = perplexity(pruned_by_argsort(evaluator, None), evaluator.host.windows, cpu, batch_size=4)
    assert expected != pytest.approx(per_row, rel=1e-4)
    # a gene search's candidate names its group: a per-row setup told "layer" prunes over the layer
    told = evaluator.evaluate("mul(abs(W), X)", choice=Choice(group="layer"))
    assert json.loads(told["points"])["0.5"] == pytest.approx(expected, rel=1e-5)
    assert json.loads(told["points"])["2:4"] == json.loads(evaluator.evaluate("mul(abs(W), X)")["points"])["2:4"]  # N:M has no group
    # its fitness is not a per-row one: the store keeps them apart (and per-row contexts read as before)
    assert layered.setup.context()["group"] == "layer" and "group" not in evaluator.setup.context()


def test_owl_prunes_each_block_at_the_sparsity_the_walkers_dense_pass_gives(evaluator):
    from pruners.allocation import block_sparsities

    allocating = FitnessEvaluator(dataclasses.replace(evaluator.setup, allocation="owl", points=("0.6",)))
    cpu, host = torch.device("cpu"), evaluator.host
    ratios = block_sparsities(copy.deepcopy(host.model), host.calibration, cpu, Sparsity.parse("unstructured", 0.6, allocation="owl"))
    assert len(set(ratios)) == 2  # two blocks, two sparsities
    model = copy.deepcopy(host.model)
    for name, lin in models.target_linears(model).items():
        W = evaluator.W[name]
        drop = (W.abs() * evaluator.leaf("X")[name]).argsort(dim=1)[:, : int(W.shape[1] * ratios[int(name[0])])]
        lin.weight.data = W.clone().scatter_(1, drop, 0.0)
    expected = perplexity(model, host.windows, cpu, batch_size=4)
    assert allocating.evaluate("mul(abs(W), X)")["fitness"] == pytest.approx(expected, rel=1e-5)
    # a gene search's candidate names its allocation: a uniform setup told "owl" spreads its sparsity by OWL
    uniform = FitnessEvaluator(dataclasses.replace(evaluator.setup, points=("0.6",)))
    assert uniform.evaluate("mul(abs(W), X)", choice=Choice(allocation="owl"))["fitness"] == pytest.approx(expected, rel=1e-5)
    assert uniform.evaluate("mul(abs(W), X)")["fitness"] != pytest.approx(expected, rel=1e-4)
    assert allocating.setup.context()["allocation"] == "owl" and "allocation" not in evaluator.setup.context()


def test_calibration_seeds_score_every_point_once_per_draw(evaluator):
    """The fitness over draws 0 and 1 is the geometric mean of the four points two single-draw evaluators
    give, each with its own X; the second draw's points name their seed."""
    both = FitnessEvaluator(dataclasses.replace(evaluator.setup, calib_seeds=(1,)))
    other = FitnessEvaluator(dataclasses.replace(evaluator.setup, seed=1))
    first = eval(evaluator.evaluate("mul(abs(W), X)")["points"])
    second = eval(other.evaluate("mul(abs(W), X)")["points"])
    result = both.evaluate("mul(abs(W), X)")
    assert eval(result["points"]) == pytest.approx({**first, **{f"{k} seed 1": v for k, v in second.items()}}, rel=1e-6)
    assert first != pytest.approx(second, rel=1e-4)  # the draws differ
    assert result["fitness"] == pytest.approx(math.prod([*first.values(), *second.values()]) ** 0.25, rel=1e-6)
    assert both.setup.context()["calib_seeds"] == (1,) and "calib_seeds" not in evaluator.setup.context()


def test_another_text_scores_every_point_on_its_own_fitness_and_validation_windows(evaluator, tmp_path):
    """--fitness-texts: each point's pruning is scored on the evaluation text and on the other, whose fitness
    and validation windows are that text's first and next ones (as an evaluator reading it alone cuts them),
    and the fitness is the geometric mean of all four; the store keeps such a search apart."""
    legal = tmp_path / "legal.txt"
    legal.write_text(" ".join(f"Clause {i}: the licensee shall keep every notice intact, the {i * 7} copies." for i in range(300)))
    text = f"text:{legal}"
    both = FitnessEvaluator(dataclasses.replace(evaluator.setup, texts=(text,), validation_tokens=64))
    alone = FitnessEvaluator(dataclasses.replace(evaluator.setup, calib="pydoc", eval=text, validation_tokens=64))
    ours = FitnessEvaluator(dataclasses.replace(evaluator.setup, validation_tokens=64))
    tree = metrics.parse("mul(abs(W), X)")
    for split in ("fitness", "validation"):
        windows = alone.windows[text, split]
        assert torch.equal(both.windows[text, split], windows) and len(windows) == (4 if split == "fitness" else 2)
        other = {}
        for spec, label in zip(ours.specs, ours.setup.points):  # the same pruning, read on the other text
            ours.prune(tree, spec)
            other[f"{label} legal"] = perplexity(ours.host.model, windows, torch.device("cpu"))
            ours.host.restore()
        first = eval(ours.evaluate(str(tree), split=split)["points"])
        result = both.evaluate(str(tree), split=split)
        assert eval(result["points"]) == pytest.approx({**first, **other}, rel=1e-6)
        assert result["fitness"] == pytest.approx(math.prod([*first.values(), *other.values()]) ** 0.25, rel=1e-6)
        assert list(first.values()) != pytest.approx(list(other.values()), rel=1e-4)  # the texts differ
    assert not torch.equal(both.windows[text, "fitness"][:2], both.windows[text, "validation"])
    assert both.setup.context()["texts"] == (text,) and "texts" not in evaluator.setup.context()


def test_a_fitness_against_a_reference_is_its_worst_ratio_to_the_references_perplexities(evaluator, tmp_path):
    """--fitness-against: each perplexity is divided by the reference metric's at the same label, and the
    fitness is the worst ratio over points and texts, on either split (a mean over texts hid a loss on one); the
    reference itself scores 1, a candidate stopped early its worst ratio seen; the store keeps such a search
    apart, and apart from one that took each point's texts by geometric mean."""
    legal = tmp_path / "legal.txt"
    legal.write_text(" ".join(f"Clause {i}: the licensee shall keep every notice intact, the {i * 7} copies." for i in range(300)))
    text, wanda = f"text:{legal}", "mul(abs(W), X)"
    plain = FitnessEvaluator(dataclasses.replace(evaluator.setup, texts=(text,), validation_tokens=64))
    ratio = FitnessEvaluator(dataclasses.replace(plain.setup, against=wanda))
    for split in ("fitness", "validation"):
        reference = eval(plain.evaluate(wanda, split=split)["points"])
        assert ratio.reference[split] == pytest.approx(reference, rel=1e-9)
        points = eval(plain.evaluate("abs(W)", split=split)["points"])
        result = ratio.evaluate("abs(W)", split=split)
        assert eval(result["points"]) == pytest.approx(points, rel=1e-9)  # the points stay perplexities
        ratios = {label: points[label] / reference[label] for label in points}
        assert len(ratios) == 4 and result["fitness"] == pytest.approx(max(ratios.values()), rel=1e-9)
        # the worst pair stands out from the mean of its point's two texts (random weights: by little)
        worst = max(ratios, key=ratios.get)
        point = worst.removesuffix(" legal")
        assert max(ratios.values()) > math.sqrt(ratios[point] * ratios[f"{point} legal"]) * (1 + 1e-7)
        assert ratio.evaluate(wanda, split=split)["fitness"] == pytest.approx(1.0, rel=1e-12)
    stopped = ratio.evaluate("abs(W)", thresholds={"0.5": 1.0})  # stops after the first point's first window
    assert stopped["status"] == "early"
    assert stopped["fitness"] == pytest.approx(eval(stopped["points"])["0.5"] / ratio.reference["fitness"]["0.5"], rel=1e-9)
    assert ratio.setup.context()["against"] == wanda and "against" not in plain.setup.context()
    assert ratio.setup.context()["against_worst"] == "point and text"
    assert "against_worst" not in dataclasses.replace(ratio.setup, texts=()).context()  # one text: as before
    with pytest.raises(InputError, match=r"--fitness-against div\(W, sub\(W, W\)\): "):  # W / 0: no reference
        FitnessEvaluator(dataclasses.replace(evaluator.setup, against="div(W, sub(W, W))"))


def test_G_from_another_text_scores_a_gradient_metric_with_that_texts_gradients(evaluator, tmp_path):
    """--grad-calib: the search's G leaf comes from the named text, the fitness follows it, and the store keeps
    such a search apart from one whose G came from the calibration text."""
    from evolve import config
    from evolve.host import Host
    from evolve.search import fitness_setup

    legal = tmp_path / "legal.txt"
    legal.write_text(" ".join(f"Clause {i}: the licensee shall keep every notice intact." for i in range(200)))
    cfg = config.load(None, {"model.name": evaluator.setup.model, "data.grad_calib": f"text:{legal}"})
    assert fitness_setup(cfg).grad_calib == f"text:{legal}"
    other = FitnessEvaluator(dataclasses.replace(evaluator.setup, grad_calib=f"text:{legal}"))
    by_hand = Host(evaluator.setup.model, calib="pydoc", eval="pydoc", nsamples=4, seqlen=32, grad_calib=f"text:{legal}",
                   log=lambda m: None).statistic("G")
    assert all(torch.equal(other.leaf("G")[k], by_hand[k]) for k in by_hand)
    assert other.evaluate("mul(abs(W), G)")["fitness"] != pytest.approx(evaluator.evaluate("mul(abs(W), G)")["fitness"], rel=1e-4)
    assert other.setup.context()["grad_calib"] == f"text:{legal}" and "grad_calib" not in evaluator.setup.context()


def test_a_metric_that_gives_nan_is_a_bad_candidate(evaluator):
    result = evaluator.evaluate("div(W, sub(W, W))")  # W / 0
    assert (result["fitness"], result["status"]) == (float("inf"), "nan")
    assert "NaN or Inf" in result["error"]
    assert evaluator.evaluate("mul(abs(W), X)")["status"] == "ok"  # the model came back dense


@pytest.mark.parametrize("update", ["lr", "obs"])
def test_an_update_refits_each_kept_weight_on_the_dense_hessian_and_is_scored_after_it(update, evaluator):
    """After the candidate's mask, every linear holds the refit of its kept weights (least squares per row, or
    SparseGPT's sweep with the mask fixed) on a Hessian summed by hooks on the whole dense model, zero where
    the mask drops; the fitness is that model's perplexity."""
    from pruners import masks
    from pruners.reconstruct_math import refit_rows
    from pruners.sparsegpt_math import sparsify

    refit = {"lr": lambda W, drop, H: refit_rows(W, ~drop, H), "obs": lambda W, drop, H: sparsify(W, H, None, fixed=drop)}[update]
    updating = FitnessEvaluator(dataclasses.replace(evaluator.setup, update=update, points=("0.5",)))
    host, spec = updating.host, updating.specs[0]
    sums = summed_inputs(host.model, host.calibration, models.target_linears(host.model), lambda x: x.T @ x)
    model = copy.deepcopy(host.model)
    for name, lin in models.target_linears(model).items():
        W = updating.W[name]
        drop = masks.mask(W.abs() * updating.leaf("X")[name], spec)
        lin.weight.data = refit(W, drop, sums[name] * 2 / len(host.calibration))
        assert (lin.weight[drop] == 0).all() and not torch.equal(lin.weight, W.masked_fill(drop, 0))
    expected = perplexity(model, updating.windows[updating.setup.eval, "fitness"], torch.device("cpu"), batch_size=4)
    assert updating.evaluate("mul(abs(W), X)")["fitness"] == pytest.approx(expected, rel=1e-5)
    plain = eval(evaluator.evaluate("mul(abs(W), X)")["points"])["0.5"]
    assert expected != pytest.approx(plain, rel=1e-4)  # the update changed what is scored (a random model: by 3e-4)
    assert updating.setup.context()["update"] == update and "update" not in evaluator.setup.context()


def test_the_m_and_v_leaves_are_each_input_channels_mean_and_variance_over_calibration_tokens(evaluator):
    """M and V of every target from the walker equal the mean and variance of its inputs gathered by hooks on
    the whole dense model, and a metric reading them is scored with them."""
    model, calibration = evaluator.host.model, evaluator.host.calibration
    linears = models.target_linears(model)
    sums = summed_inputs(model, calibration, linears, lambda x: torch.stack([x.double().sum(0), x.double().pow(2).sum(0)]))
    tokens = calibration.numel()
    M, V = evaluator.leaf("M"), evaluator.leaf("V")
    assert M.keys() == V.keys() == sums.keys()
    for name, (total, squares) in sums.items():
        mean = total / tokens
        assert torch.allclose(M[name].double(), mean.unsqueeze(0), rtol=1e-4, atol=1e-6), name
        assert torch.allclose(V[name].double(), (squares / tokens - mean**2).unsqueeze(0), rtol=1e-4, atol=1e-6), name
        assert (M[name] < 0).any() and (V[name] > 0).all()  # signed means, positive variances
    with_v = eval(evaluator.evaluate("mul(abs(W), sqrt(V))")["points"])
    assert with_v != pytest.approx(eval(evaluator.evaluate("abs(W)")["points"]), rel=1e-4)
