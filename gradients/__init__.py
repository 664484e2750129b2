"""The leaves read from the language-model loss's gradients, computed once from the dense model over
calibration samples and cached on disk, one file per leaf:

G[w] = sqrt(sum over samples s of (dL_s/dw)^2), with L_s the mean next-token loss of sample s
(GBLM-Pruner, Pruner-Zero). Pruner-Zero's script multiplies each gradient by 100 first; ranking by any
metric in which G is min-max scaled or multiplied is unchanged.

F[i, j] = sqrt(sum over samples s and tokens t of (dL_s/dy_ti)^2 x_tj^2), y = W x the linear's output: the
empirical Fisher's diagonal with each token's share of the weight gradient as one observation. F^2 W^2 is
the loss's second-order cost of dropping a weight with the Fisher standing in for the Hessian, and it is
Wanda's W^2 X^2 with every token's input weighed by how much the loss feels that output there. G sums a
sample's tokens before squaring, so their shares cancel; F squares each token's share.

Both come from one backward pass per sample, so memory stays at about one model's gradients.
"""
import hashlib
import time
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from pruners import models
from pruners.device import step
from pruners.stats import GRADIENT_LEAVES as LEAVES


def cache_path(model_name: str, calibration: torch.Tensor, dtype: torch.dtype, leaf: str = "G") -> Path:
    """A leaf's cache file for a model and its exact calibration tokens (which fix data, nsamples, seqlen, seed)."""
    digest = hashlib.sha256()
    digest.update(f"{model_name}|{dtype}|{tuple(calibration.shape)}|".encode())
    digest.update(calibration.to(torch.int64).numpy().tobytes())
    safe = model_name.replace("/", "--")
    suffix = "" if leaf == "G" else f"-{leaf}"  # G's files keep the name they had before F existed
    return models.cache_root() / "gradients" / f"{safe}-{digest.hexdigest()[:16]}{suffix}.safetensors"


def compute(model, calibration: torch.Tensor, device: torch.device) -> dict[str, dict[str, torch.Tensor]]:
    """{"G": {target name: (out, in)}, "F": {...}} float32 on the host; the model must sit on `device`."""
    targets = models.target_linears(model)
    trainable = {p for lin in targets.values() for p in lin.parameters()}
    flags = {p: p.requires_grad for p in model.parameters()}
    for p in model.parameters():
        p.requires_grad_(p in trainable)  # no gradient memory for embeddings, norms or the LM head
    sums = {leaf: {name: torch.zeros_like(lin.weight, dtype=torch.float32, device=device) for name, lin in targets.items()}
            for leaf in LEAVES}

    def tokens_share(name):
        def hook(linear, inputs, output):
            x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()  # (tokens, in)

            def add(grad):  # grad: (..., out), dL/dy at every token
                g = grad.reshape(-1, grad.shape[-1]).float()  # (tokens, out)
                sums["F"][name].addmm_(g.pow(2).T, x.pow(2))

            output.register_hook(add)
        return hook

    hooks = [lin.register_forward_hook(tokens_share(name)) for name, lin in targets.items()]
    try:
        for sample in calibration:
            ids = sample.unsqueeze(0).to(device)
            model.zero_grad(set_to_none=True)
            model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
            for name, lin in targets.items():
                sums["G"][name] += lin.weight.grad.float().pow(2)
            step(device)
    finally:
        for hook in hooks:
            hook.remove()
        model.zero_grad(set_to_none=True)
        for p, flag in flags.items():
            p.requires_grad_(flag)
    return {leaf: {name: s.sqrt().cpu() for name, s in by_name.items()} for leaf, by_name in sums.items()}


def load_or_compute(model, model_name: str, calibration: torch.Tensor, device: torch.device, leaf: str = "G", log=print):
    """A leaf from the cache, or every leaf computed now and cached. Returns (the leaf, its path, seconds
    spent computing). Only the leaf asked for is held, since a large model's G alone is its size in float32."""
    dtype = next(model.parameters()).dtype
    paths = {name: cache_path(model_name, calibration, dtype, name) for name in LEAVES}
    if paths[leaf].is_file():
        return load_file(paths[leaf]), paths[leaf], 0.0
    start = time.perf_counter()
    log(f"computing G and F over {calibration.shape[0]} samples of {calibration.shape[1]} tokens")
    computed = compute(model, calibration, device)
    seconds = time.perf_counter() - start
    for name, path in paths.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        save_file({k: v.contiguous() for k, v in computed[name].items()}, partial)
        partial.rename(path)
    return computed[leaf], paths[leaf], seconds
