"""Reconstruction after pruning, a stage that runs on the walker's steps after any layer method's masks
(Shin et al., "Rethinking Pruning Large Language Models: Benefits and Pitfalls of Reconstruction Error
Minimization", EMNLP 2024). Every mask stays fixed: a pruned weight is exactly zero before and after.

    lr  layer-wise: each linear's kept weights, row by row, the least-squares fit to the dense linear's
        outputs on the same (pruned-path) inputs, in closed form on their Hessian
    obs layer-wise as lr, by SparseGPT's column sweep with the mask fixed: each pruned weight's error
        spread over the columns to its right through the inverse Hessian's Cholesky factor (lr's fit
        approximated column by column, 20 to 50 times cheaper on a CPU)
    br  block-wise: every parameter of the block but the masks (norms included, as their code trains
        them) fitted by AdamW to the dense block's outputs on the same inputs, MSE
    gp  global propagation: br's target becomes the dense model's own path (dense blocks on dense inputs)
    cr  cross-block: br on overlapping windows of two blocks, [0], [0, 1], [1, 2], ..., [L-2, L-1], [L-1],
        so every block is trained twice, the second time together with the block after it

Written joined by '+': 'br+gp', 'lr+br', 'br+gp+cr'. lr and obs exclude each other; gp needs br; cr needs gp, since a window's only
target that does not depend on how the blocks inside it were already refitted is the dense path's.
Training runs in fp32 on the CPU, under fp16 autocast with loss scaling on CUDA and bf16 on Gaudi.
"""
import math

import torch
from pydantic import BaseModel, ConfigDict, Field

from pruners.device import autocast, grad_scaler, step as end_step
from pruners.errors import InputError
from pruners.reconstruct_math import refit_rows
from pruners.sparsegpt_math import sparsify
from pruners.walker import Dense, Step, run_block

# The layer-wise refits by name: (dense (out, in), pruned (out, in) bool, H (in, in), percdamp) -> (out, in),
# zero where pruned. The search's fitness takes them too (FitnessSetup.update).
LAYERWISE = {
    "lr": lambda dense, pruned, H, percdamp: refit_rows(dense, ~pruned, H, percdamp),
    "obs": lambda dense, pruned, H, percdamp: sparsify(dense, H, None, percdamp=percdamp, fixed=pruned).to(dense.dtype),
}
STAGES = ("lr", "obs", "br", "gp", "cr")


class Reconstruction(BaseModel):
    """A reconstruction and its settings; the defaults are the paper code's for LLaMA (configs/llama.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stages: tuple[str, ...] = ()
    learning_rate: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(5, ge=1)
    max_grad_norm: float = Field(1000.0, gt=0)  # of the true gradients (theirs clips loss-scaled ones)
    percdamp: float = Field(0.01, ge=0)  # lr's and obs's damping of H, as SparseGPT's
    seed: int = 0  # the order of br's batches

    @classmethod
    def parse(cls, text: str | None, **settings) -> "Reconstruction":
        """'none', 'lr', 'br', 'br+gp', 'br+gp+cr', ...; an unknown or incomplete one is an InputError."""
        stages = () if text in (None, "", "none") else tuple(text.split("+"))
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise InputError(f"unknown reconstruction {'+'.join(unknown)!r}; choose none or a '+' list of {', '.join(STAGES)}")
        if {"lr", "obs"} <= set(stages):
            raise InputError("reconstructions lr and obs both refit each linear: choose one")
        if "gp" in stages and "br" not in stages:
            raise InputError("reconstruction gp changes br's target: write br+gp")
        if "cr" in stages and "gp" not in stages:
            raise InputError("reconstruction cr trains windows of blocks to the dense path: write br+gp+cr")
        return cls(stages=tuple(s for s in STAGES if s in stages), **settings)

    def label(self) -> str:
        return "+".join(self.stages) or "none"

    @property
    def layerwise(self) -> str | None:
        """The layer-wise stage (lr or obs), if any: it refits each linear from its dense weights."""
        return next((s for s in self.stages if s in LAYERWISE), None)

    @property
    def stats(self) -> tuple[str, ...]:
        return ("H",) if self.layerwise else ()

    @property
    def dense(self) -> tuple[Dense, ...]:
        """Targets the walker runs: the dense path always (the reported error is against it), and the dense
        block on the pruned inputs for br without gp."""
        return ("block", "path") if "br" in self.stages and "gp" not in self.stages else ("path",)

    @property
    def previous(self) -> bool:
        """cr's windows reach back one block."""
        return "cr" in self.stages

    def apply(self, step: Step, dense_weights: dict[str, torch.Tensor]) -> tuple[float, float]:
        """Refit after block `step.index`'s masks, its linears pruned from `dense_weights` (name -> (out, in)).
        Returns what the step adds to the row's relative errors: (this block's before refitting, the
        error of the blocks whose refit is final after this step)."""
        before = relative_error(step.block, step.inputs, step.path_targets)
        if not self.stages:  # 'none': the masks' error alone
            return before, before
        if self.layerwise:
            refit = LAYERWISE[self.layerwise]
            for name, linear in step.linears.items():
                W = linear.weight.data
                W.copy_(refit(dense_weights[name], W == 0, step.stats[name]["H"], self.percdamp))
        if "cr" in self.stages:
            return before, self.cross(step)
        if "br" in self.stages:
            self.train([step], step.inputs, step.path_targets if "gp" in self.stages else step.block_targets, step.index)
        return before, relative_error(step.block, step.inputs, step.path_targets)

    def cross(self, step: Step) -> float:
        """At block i the window [i-1, i] (block 0 alone), after which block i-1 is final; at the last block
        that block once more alone, on its inputs anew. Returns the error of the blocks made final."""
        previous = step.previous
        window = [step] if previous is None else [previous, step]
        self.train(window, window[0].inputs, step.path_targets, step.index)
        final = 0.0 if previous is None else relative_error(previous.block, previous.inputs, previous.path_targets)
        if step.last:
            inputs = step.inputs if previous is None else run_block(previous.block, previous.inputs)
            self.train([step], inputs, step.path_targets, step.index + 1)
            final += relative_error(step.block, inputs, step.path_targets)
        return final

    def train(self, window: list[Step], inputs: list, targets: list[torch.Tensor], seed: int) -> None:
        """AdamW on the MSE between `targets` and the window's blocks run in order from `inputs`, batches of
        the walker's in a seeded random order each epoch, the learning rate decaying linearly to 0 without
        warm-up. Pruned weights get no gradient, so they stay exactly zero. The blocks train in fp32 (on
        accelerators under autocast) and return to their dtype."""
        blocks = [s.block for s in window]
        dtypes = [next(b.parameters()).dtype for b in blocks]
        device = next(blocks[0].parameters()).device
        for block in blocks:
            block.float()
        params = [p for b in blocks for p in b.parameters() if p.is_floating_point()]
        flags = [p.requires_grad for p in params]
        linears = [linear for s in window for linear in s.linears.values()]
        hooks = [linear.weight.register_hook(lambda g, keep=(linear.weight != 0): g * keep) for linear in linears]
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate, betas=self.betas, weight_decay=self.weight_decay)
        total = self.epochs * len(inputs)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: max(0.0, (total - t) / total))
        scaler = grad_scaler(device)
        order = torch.Generator().manual_seed(self.seed + seed)
        try:
            for p in params:
                p.requires_grad_(True)
            with torch.enable_grad():
                for _ in range(self.epochs):
                    for b in torch.randperm(len(inputs), generator=order).tolist():
                        hidden, args, kwargs = inputs[b]
                        states = [(hidden.float(), args, kwargs)]
                        with autocast(device):
                            for block in blocks:
                                states = run_block(block, states)
                            loss = (states[0][0].float() - targets[b].float()).pow(2).mean()  # (B, T, D) -> ()
                        optimizer.zero_grad(set_to_none=True)
                        scaler.scale(loss).backward()
                        end_step(device)
                        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
                        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                        scaler.step(optimizer)
                        scaler.update()
                        schedule.step()
                        end_step(device)
        finally:
            for h in hooks:
                h.remove()
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
                p.grad = None
            for block, dtype in zip(blocks, dtypes):
                block.to(dtype)


@torch.no_grad()
def relative_error(block, inputs: list, targets: list[torch.Tensor]) -> float:
    """||f(x) - t||^2 / ||t||^2 over every calibration token: the block's outputs on `inputs` against `targets`."""
    diff = norm = 0.0
    for (out, _, _), target in zip(run_block(block, inputs), targets):
        diff += (out.double() - target.double()).pow(2).sum().item()
        norm += target.double().pow(2).sum().item()
    return diff / norm if norm > 0 else math.inf
