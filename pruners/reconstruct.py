"""Reconstruction after pruning, a stage that runs on the walker's steps after any layer method's masks
(Shin et al., "Rethinking Pruning Large Language Models: Benefits and Pitfalls of Reconstruction Error
Minimization", EMNLP 2024). Every mask stays fixed: a pruned weight is exactly zero before and after.

    lr  layer-wise: each linear's kept weights, row by row, the least-squares fit to the dense linear's
        outputs on the same (pruned-path) inputs, in closed form on their Hessian
    br  block-wise: every parameter of the block but the masks (norms included, as their code trains
        them) fitted by AdamW to the dense block's outputs on the same inputs, MSE
    gp  global propagation: br's target becomes the dense model's own path (dense blocks on dense inputs)

Written joined by '+': 'br+gp', 'lr+br'. gp needs br.
"""
import math

import torch
from pydantic import BaseModel, ConfigDict, Field

from pruners.errors import InputError
from pruners.reconstruct_math import refit_rows
from pruners.walker import Dense, Step, run_block

STAGES = ("lr", "br", "gp")


class Reconstruction(BaseModel):
    """A reconstruction and its settings; the defaults are the paper code's for LLaMA (configs/llama.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    stages: tuple[str, ...] = ()
    learning_rate: float = Field(2e-4, gt=0)
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = Field(0.0, ge=0)
    epochs: int = Field(5, ge=1)
    max_grad_norm: float = Field(1000.0, gt=0)  # of the true gradients (theirs clips loss-scaled ones)
    percdamp: float = Field(0.01, ge=0)  # lr's damping of H, as SparseGPT's
    seed: int = 0  # the order of br's batches

    @classmethod
    def parse(cls, text: str | None, **settings) -> "Reconstruction":
        """'none', 'lr', 'br', 'br+gp', 'lr+br', ...; an unknown or incomplete one is an InputError."""
        stages = () if text in (None, "", "none") else tuple(text.split("+"))
        unknown = [s for s in stages if s not in STAGES]
        if unknown:
            raise InputError(f"unknown reconstruction {'+'.join(unknown)!r}; choose none or a '+' list of {', '.join(STAGES)}")
        if "gp" in stages and "br" not in stages:
            raise InputError("reconstruction gp changes br's target: write br+gp")
        return cls(stages=tuple(s for s in STAGES if s in stages), **settings)

    def label(self) -> str:
        return "+".join(self.stages) or "none"

    @property
    def stats(self) -> tuple[str, ...]:
        return ("H",) if "lr" in self.stages else ()

    @property
    def dense(self) -> tuple[Dense, ...]:
        """Targets the walker runs: the dense path always (the reported error is against it), and the dense
        block on the pruned inputs for br without gp."""
        return ("block", "path") if "br" in self.stages and "gp" not in self.stages else ("path",)

    def refit(self, step: Step, dense_weights: dict[str, torch.Tensor]) -> None:
        """Refit block `step.block`, whose linears were just pruned from `dense_weights` (name -> (out, in))."""
        if "lr" in self.stages:
            for name, linear in step.linears.items():
                W = linear.weight.data
                W.copy_(refit_rows(dense_weights[name], W != 0, step.stats[name]["H"], self.percdamp))
        if "br" in self.stages:
            self.train_block(step, step.path_targets if "gp" in self.stages else step.block_targets)

    def train_block(self, step: Step, targets: list[torch.Tensor]) -> None:
        """AdamW on the block's MSE to `targets`, batches of the walker's in a seeded random order each
        epoch, the learning rate decaying linearly to 0 without warm-up; pruned weights get no gradient,
        so they stay exactly zero."""
        block = step.block
        params = [p for p in block.parameters() if p.is_floating_point()]
        flags = [p.requires_grad for p in params]
        hooks = [linear.weight.register_hook(lambda g, keep=(linear.weight != 0): g * keep) for linear in step.linears.values()]
        optimizer = torch.optim.AdamW(params, lr=self.learning_rate, betas=self.betas, weight_decay=self.weight_decay)
        total = self.epochs * len(step.inputs)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: max(0.0, (total - t) / total))
        order = torch.Generator().manual_seed(self.seed + step.index)
        try:
            for p in params:
                p.requires_grad_(True)
            with torch.enable_grad():
                for _ in range(self.epochs):
                    for b in torch.randperm(len(step.inputs), generator=order).tolist():
                        (out, _, _), = run_block(block, [step.inputs[b]])  # (B, T, D)
                        loss = (out.float() - targets[b].float()).pow(2).mean()
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        torch.nn.utils.clip_grad_norm_(params, self.max_grad_norm)
                        optimizer.step()
                        schedule.step()
        finally:
            for h in hooks:
                h.remove()
            for p, flag in zip(params, flags):
                p.requires_grad_(flag)
                p.grad = None


@torch.no_grad()
def relative_error(block, inputs: list, targets: list[torch.Tensor]) -> float:
    """||f(x) - t||^2 / ||t||^2 over every calibration token: the block's outputs on `inputs` against `targets`."""
    diff = norm = 0.0
    for (out, _, _), target in zip(run_block(block, inputs), targets):
        diff += (out.double() - target.double()).pow(2).sum().item()
        norm += target.double().pow(2).sum().item()
    return diff / norm if norm > 0 else math.inf
