"""The LLM Surgeon's tensor math, in the dtype of its inputs (van der Ouderaa et al. 2024, arXiv:2312.17244), apart from the model.

A layer's curvature is Kronecker-factored, F ~ G (out, out) x A (in, in), with A from its inputs and
G from the loss gradients at its outputs. With Ginv and Ainv the damped inverses, removing a set Q of
weights costs dL = 1/2 theta_Q^T [F^-1]_QQ^-1 theta_Q and moves the others by
-F^-1[:, Q] [F^-1]_QQ^-1 theta_Q. Under the Kronecker structure these are closed forms:
  one weight (i, j):  w_ij^2 / (2 Ginv_ii Ainv_jj)
  a row r:            w_r A w_r^T / (2 Ginv_rr),  update -Ginv[:, R] Ginv_RR^-1 W_R        (exact, any row set)
  a column c:         w_c^T G w_c / (2 Ainv_cc),  update -W[:, C] Ainv_CC^-1 Ainv[C, :]   (exact, any column set)
"""
import torch


def damped_inverse(M: torch.Tensor, damping: float) -> torch.Tensor:
    """(M + damping * mean(diag M) * I)^-1."""
    shift = damping * torch.diag(M).mean().clamp_min(1e-12)
    return torch.cholesky_inverse(torch.linalg.cholesky(M + shift * torch.eye(M.shape[0], dtype=M.dtype, device=M.device)))


def element_costs(W: torch.Tensor, Ginv: torch.Tensor, Ainv: torch.Tensor) -> torch.Tensor:
    """(out, in) cost of removing each weight on its own."""
    return W.pow(2) / (2 * torch.diag(Ginv).unsqueeze(1) * torch.diag(Ainv).unsqueeze(0))


def row_costs(W: torch.Tensor, Ginv: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """(out,) cost of removing each output row on its own."""
    return torch.einsum("ri,ij,rj->r", W, A, W) / (2 * torch.diag(Ginv))


def column_costs(W: torch.Tensor, G: torch.Tensor, Ainv: torch.Tensor) -> torch.Tensor:
    """(in,) cost of removing each input column on its own."""
    return torch.einsum("ri,rs,si->i", W, G, W) / (2 * torch.diag(Ainv))


def remove_rows(W: torch.Tensor, Ginv: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """W after removing the rows together, the others updated with their correlations through G."""
    if rows.numel() == 0:
        return W
    update = Ginv[:, rows] @ torch.linalg.solve(Ginv[rows][:, rows], W[rows])  # (out, in)
    W = W - update
    W[rows] = 0
    return W


def remove_columns(W: torch.Tensor, Ainv: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """W after removing the columns together, the others updated with their correlations through A."""
    if cols.numel() == 0:
        return W
    update = W[:, cols] @ torch.linalg.solve(Ainv[cols][:, cols], Ainv[cols])  # (out, in)
    W = W - update
    W[:, cols] = 0
    return W


def remove_elements(W: torch.Tensor, Ginv: torch.Tensor, Ainv: torch.Tensor, mask: torch.Tensor, budget: int = 2**25) -> torch.Tensor:
    """W after removing the weights under `mask` (out, in), True = removed.

    Approximation (the paper correlates more): each row's removed set Q_i gets its exact correlated
    update, -Ginv[:, i] / Ginv_ii (x) Ainv[:, Q_i] Ainv_QQ^-1 w_{i,Q_i}, all computed from the same W
    and summed; the mask is applied again at the end, since through G one row's update moves weights
    removed in another. Rows with equally many removals are solved together in batches."""
    U = torch.zeros_like(W)  # (out, in): row i holds Ainv[:, Q_i] Ainv_QQ^-1 w_{i,Q_i}
    counts = mask.sum(dim=1)
    for c in torch.unique(counts[counts > 0]).tolist():
        rows = torch.nonzero(counts == c).flatten()
        for part in rows.split(max(1, budget // (c * c))):
            q = torch.nonzero(mask[part])[:, 1].reshape(len(part), c)  # (r, c) removed columns per row
            AQQ = Ainv[q.unsqueeze(2), q.unsqueeze(1)]  # (r, c, c)
            v = torch.linalg.solve(AQQ, W[part.unsqueeze(1), q])  # (r, c)
            U[part] = torch.einsum("jrc,rc->rj", Ainv[:, q], v)  # (r, in)
    W = W - (Ginv / torch.diag(Ginv).unsqueeze(0)) @ U
    return W.masked_fill(mask, 0)
