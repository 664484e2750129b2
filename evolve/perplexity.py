"""Perplexity exactly as the Wanda and SparseGPT papers measure it."""
import math

import torch
import torch.nn.functional as F

from pruners.errors import InputError


def windows(tokens: torch.Tensor, seqlen: int, max_tokens: int | None = None, skip_tokens: int = 0,
            name: str = "evaluation") -> torch.Tensor:
    """(n, seqlen) non-overlapping windows of a (1, L) token stream; max_tokens keeps the first windows only,
    after the whole windows that hold the first skip_tokens tokens are left out."""
    tokens = tokens[:, -(-skip_tokens // seqlen) * seqlen:]
    n = tokens.shape[1] // seqlen
    if max_tokens is not None:
        n = min(n, max_tokens // seqlen)
    if n == 0:
        have = tokens.shape[1] if max_tokens is None else min(tokens.shape[1], max_tokens)
        raise InputError(f"{name} needs at least one window of {seqlen} tokens, it has {have}")
    return tokens[0, : n * seqlen].view(n, seqlen)


@torch.no_grad()
def window_nll(model, batch: torch.Tensor) -> torch.Tensor:
    """(B,) summed next-token NLL of each window of a (B, T) batch, over its T - 1 predicted tokens."""
    logits = model(input_ids=batch, use_cache=False).logits  # (B, T, V)
    B, T, V = logits.shape
    # rows of (N, V) logits: on CPU, cross entropy over (B, V, T) loses about 1e-4 of the loss in float32
    nll = F.cross_entropy(logits[:, :-1].reshape(-1, V).float(), batch[:, 1:].reshape(-1), reduction="none")
    return nll.view(B, T - 1).sum(dim=1)


@torch.no_grad()
def perplexity(model, windows: torch.Tensor, device: torch.device, batch_size: int = 1) -> float:
    """exp(total NLL / predicted tokens) over (n, seqlen) windows; the model must sit on `device`.

    The papers compute exp(mean over windows of the window's mean loss): with equal windows that is the
    same number.
    """
    total = 0.0
    for batch in windows.split(batch_size):
        total += window_nll(model, batch.to(device)).sum().item()
    return math.exp(total / (windows.shape[0] * (windows.shape[1] - 1)))
