import torch

import gradients
from pruners import models

from conftest import tiny_llama


def brute_force_G(model, calibration):
    """Per-sample gradients with torch.autograd.grad, stacked, then the L2 norm over the sample axis."""
    targets = models.target_linears(model)
    weights = [lin.weight for lin in targets.values()]
    per_sample = []
    for sample in calibration:
        ids = sample.unsqueeze(0)
        loss = model(input_ids=ids, labels=ids).loss
        per_sample.append(torch.autograd.grad(loss, weights))
    return {name: torch.stack([g[i] for g in per_sample]).norm(dim=0) for i, name in enumerate(targets)}


def brute_force_F(model, calibration):
    """Each token's share of each weight's gradient, taken directly: every linear multiplies token t by its own
    copy W + D_t of the weights (D_t = 0), so dL/dD_t is token t's share; F is their norm over samples and
    tokens."""
    targets = models.target_linears(model)
    squares = {name: torch.zeros_like(lin.weight) for name, lin in targets.items()}
    for sample in calibration:
        copies = {name: torch.zeros(sample.numel(), *lin.weight.shape, requires_grad=True) for name, lin in targets.items()}
        for name, lin in targets.items():  # (1, tokens, in) -> (1, tokens, out), token t through W + D_t
            lin.forward = lambda x, lin=lin, D=copies[name]: torch.einsum("bti,toi->bto", x, lin.weight + D)
        ids = sample.unsqueeze(0)
        shares = torch.autograd.grad(model(input_ids=ids, labels=ids).loss, list(copies.values()))
        for lin in targets.values():
            del lin.forward  # the class's own forward again
        for name, share in zip(copies, shares):
            squares[name] += share.pow(2).sum(dim=0)
    return {name: s.sqrt() for name, s in squares.items()}


def test_G_and_F_equal_their_brute_force_norms():
    model = tiny_llama(5)
    calibration = torch.randint(0, 96, (5, 12))
    got = gradients.compute(model, calibration, torch.device("cpu"))
    for leaf, want in (("G", brute_force_G(model, calibration)), ("F", brute_force_F(model, calibration))):
        assert got[leaf].keys() == want.keys()
        for name in want:
            assert torch.allclose(got[leaf][name], want[name], rtol=1e-4, atol=1e-7), (leaf, name)
    assert not torch.allclose(got["G"]["0.mlp.up_proj"], got["F"]["0.mlp.up_proj"], rtol=0.1)
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_G_and_F_are_cached_under_model_and_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLVE_CACHE", str(tmp_path))
    model = tiny_llama(6)
    calibration = torch.randint(0, 96, (3, 8))
    first, path, seconds = gradients.load_or_compute(model, "tiny", calibration, torch.device("cpu"), log=lambda _: None)
    assert path.is_file() and path.is_relative_to(tmp_path) and seconds > 0
    again, path2, seconds2 = gradients.load_or_compute(model, "tiny", calibration, torch.device("cpu"))
    assert path2 == path and seconds2 == 0.0
    assert all(torch.equal(first[k], again[k]) for k in first)
    F, path_F, seconds_F = gradients.load_or_compute(model, "tiny", calibration, torch.device("cpu"), "F")
    assert path_F != path and seconds_F == 0.0  # computed with G, in the same pass
    want = gradients.compute(model, calibration, torch.device("cpu"))
    assert all(torch.equal(F[k], want["F"][k]) and torch.equal(first[k], want["G"][k]) for k in F)
    path_F.unlink()  # a cache from before F existed holds G alone: F is computed, not looked for in G's file
    again_F, _, seconds_F = gradients.load_or_compute(model, "tiny", calibration, torch.device("cpu"), "F", log=lambda _: None)
    assert seconds_F > 0 and path_F.is_file() and all(torch.equal(again_F[k], F[k]) for k in F)
    other = gradients.cache_path("tiny", calibration[:, :7], torch.float32)
    assert other != path
