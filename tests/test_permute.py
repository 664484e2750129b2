import itertools
import json

import pytest
import torch
from safetensors.torch import load_file

import pruners
from pruners import masks, models
from pruners.errors import InputError
from pruners.permute import assign, channel_order, kept, reallocate
from pruners.spec import Sparsity

PERMUTED = Sparsity.parse("2:4", permute=True)


def is_nm(pruned: torch.Tensor, n: int, m: int) -> bool:
    """Every group of M consecutive columns of every row prunes exactly M - N."""
    return bool(((pruned.reshape(-1, m).sum(dim=1)) == m - n).all())


def test_reallocation_gives_every_group_one_channel_of_each_quantile():
    score = torch.arange(8.0).repeat(3, 1)  # channel c sums to 3c: ascending already
    # quantiles [0,1] [2,3] [4,5] [6,7] fill positions 0..3 of the two groups, the odd ones reversed
    assert reallocate(score, 4).tolist() == [0, 3, 4, 7, 1, 2, 5, 6]


def test_assignment_is_the_best_of_all_assignments_of_its_position():
    torch.manual_seed(0)
    score = torch.rand(5, 12) ** 3  # three groups of four
    order = torch.randperm(12)
    for position in range(4):
        best = max(kept(score, 2, 4, _placed(order, position, p)) for p in itertools.permutations(range(3)))
        assert kept(score, 2, 4, assign(score, order, 2, 4, position)) == pytest.approx(best, rel=1e-6)


def _placed(order, position, chosen):
    moved = order.clone()
    moved[position::4] = order[position::4][list(chosen)]
    return moved


def test_permutation_separates_important_channels_that_shared_a_group():
    # channels 0-3 carry the large scores and all sit in group 0: unpermuted, each row keeps two of them
    score = torch.tensor([[9.0, 8, 7, 6, 1, 0.5, 0.2, 0.1],
                          [6.0, 9, 8, 7, 0.1, 1, 0.5, 0.2]])
    pruned, order = masks.choose(score, PERMUTED)
    assert pruned.int().tolist() == [[0, 0, 0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1, 1, 1]]
    assert is_nm(pruned[:, order], 2, 4)
    assert not is_nm(pruned, 2, 4)  # in the stored layout the groups are not 2:4: the order is what makes them


def test_identity_stays_when_no_order_keeps_more():
    # every group already holds one large pair per row: nothing can keep more
    score = torch.tensor([[9.0, 8, 1, 0, 9, 8, 1, 0], [1.0, 0, 9, 8, 1, 0, 9, 8]])
    assert channel_order(score, 2, 4).tolist() == list(range(8))
    assert masks.choose(score, PERMUTED)[0].equal(masks.mask(score, Sparsity.parse("2:4")))


def test_permuted_mask_keeps_at_least_the_identitys_score_on_a_probe_layer():
    torch.manual_seed(1)
    score = torch.randn(64, 128).abs() * torch.rand(128) ** 4  # Wanda-like: a few strong input channels
    for n, m in ((2, 4), (4, 8)):
        pruned, order = masks.choose(score, Sparsity.parse(f"{n}:{m}", permute=True))
        plain = masks.mask(score, Sparsity.parse(f"{n}:{m}"))
        assert sorted(order.tolist()) == list(range(128))
        assert is_nm(pruned[:, order], n, m)
        assert score[~pruned].sum() > score[~plain].sum() * 1.01  # at least 1% more score kept here


def test_permute_is_for_nm_and_score_methods():
    with pytest.raises(InputError, match="N:M"):
        Sparsity.parse("unstructured", 0.5, permute=True)
    assert PERMUTED.point() == "2:4 permuted" and Sparsity.parse("2:4").point() == "2:4"
    with pytest.raises(InputError, match="--permute"):
        pruners.method("sparsegpt").check(PERMUTED)
    pruners.method("wanda").check(PERMUTED)


def test_fitness_setup_passes_permute_to_nm_points_and_names_it_only_when_on():
    from evolve.fitness import FitnessSetup

    setup = FitnessSetup("m", "auto", "cpu", "pydoc", "pydoc", 4, 32, 0, 8, ("0.5", "2:4"), 512, 1, False)
    on = FitnessSetup(**{**setup.__dict__, "permute": True})
    assert [s.permute for s in on.specs()] == [False, True]
    assert "permute" not in setup.context() and on.context()["permute"] is True


def test_permuted_model_saves_reloads_and_its_orders_make_every_linear_2_4(tiny_dir, tmp_path, capsys):
    from evolve.cli import main

    saved = tmp_path / "pruned"
    data = ["--nsamples", "4", "--seqlen", "32", "--eval-tokens", "512"]
    assert main(["baseline", "--model", tiny_dir, "--method", "wanda", "--pattern", "2:4", "--permute",
                 "--save", str(saved), *data]) == 0
    assert json.loads((saved / "report.json").read_text())["result"]["point"] == "2:4 permuted"
    orders = load_file(saved / "channel_orders.safetensors")
    model, _ = models.load(str(saved))
    linears = models.target_linears(model)
    assert orders.keys() == linears.keys()
    permuted = 0
    for name, linear in linears.items():
        pruned = linear.weight == 0
        assert is_nm(pruned[:, orders[name]], 2, 4)
        permuted += not torch.equal(orders[name], torch.arange(pruned.shape[1]))
        # the stored layout computes what the gathered 2:4 layout computes: inputs taken in the same order
        x = torch.randn(3, pruned.shape[1])
        gathered = torch.nn.functional.linear(x[:, orders[name]], linear.weight[:, orders[name]])
        assert torch.allclose(gathered, linear(x), atol=1e-6)
    assert permuted > len(linears) // 2  # a random model's layers gain from reordering


def test_a_per_row_factor_changes_a_permuted_mask():
    """Why a permuted search keys per-row factors apart: the channel order sums scores over rows."""
    torch.manual_seed(2)
    score = torch.rand(6, 16) ** 3
    rows = torch.tensor([[100.0], [1], [1], [1], [1], [1]])  # one row weighs far more in the column sums
    assert masks.mask(score * rows, Sparsity.parse("2:4")).equal(masks.mask(score, Sparsity.parse("2:4")))
    assert not masks.mask(score * rows, PERMUTED).equal(masks.mask(score, PERMUTED))


@pytest.mark.parametrize("args, message", [
    (["baseline", "--pattern", "unstructured", "--permute"], "not for pattern unstructured"),
    (["baseline", "--method", "sparsegpt", "--pattern", "2:4", "--permute"], "--permute is for the score methods"),
    (["compare", "--methods", "wanda", "--pattern", "unstructured", "--permute"], "add one to --pattern"),
    (["search", "--pattern", "unstructured", "--permute"], "add one to --pattern"),
    (["search", "--update", "xx"], "search.update"),
])
def test_bad_permute_and_update_flags_are_one_line_before_any_model_loads(args, message, capsys):
    from evolve.cli import main

    assert main([*args, "--model", "no-such-model"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
