"""SparseGPT's tensor math (Frantar & Alistarh 2023, arXiv:2301.00774), apart from any model plumbing.

Columns are visited left to right in blocks; inside a block each column is pruned and the error is
spread over the later columns of the block through the upper Cholesky factor of H^-1 (the OBS update
restricted to the columns not yet processed), then the block's error updates the columns to its right
at once. Which weights go is chosen per block from w^2 / [H^-1]_jj^2 (for N:M, per M columns)."""
import sys

import torch

from pruners.masks import lowest
from pruners.spec import Sparsity

_warned = set()


def damped_inverse_factor(H: torch.Tensor, percdamp: float, name: str = "") -> torch.Tensor:
    """Upper Cholesky factor of (H + damp I)^-1, damp = percdamp x mean(diag H). When the factorisation
    fails (it does on some Mistral layers), the damping grows tenfold until it succeeds; said once."""
    mean = torch.diag(H).mean()
    eye = torch.eye(H.shape[0], dtype=H.dtype, device=H.device)
    damp = percdamp
    while True:
        try:
            L = torch.linalg.cholesky(H + damp * mean * eye)
            return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
        except torch.linalg.LinAlgError:
            if damp >= 1e4:
                raise
            damp *= 10
            if "damp" not in _warned:
                _warned.add("damp")
                print(f"sparsegpt: Cholesky failed{' on ' + name if name else ''}; damping raised to {damp:g} "
                      "of the mean diagonal (said once)", file=sys.stderr)


def sparsify(W: torch.Tensor, H: torch.Tensor, spec: Sparsity | None, blocksize: int = 128, percdamp: float = 0.01,
             name: str = "", fixed: torch.Tensor | None = None) -> torch.Tensor:
    """The pruned and updated (out, in) weight, float32, from weight W (out, in) and Hessian H (in, in).
    With `fixed`, an (out, in) bool mask, exactly those weights are pruned (no choice, `spec` unused) and
    the sweep only spreads their error: SparseGPT's update for another method's mask."""
    W = W.float().clone()
    H = H.clone()
    cols = W.shape[1]
    dead = torch.diag(H) == 0  # inputs that never fire: nothing to reconstruct, prune them outright
    H[dead, dead] = 1
    W[:, dead] = 0
    Hinv = damped_inverse_factor(H, percdamp, name)  # (in, in) upper triangular
    nm = None if fixed is not None else spec.nm
    if nm is not None:  # an N:M group must not straddle two blocks: round the block up to a multiple of M
        blocksize = -(-blocksize // nm[1]) * nm[1]
    for i1 in range(0, cols, blocksize):
        i2 = min(i1 + blocksize, cols)
        W1 = W[:, i1:i2].clone()  # (out, b)
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)  # (b,)
        if fixed is not None:
            mask1 = fixed[:, i1:i2]
        elif nm is None:
            saliency = W1.pow(2) / d.pow(2)
            mask1 = lowest(saliency.reshape(1, -1), int(saliency.numel() * spec.ratio)).reshape(saliency.shape)
        else:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        for i in range(i2 - i1):
            if nm is not None and i % nm[1] == 0:
                n, m = nm
                saliency = W1[:, i : i + m].pow(2) / d[i : i + m].pow(2)
                mask1[:, i : i + m] = lowest(saliency, m - n)
            w = W1[:, i]
            q = w.masked_fill(mask1[:, i], 0)
            Q1[:, i] = q
            err = (w - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) * Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    return W
