import pytest
import torch

import pruners
from pruners import models
from pruners.spec import Sparsity
from pruners.surgeon_math import (
    column_costs, element_costs, remove_columns, remove_elements, remove_rows, row_costs,
)


def kronecker_layer(seed=0, out=4, inn=5):
    gen = torch.Generator().manual_seed(seed)
    W = torch.randn(out, inn, generator=gen, dtype=torch.float64)
    a = torch.randn(inn, inn, generator=gen, dtype=torch.float64)
    g = torch.randn(out, out, generator=gen, dtype=torch.float64)
    A = a @ a.T + torch.eye(inn, dtype=torch.float64)
    G = g @ g.T + torch.eye(out, dtype=torch.float64)
    return W, G, A


def brute_force(W, G, A, Q):
    """OBS with the full Fisher kron(G, A) over vec(W) (row major): (cost, updated W)."""
    F = torch.kron(G, A)
    Finv = torch.linalg.inv(F)
    theta = W.flatten()
    q = torch.tensor(Q)
    solve = torch.linalg.solve(Finv[q][:, q], theta[q])
    cost = 0.5 * theta[q] @ solve
    return cost.item(), (theta - Finv[:, q] @ solve).reshape(W.shape)


def test_row_removal_is_exact_obs_under_the_kronecker_fisher():
    W, G, A = kronecker_layer()
    Ginv = torch.linalg.inv(G)
    for rows in ([1], [0, 2]):
        Q = [r * 5 + j for r in rows for j in range(5)]
        cost, want = brute_force(W, G, A, Q)
        got = remove_rows(W.clone(), Ginv, torch.tensor(rows))
        assert torch.allclose(got, want, atol=1e-9)
        if len(rows) == 1:
            assert row_costs(W, Ginv, A)[rows[0]].item() == pytest.approx(cost)


def test_column_removal_is_exact_obs_under_the_kronecker_fisher():
    W, G, A = kronecker_layer(1)
    Ainv = torch.linalg.inv(A)
    for cols in ([3], [0, 4]):
        Q = [r * 5 + c for r in range(4) for c in cols]
        cost, want = brute_force(W, G, A, Q)
        assert torch.allclose(remove_columns(W.clone(), Ainv, torch.tensor(cols)), want, atol=1e-9)
        if len(cols) == 1:
            assert column_costs(W, G, Ainv)[cols[0]].item() == pytest.approx(cost)


def test_weights_removed_within_one_row_are_exact_obs():
    W, G, A = kronecker_layer(2)
    Ginv, Ainv = torch.linalg.inv(G), torch.linalg.inv(A)
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[2, [0, 3, 4]] = True
    _, want = brute_force(W, G, A, [2 * 5 + 0, 2 * 5 + 3, 2 * 5 + 4])
    assert torch.allclose(remove_elements(W, Ginv, Ainv, mask).double(), want, atol=1e-6)
    single, _ = brute_force(W, G, A, [1 * 5 + 2])
    assert element_costs(W, Ginv, Ainv)[1, 2].item() == pytest.approx(single)


def test_surgeon_nm_holds_the_pattern(tiny):
    calibration = torch.randint(0, 96, (3, 16))
    pruners.method("surgeon", curvature="kfac", shots=2).prune(tiny, calibration, Sparsity.parse("2:4"), torch.device("cpu"))
    for lin in models.target_linears(tiny).values():
        assert ((lin.weight.reshape(lin.weight.shape[0], -1, 4) != 0).sum(-1) == 2).all()  # exactly: not a zeroed layer


def zero_share(model):
    weights = [lin.weight for lin in models.target_linears(model).values()]
    return sum((w == 0).sum().item() for w in weights), sum(w.numel() for w in weights)


@pytest.mark.parametrize("curvature", ["identity", "activations", "kfac"])
def test_global_threshold_reaches_the_target_within_one_structure(tiny, curvature):
    calibration = torch.randint(0, 96, (3, 16))
    pruners.method("surgeon", curvature=curvature, shots=3).prune(
        tiny, calibration, Sparsity.parse("row-column", 0.3), torch.device("cpu"))
    zeros, total = zero_share(tiny)
    biggest = max(max(lin.weight.shape) for lin in models.target_linears(tiny).values())
    assert abs(zeros - 0.3 * total) <= biggest
    # zeros come in whole rows and columns
    for lin in models.target_linears(tiny).values():
        z = lin.weight == 0
        rows, cols = z.all(dim=1), z.all(dim=0)
        assert torch.equal(z, rows.unsqueeze(1) | cols.unsqueeze(0))


def test_unstructured_global_threshold_is_exact_and_uneven_across_layers(tiny):
    calibration = torch.randint(0, 96, (3, 16))
    pruners.method("surgeon", curvature="kfac", shots=2).prune(tiny, calibration, Sparsity.parse("unstructured", 0.5), torch.device("cpu"))
    zeros, total = zero_share(tiny)
    assert zeros == int(0.5 * total)
    shares = [(lin.weight == 0).float().mean().item() for lin in models.target_linears(tiny).values()]
    assert max(shares) - min(shares) > 0.05  # sparsity went where the loss allows it, not 50% everywhere


def test_removals_in_several_rows_are_exact_obs_when_rows_are_uncorrelated():
    W, _, A = kronecker_layer(4)
    G = torch.eye(4, dtype=torch.float64)  # curvature "activations": rows do not interact
    mask = torch.zeros(4, 5, dtype=torch.bool)
    mask[0, [1, 2]] = True
    mask[2, [0, 3, 4]] = True
    mask[3, [4]] = True
    Q = [r * 5 + c for r, c in torch.nonzero(mask).tolist()]
    _, want = brute_force(W, G, A, Q)
    got = remove_elements(W, torch.linalg.inv(G), torch.linalg.inv(A), mask, budget=1)
    assert torch.allclose(got, want, atol=1e-9)


def test_one_global_selection_by_curvature_and_its_updates_on_a_probe():
    """Two hand-set layers. Removal costs w^2 / (2 Ginv_ii Ainv_jj): a = [[.5, .2], [4.5, .8]],
    b = [[.03125, .5625, 3.125]]. At 60% of the 7 weights the four cheapest anywhere go: b's first two
    and a's first row (magnitude would take 0.5, 1, 1.5, 2; 60% per layer would take only three)."""
    from pruners.surgeon import Surgeon

    a, b = torch.nn.Linear(2, 2, bias=False), torch.nn.Linear(3, 1, bias=False)
    a.weight.data = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    b.weight.data = torch.tensor([[0.5, -1.5, 2.5]])
    Ab = torch.tensor([[2.0, 0.5, 0.0], [0.5, 1.0, 0.2], [0.0, 0.2, 0.5]], dtype=torch.float64)  # b's inputs correlate
    inv = {"a": (torch.eye(2), torch.diag(torch.tensor([1.0, 10.0]))), "b": (torch.tensor([[2.0]]), Ab.float())}
    Surgeon()._elements({"a": a, "b": b}, inv, Sparsity.parse("unstructured", 0.6), 0.6)
    assert torch.equal(a.weight, torch.tensor([[0.0, 0.0], [3.0, 4.0]]))  # diagonal curvature: the rest unchanged
    W, G = torch.tensor([[0.5, -1.5, 2.5]], dtype=torch.float64), torch.tensor([[0.5]], dtype=torch.float64)
    _, want = brute_force(W, G, torch.linalg.inv(Ab), [0, 1])
    assert b.weight[0, :2].tolist() == [0.0, 0.0]
    assert b.weight[0, 2].item() == pytest.approx(want[0, 2].item(), rel=1e-5)
    assert b.weight[0, 2].item() != pytest.approx(2.5, rel=1e-3)  # the kept weight was updated
