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


def test_G_equals_the_brute_force_per_sample_norm():
    model = tiny_llama(5)
    calibration = torch.randint(0, 96, (5, 12))
    got = gradients.compute(model, calibration, torch.device("cpu"))
    want = brute_force_G(model, calibration)
    assert got.keys() == want.keys()
    for name in got:
        assert torch.allclose(got[name], want[name], rtol=1e-4, atol=1e-7), name
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())


def test_G_is_cached_under_model_and_tokens(tmp_path, monkeypatch):
    monkeypatch.setenv("EVOLVE_CACHE", str(tmp_path))
    model = tiny_llama(6)
    calibration = torch.randint(0, 96, (3, 8))
    first, path, seconds = gradients.load_or_compute(model, "tiny", calibration, torch.device("cpu"), log=lambda _: None)
    assert path.is_file() and path.is_relative_to(tmp_path) and seconds > 0
    again, path2, seconds2 = gradients.load_or_compute(model, "tiny", calibration, torch.device("cpu"))
    assert path2 == path and seconds2 == 0.0
    assert all(torch.equal(first[k], again[k]) for k in first)
    other = gradients.cache_path("tiny", calibration[:, :7], torch.float32)
    assert other != path
