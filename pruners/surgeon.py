from typing import ClassVar, Literal

import torch
from pydantic import Field

from pruners import models
from pruners.base import Pruner
from pruners.device import step
from pruners.masks import lowest
from pruners.surgeon_math import (
    column_costs, damped_inverse, element_costs, remove_columns, remove_elements, remove_rows, row_costs,
)


class Surgeon(Pruner):
    """The LLM Surgeon (van der Ouderaa et al. 2024, arXiv:2312.17244): Kronecker-factored curvature per
    layer, removal costs of single weights, N:M groups or whole rows and columns, one global threshold
    across layers (sparsity goes where the loss allows it), a linear multi-shot schedule with the
    curvature re-estimated every shot, and correlated weight updates.

    curvature: `identity` (A = G = I: global magnitude), `activations` (A from inputs, G = I: OBS per
    row) or `kfac` (A and G; G from the gradients of the language-model loss at each layer's outputs,
    the empirical Fisher with the data's own next tokens).

    Approximations, against the paper: unstructured updates correlate the weights a shot removes within a
    row exactly, and sum the rows' updates computed from the same weights (see
    surgeon_math.remove_elements); weights removed in earlier shots are not constraints of the solve but
    are set to zero again after it (solving with them costs the cube of all removals per row, which made
    five shots of the embedded model take most of an hour on 2 cores); rows and columns of a
    layer are removed in two exact steps, rows first; N:M takes one shot; costs of a shot's structures
    are summed as if independent (as the paper's selection does); the curvature of every layer is held
    at once, which fits models of about 1B parameters in 24 GB.

        method: surgeon
        options: {curvature: kfac, shots: 5, damping: 0.1}
    """

    name: ClassVar[str] = "surgeon"
    patterns: ClassVar[tuple[str, ...]] = ("unstructured", "N:M", "row-column")
    curvature: Literal["identity", "activations", "kfac"] = "kfac"
    shots: int = Field(5, ge=1)  # the sparsity grows linearly to the target over this many shots
    damping: float = Field(0.1, gt=0)  # added to A and G as a share of their mean diagonal
    batch_size: int = Field(8, gt=0)  # calibration samples per forward for A (G takes one at a time)

    def estimate(self, model, calibration, targets, device):
        """({name: A (in, in)}, {name: G (out, out)}) over the calibration samples; empty for identity parts."""
        A = {n: torch.zeros(l.in_features, l.in_features, device=device) for n, l in targets.items()} if self.curvature != "identity" else {}
        G = {n: torch.zeros(l.out_features, l.out_features, device=device) for n, l in targets.items()} if self.curvature == "kfac" else {}
        tokens = 0
        hooks = []
        for name, lin in targets.items():
            def forward(_m, inputs, output, a=A.get(name), g=G.get(name)):
                if a is not None:
                    x = inputs[0].detach().reshape(-1, inputs[0].shape[-1]).float()  # (tokens, in)
                    a.addmm_(x.T, x)
                if g is not None and output.requires_grad:
                    def gradient(grad, g=g):  # dL/d(output): (B, T, out)
                        y = grad.reshape(-1, grad.shape[-1]).float()
                        g.addmm_(y.T, y)

                    output.register_hook(gradient)

            hooks.append(lin.register_forward_hook(forward))
        flags = {p: p.requires_grad for p in model.parameters()}
        try:
            if G:
                for p in model.parameters():
                    p.requires_grad_(any(p is lin.weight for lin in targets.values()))
                for sample in calibration:
                    ids = sample.unsqueeze(0).to(device)
                    model.zero_grad(set_to_none=True)
                    model(input_ids=ids, labels=ids, use_cache=False).loss.backward()
                    tokens += ids.numel()
                    step(device)
                model.zero_grad(set_to_none=True)
            elif A:
                with torch.no_grad():
                    for batch in calibration.split(self.batch_size):
                        model.base_model(input_ids=batch.to(device), use_cache=False)
                        tokens += batch.numel()
        finally:
            for h in hooks:
                h.remove()
            for p, flag in flags.items():
                p.requires_grad_(flag)
        for a in A.values():
            a /= tokens
        for g in G.values():
            g /= len(calibration)
        return A, G

    def prune(self, model, calibration, spec, device, gradients=None):
        model.to(device)
        targets = models.target_linears(model)
        shots = 1 if spec.nm else self.shots
        for shot in range(1, shots + 1):
            ratio = spec.ratio * shot / shots
            A, G = self.estimate(model, calibration, targets, device)
            eye = lambda n: torch.eye(n, device=device)
            inv = {
                name: (
                    damped_inverse(G[name], self.damping) if G else eye(lin.out_features),
                    damped_inverse(A[name], self.damping) if A else eye(lin.in_features),
                )
                for name, lin in targets.items()
            }
            if spec.pattern == "row-column":
                self._rows_and_columns(targets, A, G, inv, ratio)
            else:
                self._elements(targets, inv, spec, ratio)
            del A, G, inv

    @torch.no_grad()
    def _elements(self, targets, inv, spec, ratio) -> None:
        costs = {name: element_costs(lin.weight.float(), *inv[name]) for name, lin in targets.items()}
        if spec.nm:
            n, m = spec.nm
            chosen = {name: lowest(c.reshape(-1, m), m - n).reshape(c.shape) for name, c in costs.items()}
        else:  # one global threshold: the weights cheapest to remove anywhere in the model
            flat = torch.cat([c.flatten() for c in costs.values()]).unsqueeze(0)
            picked = lowest(flat, int(flat.numel() * ratio))[0]
            chosen, start = {}, 0
            for name, c in costs.items():
                chosen[name] = picked[start : start + c.numel()].reshape(c.shape)
                start += c.numel()
        for name, lin in targets.items():
            W = lin.weight.float()
            fresh = chosen[name] & (W != 0)  # this shot's removals; earlier ones are zero already
            W = remove_elements(W, *inv[name], fresh).masked_fill(chosen[name], 0)
            lin.weight.copy_(W.to(lin.weight.dtype))

    @torch.no_grad()
    def _rows_and_columns(self, targets, A, G, inv, ratio) -> None:
        """Rows and columns of every layer in one list by cost, taken cheapest first until the zeros they
        make (a row and a column share one weight) reach the target share of all weights."""
        entries = []  # (cost, layer, 0 row / 1 column, index)
        for li, (name, lin) in enumerate(targets.items()):
            Ginv, Ainv = inv[name]
            W = lin.weight.float()
            a = A.get(name, torch.eye(W.shape[1], device=W.device))
            g = G.get(name, torch.eye(W.shape[0], device=W.device))
            for kind, costs in ((0, row_costs(W, Ginv, a)), (1, column_costs(W, g, Ainv))):
                entries += [(c, li, kind, i) for i, c in enumerate(costs.tolist())]
        entries.sort(key=lambda e: (e[0], e[1], e[2], e[3]))
        shapes = [lin.weight.shape for lin in targets.values()]
        total = sum(o * i for o, i in shapes)
        removed = [[set(), set()] for _ in shapes]
        zeros, goal = 0, ratio * total
        for _, li, kind, index in entries:
            if zeros >= goal:
                break
            out, inn = shapes[li]
            rows, cols = removed[li]
            zeros += (inn - len(cols)) if kind == 0 else (out - len(rows))
            removed[li][kind].add(index)
        for (name, lin), (rows, cols) in zip(targets.items(), removed):
            Ginv, Ainv = inv[name]
            W = remove_rows(lin.weight.float(), Ginv, torch.tensor(sorted(rows), dtype=torch.long, device=lin.weight.device))
            W = remove_columns(W, Ainv, torch.tensor(sorted(cols), dtype=torch.long, device=lin.weight.device))
            lin.weight.copy_(W.to(lin.weight.dtype))
