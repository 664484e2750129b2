"""OWL's per-block sparsity against numbers worked by hand and against hooks on the whole dense model."""
import pytest
import torch

import metrics
import pruners
from pruners import models
from pruners.allocation import OWL_LAMBDA, block_sparsities, outlier_share, owl
from pruners.errors import InputError
from pruners.spec import Sparsity

from conftest import summed_inputs, tiny_llama


def test_outlier_share_counts_scores_above_m_times_the_blocks_mean():
    # mean of all eight scores is 2.5; above 5 x 2.5 = 12.5: only 15.0
    scores = [torch.tensor([[1.0, 0.5], [0.25, 15.0]]), torch.tensor([0.5, 1.0, 0.75, 1.0])]
    assert outlier_share(scores, m=5) == 1 / 8
    assert outlier_share(scores, m=1) == 1 / 8  # 15 alone exceeds the mean
    assert outlier_share(scores, m=0.3) == 4 / 8  # 1.0, 15.0, 1.0, 1.0 exceed 0.75 (0.75 itself does not)


def test_owl_spreads_the_target_by_outliers_and_keeps_its_mean():
    # shares 0, 0.5, 1 -> densities 0, lam, 2 lam; mean lam; sparsities s + lam, s, s - lam
    got = owl([0.01, 0.02, 0.03], sparsity=0.6, lam=0.08)
    assert got == pytest.approx([0.68, 0.6, 0.52], abs=1e-12)
    shares = [0.3, 0.1, 0.7, 0.2, 0.25]
    got = owl(shares, 0.5)
    assert sum(got) / len(got) == pytest.approx(0.5, abs=1e-12)
    assert max(got) - min(got) == pytest.approx(2 * OWL_LAMBDA, abs=1e-12)
    assert sorted(range(5), key=lambda i: got[i]) == sorted(range(5), key=lambda i: -shares[i])  # more outliers, sparser less
    assert owl([0.2, 0.2], 0.5) == [0.5, 0.5]


def naive_shares(model, calibration) -> list[float]:
    """Wanda's score of every target from hooks on the whole dense model, grouped by block."""
    linears = models.target_linears(model)
    sums = summed_inputs(model, calibration, linears, lambda x: x.pow(2).sum(dim=0))
    blocks = len(models.blocks(model))
    scores = [[linears[n].weight.abs() * (sums[n] / len(calibration)).sqrt() for n in linears if n.split(".")[0] == str(b)]
              for b in range(blocks)]
    return [outlier_share(s) for s in scores]


def test_wanda_with_owl_prunes_each_block_at_its_share_and_the_model_at_the_target():
    model, calibration = tiny_llama(layers=4), torch.randint(0, 96, (4, 16))
    spec = Sparsity.parse("unstructured", 0.6, allocation="owl")
    ratios = block_sparsities(model, calibration, torch.device("cpu"), spec)
    assert ratios == pytest.approx(owl(naive_shares(model, calibration), 0.6), abs=1e-9)
    assert len(set(ratios)) > 1 and sum(ratios) / 4 == pytest.approx(0.6, abs=1e-12)
    pruners.method("wanda").prune(model, calibration, spec, torch.device("cpu"))
    total = zeros = 0
    for name, lin in models.target_linears(model).items():
        rows, cols = lin.weight.shape
        # each row loses floor(cols x its block's sparsity): within one weight per row of the block's share
        assert (lin.weight == 0).sum().item() == rows * int(cols * ratios[int(name.split(".")[0])]), name
        total, zeros = total + rows * cols, zeros + (lin.weight == 0).sum().item()
    assert abs(zeros / total - 0.6) < sum(lin.weight.shape[0] for lin in models.target_linears(model).values()) / total


def test_bad_allocations_are_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match="unknown allocation 'wide'"):
        Sparsity.parse("unstructured", 0.5, allocation="wide")
    with pytest.raises(InputError, match="not pattern 2:4"):
        Sparsity.parse("2:4", allocation="owl")
    with pytest.raises(InputError, match="does not prune block by block"):
        pruners.method("surgeon").check(Sparsity.parse("unstructured", 0.5, allocation="owl"))
    assert Sparsity.parse("unstructured", 0.5, allocation="owl").point() == "50% owl"
    wide = tmp_path / "wide.json"
    metrics.save(str(wide), metrics.parse("mul(abs(W), X)"), allocation="wide")
    with pytest.raises(InputError, match="unknown allocation 'wide'"):
        pruners.method(f"metric:{wide}").check(Sparsity.parse("unstructured", 0.5))
    # a spec naming no allocation leaves it to the method: uniform for every method but a metric file's search's
    assert pruners.method("wanda").settle(Sparsity.parse("unstructured", 0.5)) == Sparsity.parse("unstructured", 0.5, allocation="uniform")
    assert pruners.method("wanda").settle(Sparsity.parse("2:4")) == Sparsity.parse("2:4", allocation="uniform")
