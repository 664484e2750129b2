import pytest
import torch

import pruners
from pruners import masks
from pruners.sparsegpt_math import sparsify
from pruners.spec import Sparsity


def layer(seed=0, rows=12, cols=16, tokens=200):
    gen = torch.Generator().manual_seed(seed)
    X = torch.randn(tokens, cols, generator=gen, dtype=torch.float64)
    X[:, 3] *= 5  # uneven channels, as real activations are
    W = torch.randn(rows, cols, generator=gen, dtype=torch.float64)
    return W, X


def reference(W, H, spec, blocksize, percdamp=0.01):
    """Column by column: prune, then update only the later columns with the explicit inverse Hessian of
    the columns not yet processed. The mask of each block (or M columns) is chosen when it is reached,
    from w^2 / [inverse of the remaining Hessian]_jj, as SparseGPT chooses it."""
    W = W.clone()
    H = H + percdamp * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    cols = W.shape[1]
    d = torch.tensor([torch.linalg.inv(H[j:, j:])[0, 0] for j in range(cols)], dtype=W.dtype)
    mask = torch.zeros_like(W, dtype=torch.bool)
    for i in range(cols):
        if spec.nm is None and i % blocksize == 0:
            block = slice(i, min(i + blocksize, cols))
            saliency = W[:, block].pow(2) / d[block]
            mask[:, block] = masks.lowest(saliency.reshape(1, -1), int(saliency.numel() * spec.ratio)).reshape(saliency.shape)
        if spec.nm is not None and i % spec.nm[1] == 0:
            n, m = spec.nm
            mask[:, i : i + m] = masks.lowest(W[:, i : i + m].pow(2) / d[i : i + m], m - n)
        inverse = torch.linalg.inv(H[i:, i:])  # the columns not yet processed
        q = W[:, i].masked_fill(mask[:, i], 0)
        err = (W[:, i] - q) / inverse[0, 0]
        W[:, i:] -= err.unsqueeze(1) * inverse[0].unsqueeze(0)
        W[:, i] = q
    return W


@pytest.mark.parametrize("spec, blocksize", [
    (Sparsity.parse("unstructured", 0.5), 128),
    (Sparsity.parse("unstructured", 0.5), 8),
    (Sparsity.parse("unstructured", 0.3), 4),
    (Sparsity.parse("2:4"), 128),
    (Sparsity.parse("4:8"), 8),
    (Sparsity.parse("2:4"), 6),  # not a multiple of M: groups straddled blocks and some kept one weight
    (Sparsity.parse("4:8"), 3),
])
def test_sparsegpt_equals_the_plain_column_by_column_reference(spec, blocksize):
    W, X = layer()
    H = 2 * X.T @ X / len(X)
    got = sparsify(W, H.float(), spec, blocksize).double()
    want = reference(W, H, spec, blocksize)
    assert torch.equal(got == 0, want == 0)
    assert torch.allclose(got, want, rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("blocksize", [128, 6, 1])
def test_nm_pattern_holds_exactly(blocksize):
    W, X = layer(1, rows=32, cols=64)
    got = sparsify(W, (X.T @ X).float(), Sparsity.parse("2:4"), blocksize)
    assert ((got.reshape(32, -1, 4) != 0).sum(-1) == 2).all()


def error(W0, W, X):
    return (X @ (W0 - W).T).pow(2).sum().item()


@pytest.mark.parametrize("spec", [Sparsity.parse("unstructured", 0.5), Sparsity.parse("2:4")])
def test_a_fixed_mask_gets_sparsegpts_own_sweep(spec):
    """Given the mask SparseGPT chose, the fixed-mask sweep is SparseGPT to the bit; given another mask it
    prunes exactly that one and still updates what it keeps."""
    W, X = layer(3)
    H = (X.T @ X).float()
    chosen = sparsify(W, H, spec)
    assert torch.equal(sparsify(W, H, None, fixed=chosen == 0), chosen)
    other = masks.mask(W.abs() * X.norm(dim=0), spec)  # Wanda's mask
    updated = sparsify(W, H, None, fixed=other)
    assert torch.equal(updated == 0, other)
    assert not torch.allclose(updated, W.float().masked_fill(other, 0))


def test_reconstruction_error_ranks_between_magnitude_wanda_and_least_squares():
    W0, X = layer(2, rows=24, cols=32, tokens=400)
    W0, X = W0.float(), X.float()
    H = 2 * X.T @ X / len(X)
    spec = Sparsity.parse("unstructured", 0.5)
    sgpt = sparsify(W0, H, spec, blocksize=128, percdamp=1e-6)
    wanda = W0.masked_fill(masks.mask(W0.abs() * X.norm(dim=0, keepdim=True), spec), 0)
    magnitude = W0.masked_fill(masks.mask(W0.abs(), spec), 0)
    # The best weights on SparseGPT's own support: least squares per row over the kept inputs.
    optimum = torch.zeros_like(W0)
    for r in range(W0.shape[0]):
        keep = sgpt[r] != 0
        solution = torch.linalg.lstsq(X[:, keep].double(), (X @ W0[r]).double().unsqueeze(1)).solution
        optimum[r, keep] = solution.squeeze(1).float()
    e = {name: error(W0, w, X) for name, w in
         [("sparsegpt", sgpt), ("wanda", wanda), ("magnitude", magnitude), ("optimum", optimum)]}
    assert e["optimum"] < e["sparsegpt"] < e["wanda"] < e["magnitude"], e


def test_dead_inputs_are_pruned_and_cholesky_failure_raises_damping(capsys, monkeypatch):
    monkeypatch.setattr("pruners.sparsegpt_math._warned", set())  # it warns once per process: an earlier test may have
    W, X = layer(3)
    X[:, 5] = 0  # a channel that never fires
    H = (X.T @ X).float()
    got = sparsify(W, H, Sparsity.parse("unstructured", 0.5))
    assert (got[:, 5] == 0).all()
    u = torch.nn.functional.normalize(torch.randn(16, generator=torch.Generator().manual_seed(0)), dim=0)
    H = 16 * torch.outer(u, u) - 0.05 * torch.eye(16)  # eigenvalues -0.05: 1% damping is not enough, 10% is
    sparsify(W, H, Sparsity.parse("unstructured", 0.5))
    assert "damping raised" in capsys.readouterr().err


def test_sparsegpt_prunes_a_tiny_model_through_the_walker(tiny):
    calibration = torch.randint(0, 96, (4, 16))
    pruners.method("sparsegpt").prune(tiny, calibration, Sparsity.parse("2:4"), torch.device("cpu"))
    from pruners import models

    for lin in models.target_linears(tiny).values():
        assert ((lin.weight.reshape(lin.weight.shape[0], -1, 4) != 0).sum(-1) <= 2).all()


def test_obs_diagonal_is_the_inverse_of_each_remaining_hessian_at_its_corner():
    """D_j = [(H_damped[j:, j:])^-1]_00, the denominator the column-by-column reference computes its own way."""
    from pruners.stats import obs_diagonal

    W, X = layer()
    H = 2 * X.T @ X
    damped = H + 0.01 * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    want = torch.tensor([[torch.linalg.inv(damped[j:, j:])[0, 0] for j in range(H.shape[0])]], dtype=H.dtype)
    assert torch.allclose(obs_diagonal(H), want, rtol=1e-9)


def test_sparsegpts_saliency_in_the_language_gives_its_first_block_mask():
    """divcol(sqr(W), D) compared over the layer is the mask SparseGPT chooses for a block of columns before
    it updates them; on a probe layer of one block that is SparseGPT's whole mask. Per row it is not."""
    from metrics import parse
    from metrics.compile import compile_metric
    from pruners.stats import obs_diagonal

    W, X = layer(seed=1, rows=24, cols=64)
    W, H = W.float(), (2 * X.T @ X).float()
    theirs = sparsify(W, H, Sparsity.parse("unstructured", 0.5)) == 0
    score = compile_metric(parse("divcol(sqr(W), D)"))(W=W, D=obs_diagonal(H))
    assert torch.equal(masks.mask(score, Sparsity.parse("unstructured", 0.5, "layer")), theirs)
    assert not torch.equal(masks.mask(score, Sparsity.parse("unstructured", 0.5, "row")), theirs)


def test_a_metric_with_d_prunes_the_first_block_as_sparsegpt_does(tiny):
    """Through the walker: the metric gathers H for D, and block 0 (same inputs for both, every linear
    narrower than SparseGPT's 128-column block) loses exactly the weights SparseGPT takes there."""
    import copy

    from pruners import models

    calibration = torch.randint(0, 96, (4, 16))
    theirs, ours = copy.deepcopy(tiny), copy.deepcopy(tiny)
    pruners.method("sparsegpt").prune(theirs, calibration, Sparsity.parse("unstructured", 0.5), torch.device("cpu"))
    pruners.method("metric", metric="divcol(sqr(W), D)").prune(
        ours, calibration, Sparsity.parse("unstructured", 0.5, "layer"), torch.device("cpu"))
    for (name, a), b in zip(models.target_linears(theirs).items(), models.target_linears(ours).values()):
        if name.startswith("0."):
            assert torch.equal(a.weight == 0, b.weight == 0), name
