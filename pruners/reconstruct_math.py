"""Tensor math of reconstruction, apart from any model: the layer-wise least-squares refit on a fixed mask."""
import torch


def refit_rows(dense: torch.Tensor, kept: torch.Tensor, H: torch.Tensor, percdamp: float = 0.01, chunk: int = 64) -> torch.Tensor:
    """(out, in) weights that, row by row, use only the `kept` (out, in) entries and best reproduce the dense
    rows' outputs on the calibration inputs: min over w (zero off its support S) of (w - d) H (w - d)^T,
    H = 2/N X^T X. Setting the gradient on S to zero gives H_SS w_S = (d H)_S, one system per row.

    Rows keep different supports, so each chunk of rows gathers its own H_SS, padded to the chunk's widest
    support with identity rows (their right-hand side is 0, so the padding solves to 0). H is damped as
    SparseGPT damps it, percdamp times its mean diagonal."""
    out, n = dense.shape
    H = H.double()
    H = H + percdamp * H.diagonal().mean() * torch.eye(n, dtype=H.dtype, device=H.device)
    right = dense.double() @ H  # (out, in): row r is (d_r H)
    result = torch.zeros(out, n, dtype=torch.float64, device=dense.device)
    for start in range(0, out, chunk):
        keep = kept[start : start + chunk]  # (c, in) bool
        width = int(keep.sum(dim=1).max())
        if width == 0:
            continue
        # (c, width) the kept columns of each row, first; `valid` marks real ones, the rest is padding
        order = torch.sort(keep.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :width]
        valid = torch.gather(keep, 1, order)  # (c, width)
        system = H[order.unsqueeze(2), order.unsqueeze(1)]  # (c, width, width)
        pair = valid.unsqueeze(2) & valid.unsqueeze(1)
        eye = torch.eye(width, dtype=torch.bool, device=H.device)
        system = torch.where(pair, system, torch.where(eye, torch.ones_like(system), torch.zeros_like(system)))
        rhs = torch.where(valid, torch.gather(right[start : start + chunk], 1, order), torch.zeros((), dtype=H.dtype, device=H.device))
        solved = torch.cholesky_solve(rhs.unsqueeze(2), torch.linalg.cholesky(system)).squeeze(2)  # (c, width)
        result[start : start + chunk].scatter_(1, order, torch.where(valid, solved, torch.zeros_like(solved)))
    return result.to(dense.dtype)
