from typing import ClassVar

import torch
from pydantic import Field

from pruners import models
from pruners.base import Pruner
from pruners.device import step


def lowest_globally(scores: list[torch.Tensor], ratio: float) -> list[torch.Tensor]:
    """The kept channel indices of each layer when the `ratio` share of all channels with the lowest scores
    goes, one threshold over every layer (ties to the lower layer and channel). Each layer keeps one
    channel at least: an MLP without channels is no longer a layer a config can describe."""
    flat = torch.cat(scores)  # (sum of widths,)
    order = torch.sort(flat, stable=True).indices
    drop = torch.zeros_like(flat, dtype=torch.bool)
    drop[order[: int(flat.numel() * ratio)]] = True
    kept, start = [], 0
    for s in scores:
        gone = drop[start : start + s.numel()]
        if gone.all():
            gone[s.argmax()] = False
        kept.append(torch.nonzero(~gone).flatten())
        start += s.numel()
    return kept


class Channels(Pruner):
    """Retrain-free MLP channel pruning (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for
    Transformers"; Intel Neural Compressor's retrain-free pruner): a 0/1 mask on the intermediate channels
    of every MLP (the input columns of its down projection, the output rows of its up and gate
    projections) is scored by the squared gradient of the language-model loss with respect to the mask,
    summed over calibration samples one at a time (the Fisher information of the mask); the `--sparsity`
    share of all MLP channels with the lowest scores goes, one threshold over the whole model. The
    channels are then removed for real (see models.slim_mlps).

        method: channels
        pattern: channels
    """

    name: ClassVar[str] = "channels"
    patterns: ClassVar[tuple[str, ...]] = ("channels",)

    def scores(self, model, calibration: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        """[(intermediate,) float32] per block: sum over samples of (dL_s / dm)^2 at m = 1."""
        model.to(device)
        downs = [models.mlp(block)[1] for block in models.blocks(model)]
        masks = [torch.ones(d.in_features, device=device, requires_grad=True) for d in downs]
        sums = [torch.zeros(d.in_features, dtype=torch.float64) for d in downs]
        hooks = [d.register_forward_pre_hook(lambda _m, args, m=m: (args[0] * m.to(args[0].dtype),)) for d, m in zip(downs, masks)]
        flags = {p: p.requires_grad for p in model.parameters()}
        try:
            for p in model.parameters():
                p.requires_grad_(False)  # only the masks need gradients
            for sample in calibration:
                ids = sample.unsqueeze(0).to(device)
                grads = torch.autograd.grad(model(input_ids=ids, labels=ids, use_cache=False).loss, masks)
                for total, g in zip(sums, grads):
                    total += g.double().pow(2).cpu()
                step(device)
        finally:
            for h in hooks:
                h.remove()
            for p, flag in flags.items():
                p.requires_grad_(flag)
        return [s.float() for s in sums]

    def prune(self, model, calibration, spec, device, gradients=None):
        models.slim_mlps(model, lowest_globally(self.scores(model, calibration, device), spec.ratio))
