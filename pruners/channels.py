from typing import ClassVar

import torch
from pydantic import Field

from pruners import models
from pruners.base import Pruner
from pruners.device import step
from pruners.walker import Step, run_block, walk

# Kwon et al. give up mask tuning when a scale leaves this range: the least squares fit is then unstable.
MAX_SCALE = 10.0


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


def fisher(grads: torch.Tensor) -> torch.Tensor:
    """(C,) the diagonal of the mask's empirical Fisher from per-sample mask gradients (S, C)."""
    return grads.double().pow(2).sum(dim=0).float()


def rearranged(grads: torch.Tensor, kept: torch.Tensor) -> torch.Tensor:
    """Kwon et al.'s mask rearrangement within one layer, the count kept unchanged. Removing the set P of
    channels costs about ||sum_{i in P} g_i||^2 (g_i: channel i's gradients over samples, (S,)), the
    Fisher's off-diagonal terms included. Start from the lowest diagonal Fisher; then, one kept channel at
    a time in rising Fisher order, add it to P and put back whichever member of P lowers that cost most
    (maybe itself), so the cost never rises. Returns the kept indices, sorted."""
    width = grads.shape[1]
    n_pruned = width - len(kept)
    if n_pruned == 0 or len(kept) == 0:
        return kept
    g = grads.t().double()  # (C, S)
    order = torch.sort(g.pow(2).sum(dim=1), stable=True).indices.tolist()
    pruned = order[:n_pruned]
    total = g[pruned].sum(dim=0)  # (S,)
    for j in order[n_pruned:]:
        pruned.append(j)
        rest = total + g[j] - g[pruned]  # (|P|, S): the sum without each member
        back = int(rest.pow(2).sum(dim=1).argmin())
        total = rest[back]
        del pruned[back]
    keep = torch.ones(width, dtype=torch.bool)
    keep[pruned] = False
    return torch.nonzero(keep).flatten()


class Channels(Pruner):
    """Retrain-free MLP channel pruning (Kwon et al. 2022, "A Fast Post-Training Pruning Framework for
    Transformers"; Intel Neural Compressor's retrain-free pruner): a 0/1 mask on the intermediate channels
    of every MLP (the input columns of its down projection, the output rows of its up and gate
    projections) is scored by the squared gradient of the language-model loss with respect to the mask,
    summed over calibration samples one at a time (the Fisher information of the mask); the `--sparsity`
    share of all MLP channels with the lowest scores goes, one threshold over the whole model. Then, as
    both do, each layer's choice is rearranged with the Fisher's off-diagonal terms (`rearrange`), and,
    as Kwon does and INC does not, the kept channels may be rescaled by least squares (`tune`). The
    channels are then removed for real (see models.slim_mlps).

        method: channels
        pattern: channels
        options: {rearrange: true, tune: false, samples: 16}
    """

    name: ClassVar[str] = "channels"
    patterns: ClassVar[tuple[str, ...]] = ("channels",)
    rearrange: bool = True
    tune: bool = False  # Kwon's mask tuning: one more calibration pass, a (kept, kept) solve per layer
    # The first `samples` calibration samples score (and tune); None: all. One backward pass each, so the
    # default keeps the embedded model at minutes on 2 cores (INC runs 6000 samples on a GPU).
    samples: int | None = Field(16, ge=1)
    batch_size: int = Field(8, ge=1)  # samples per forward of the tuning pass

    def title(self) -> str:
        return "channels" + ("" if self.rearrange else " diagonal") + (" tuned" if self.tune else "")

    def mask_gradients(self, model, calibration: torch.Tensor, device: torch.device) -> list[torch.Tensor]:
        """[(samples, intermediate) float32] per block: dL_s / dm at m = 1 for every calibration sample s."""
        model.to(device)
        downs = [models.mlp(block)[1] for block in models.blocks(model)]
        masks = [torch.ones(d.in_features, device=device, requires_grad=True) for d in downs]
        grads = [torch.zeros(len(calibration), d.in_features) for d in downs]
        hooks = [d.register_forward_pre_hook(lambda _m, args, m=m: (args[0] * m.to(args[0].dtype),)) for d, m in zip(downs, masks)]
        flags = {p: p.requires_grad for p in model.parameters()}
        try:
            for p in model.parameters():
                p.requires_grad_(False)  # only the masks need gradients
            for s, sample in enumerate(calibration):
                ids = sample.unsqueeze(0).to(device)
                for out, g in zip(grads, torch.autograd.grad(model(input_ids=ids, labels=ids, use_cache=False).loss, masks)):
                    out[s] = g.float().cpu()
                step(device)
        finally:
            for h in hooks:
                h.remove()
            for p, flag in flags.items():
                p.requires_grad_(flag)
        return grads

    def choose(self, model, calibration, spec, device) -> list[torch.Tensor]:
        """The kept channel indices of every block's MLP."""
        grads = self.mask_gradients(model, calibration, device)
        kept = lowest_globally([fisher(g) for g in grads], spec.ratio)
        if self.rearrange:
            kept = [rearranged(g, k) for g, k in zip(grads, kept)]
        return kept

    def prune(self, model, calibration, spec, device, gradients=None):
        calibration = calibration[: self.samples]
        kept = self.choose(model, calibration, spec, device)
        if self.tune:
            walk(model, calibration, device, (), lambda s: tune_block(s, kept[s.index].to(device)), self.batch_size, dense=("path",))
        models.slim_mlps(model, kept)


def tune_block(step: Step, keep: torch.Tensor) -> None:
    """Kwon et al.'s mask tuning for one block: zero the channels that go, then scale each kept channel's
    column of the down projection so the block's output on the pruned path best matches the dense model's
    (least squares over every calibration token). With h the kept channels' activations (N, k), W their
    columns (D, k) and b what the MLP must add to the rest of the block's output (N, D), the scales s
    minimise ||(h * s) W^T - b||^2: normal equations ((h^T h) * (W^T W)) s = sum over tokens of h * (b W)."""
    down = models.mlp(step.block)[1]
    gone = torch.ones(down.in_features, dtype=torch.bool, device=keep.device)
    gone[keep] = False
    down.weight.data[:, gone] = 0
    W = down.weight.data[:, keep].double()  # (D, k)
    normal = torch.zeros(len(keep), len(keep), dtype=torch.float64, device=keep.device)
    right = torch.zeros(len(keep), dtype=torch.float64, device=keep.device)
    seen = []
    hook = down.register_forward_hook(lambda _m, args, out: seen.append((args[0], out)))
    try:
        for state, target in zip(step.inputs, step.path_targets):
            (output, _, _), = run_block(step.block, [state])  # (B, T, D)
            h, mlp_out = seen.pop()
            h = h[..., keep].reshape(-1, len(keep)).double()  # (N, k)
            b = (target - output + mlp_out).reshape(h.shape[0], -1).double()  # (N, D): the rest of the block removed
            if down.bias is not None:
                b -= down.bias.double()
            normal += (h.t() @ h) * (W.t() @ W)
            right += (h * (b @ W)).sum(dim=0)
    finally:
        hook.remove()
    damp = 1e-6 * normal.diagonal().mean().clamp_min(1e-30)
    scale = torch.linalg.solve(normal + damp * torch.eye(len(keep), dtype=normal.dtype, device=normal.device), right)
    if torch.isfinite(scale).all() and scale.abs().max() <= MAX_SCALE:
        down.weight.data[:, keep] *= scale.to(down.weight.dtype)
