"""G: per-weight gradient magnitudes of the language-model loss over calibration samples, computed once
from the dense model and cached on disk (GBLM-Pruner, Pruner-Zero).

G[w] = sqrt(sum over samples s of (dL_s/dw)^2), with L_s the mean next-token loss of sample s. One sample
at a time, so memory stays at about one model's gradients. Pruner-Zero's script multiplies each
gradient by 100 first; ranking by any metric in which G is min-max scaled or multiplied is unchanged.
"""
import hashlib
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pruners import models
from pruners.device import step


def cache_path(model_name: str, calibration: torch.Tensor, dtype: torch.dtype) -> Path:
    """The cache file for a model and its exact calibration tokens (which fix data, nsamples, seqlen, seed)."""
    digest = hashlib.sha256()
    digest.update(f"{model_name}|{dtype}|{tuple(calibration.shape)}|".encode())
    digest.update(calibration.to(torch.int64).numpy().tobytes())
    safe = model_name.replace("/", "--")
    return models.cache_root() / "gradients" / f"{safe}-{digest.hexdigest()[:16]}.safetensors"


def compute(model, calibration: torch.Tensor, device: torch.device) -> dict[str, torch.Tensor]:
    """{target name: G (out, in) float32 on the host}; the model must sit on `device`."""
    targets = models.target_linears(model)
    trainable = {p for lin in targets.values() for p in lin.parameters()}
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(p in trainable)  # no gradient memory for embeddings, norms or the LM head
    sums = {name: torch.zeros_like(lin.weight, dtype=torch.float32, device=device) for name, lin in targets.items()}
    try:
        for sample in calibration:
            ids = sample.unsqueeze(0).to(device)
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
            for name, lin in targets.items():
                sums[name] += lin.weight.grad.float().pow(2)
            step(device)
    finally:
        model.zero_grad(set_to_none=True)
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return {name: s.sqrt().cpu() for name, s in sums.items()}


def load_or_compute(model, model_name: str, calibration: torch.Tensor, device: torch.device, log=print):
    """G from the cache, or computed now and cached. Returns (G, path, seconds spent computing)."""
    path = cache_path(model_name, calibration, next(model.parameters()).dtype)
    if path.is_file():
        return load_file(path), path, 0.0
    start = time.perf_counter()
    log(f"computing G over {calibration.shape[0]} samples of {calibration.shape[1]} tokens")
    G = compute(model, calibration, device)
    seconds = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    save_file({k: v.contiguous() for k, v in G.items()}, partial)
    partial.rename(path)
    return G, path, seconds
