import pytest
import torch

import pruners
from pruners import masks
from pruners.errors import InputError
from pruners.spec import Sparsity

W = torch.tensor(
    [
        [0.1, -0.9, 0.3, -0.2, 0.5, 0.05, -0.7, 0.4],
        [2.0, 0.01, -0.02, 3.0, -1.0, 0.6, 0.02, -0.03],
    ]
)
X = torch.tensor([[1.0, 0.1, 4.0, 1.0, 0.5, 10.0, 1.0, 1.0]])


def prune(method: str, spec: Sparsity, stats=None) -> torch.Tensor:
    weight = W.clone()
    pruners.method(method).prune_linear("0.l", weight, stats or {}, spec)
    return (weight == 0).int()


def test_magnitude_one_threshold_per_layer():
    # |W| sorted over the whole layer: the 8 lowest are 0.01 .02 .02 .03 .05 .1 .2 .3
    assert prune("magnitude", Sparsity.parse("unstructured", 0.5)).tolist() == [
        [1, 0, 1, 1, 0, 1, 0, 0],
        [0, 1, 1, 0, 0, 0, 1, 1],
    ]


def test_magnitude_per_row():
    assert prune("magnitude", Sparsity.parse("unstructured", 0.5, "row")).tolist() == [
        [1, 0, 1, 1, 0, 1, 0, 0],
        [0, 1, 1, 0, 0, 0, 1, 1],
    ]
    assert prune("magnitude", Sparsity.parse("unstructured", 0.25, "row")).tolist() == [
        [1, 0, 0, 0, 0, 1, 0, 0],
        [0, 1, 1, 0, 0, 0, 0, 0],  # 0.02 at index 2 and 6 tie: the lower index goes
    ]


def test_magnitude_per_input_column():
    # each column's lower |W| of its two rows goes: .1|2, .9|.01, .3|.02, .2|3, .5|1, .05|.6, .7|.02, .4|.03
    assert prune("magnitude", Sparsity.parse("unstructured", 0.5, "column")).tolist() == [
        [1, 0, 0, 1, 1, 1, 0, 0],
        [0, 1, 1, 0, 0, 0, 1, 1],
    ]


def test_wanda_unstructured():
    # |W| * X: row 0 = .1 .09 1.2 .2 .25 .5 .7 .4 ; row 1 = 2 .001 .08 3 .5 6 .02 .03
    assert prune("wanda", Sparsity.parse("unstructured", 0.5), {"X": X}).tolist() == [
        [1, 1, 0, 1, 1, 0, 0, 0],
        [0, 1, 1, 0, 0, 0, 1, 1],
    ]


def test_wanda_2_4_and_magnitude_2_4():
    spec = Sparsity.parse("2:4")
    assert spec.ratio == 0.5
    assert prune("wanda", spec, {"X": X}).tolist() == [
        [1, 1, 0, 0, 1, 0, 0, 1],
        [0, 1, 1, 0, 0, 0, 1, 1],
    ]
    assert prune("magnitude", spec).tolist() == [
        [1, 0, 0, 1, 0, 1, 0, 1],
        [0, 1, 1, 0, 0, 0, 1, 1],
    ]


def test_ties_break_by_index_like_a_stable_sort():
    score = torch.tensor([[1.0, 0.5, 0.5, 0.5, 2.0, 0.5]])
    assert masks.lowest(score, 2).int().tolist() == [[0, 1, 1, 0, 0, 0]]
    assert masks.lowest(score, 4).int().tolist() == [[0, 1, 1, 1, 0, 1]]


@pytest.mark.parametrize("k", [0, 1, 37, 200, 255, 256])
def test_lowest_equals_stable_sort_on_a_grid_with_many_ties(k):
    torch.manual_seed(k)
    score = torch.randint(0, 16, (64, 256)).float()  # 16 levels: ties everywhere, like Q4 weights
    order = torch.sort(score, dim=1, stable=True).indices[:, :k]
    expected = torch.zeros_like(score, dtype=torch.bool).scatter_(1, order, True)
    assert torch.equal(masks.lowest(score, k), expected)


def test_nm_holds_the_pattern_exactly():
    torch.manual_seed(0)
    score = torch.randint(0, 4, (32, 64)).float()
    for pattern in ("2:4", "4:8", "1:4"):
        n, m = Sparsity.parse(pattern).nm
        kept = (~masks.mask(score, Sparsity.parse(pattern))).reshape(32, -1, m).sum(-1)
        assert (kept == n).all()


def test_non_finite_scores_are_refused():
    with pytest.raises(FloatingPointError):
        masks.mask(torch.tensor([[1.0, float("nan")]]), Sparsity.parse("unstructured", 0.5))


@pytest.mark.parametrize(
    "pattern, ratio, group, message",
    [
        ("unstructured", 1.0, None, "strictly between"),
        ("unstructured", 0.0, None, "strictly between"),
        ("4:4", None, None, "0 < N < M"),
        ("5:4", None, None, "0 < N < M"),
        ("2:4", 0.7, None, "fixes sparsity at 0.5"),
        ("2-4", None, None, "unknown pattern"),
        ("unstructured", 0.5, "block", "unknown comparison group"),
    ],
)
def test_bad_specs(pattern, ratio, group, message):
    with pytest.raises(InputError, match=message):
        Sparsity.parse(pattern, ratio, group)


def test_nm_needs_a_multiple_of_m():
    with pytest.raises(InputError, match="multiple of 4"):
        masks.mask(torch.ones(2, 6), Sparsity.parse("2:4"))


@pytest.mark.parametrize(
    "pattern, ratio, group, blocks, message",
    [
        ("blocks", None, None, None, "go together"),
        ("unstructured", 0.5, None, 4, "go together"),
        ("blocks", None, None, 0, "at least 1"),
        ("blocks", 0.5, None, 2, "--sparsity does not apply"),
        ("channels", 1.0, None, None, "strictly between"),
        ("2:4", None, "row", None, "unstructured sparsity only"),
    ],
)
def test_bad_structure_specs(pattern, ratio, group, blocks, message):
    with pytest.raises(InputError, match=message):
        Sparsity.parse(pattern, ratio, group, blocks)


def test_structure_points_and_what_methods_prune():
    import pruners

    assert Sparsity.parse("blocks", blocks=4).point() == "4 blocks"
    assert Sparsity.parse("channels", 0.2).point() == "channels 20%"
    assert Sparsity.parse("4:8").kind() == "N:M"
    pruners.method("surgeon").check(Sparsity.parse("row-column", 0.3))
    pruners.method("dense").check(Sparsity.parse("blocks", blocks=2))
    with pytest.raises(InputError, match="method wanda prunes unstructured, N:M; not row-column"):
        pruners.method("wanda").check(Sparsity.parse("row-column", 0.3))
    with pytest.raises(InputError, match="removes structures"):
        masks.mask(torch.ones(2, 4), Sparsity.parse("channels", 0.5))
