"""The protocol every pruning method implements, and the two shapes most methods take."""
from abc import abstractmethod
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict

from pruners import masks, models
from pruners.errors import InputError
from pruners.spec import Sparsity
from pruners.walker import walk


class Pruner(BaseModel):
    """A pruning method: its fields are its options (unknown keys are refused), `prune` does the work."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    patterns: ClassVar[tuple[str, ...]] = ("unstructured", "N:M")  # what it prunes (Sparsity.kind), the default first

    def check(self, spec: Sparsity) -> None:
        """Refuse a pattern this method does not prune, before any model loads."""
        if spec.kind() not in self.patterns:
            raise InputError(f"method {self.name} prunes {', '.join(self.patterns)}; not {spec.kind()}")

    @property
    def needs_calibration(self) -> bool:
        return True

    @property
    def needs_gradients(self) -> bool:
        return False

    def label(self) -> str:
        """The method's name in tables."""
        return self.name

    @abstractmethod
    def prune(self, model, calibration: torch.Tensor | None, spec: Sparsity, device: torch.device, gradients=None) -> None:
        """Prune `model` in place. `calibration` is (nsamples, seqlen) token ids; `gradients` maps target
        names ('3.mlp.up_proj') to G (out, in) for methods whose needs_gradients is true."""


class LayerPruner(Pruner):
    """A method that prunes each linear from its own weights and statistics, on the shared layer walker."""

    stats: ClassVar[tuple[str, ...]] = ()  # statistics from pruners.stats.COLLECTORS
    batch_size: int = 8  # calibration samples per forward: larger is faster on CPU, costs activation memory

    @property
    def needs_calibration(self) -> bool:
        return bool(self.stats)

    @abstractmethod
    def prune_linear(self, name: str, weight: torch.Tensor, stats: dict[str, torch.Tensor], spec: Sparsity) -> None:
        """Prune one (out, in) weight in place. `name` is the target name, e.g. '3.mlp.up_proj'."""

    def prune(self, model, calibration, spec, device, gradients=None):
        def prune_block(step):
            for name, linear in step.linears.items():
                self.prune_linear(f"{step.index}.{name}", linear.weight.data, step.stats.get(name, {}), spec)

        walk(model, calibration, device, self.stats, prune_block, self.batch_size)


class ScorePruner(LayerPruner):
    """A method that only scores weights: the lowest scores of each comparison group become zero."""

    default_group: ClassVar[str] = "row"

    @abstractmethod
    def score(self, name: str, weight: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(out, in) scores for an (out, in) weight; higher means keep."""

    def prune_linear(self, name, weight, stats, spec):
        weight[masks.mask(self.score(name, weight, stats), spec, self.default_group)] = 0


def sparsity(model) -> dict[str, float]:
    """Share of zero weights in every target linear, by target name."""
    return {name: (linear.weight == 0).float().mean().item() for name, linear in models.target_linears(model).items()}


def counts(model) -> tuple[int, int]:
    """(weights of the target linears, parameters of the whole model, tied ones once)."""
    targets = sum(linear.weight.numel() for linear in models.target_linears(model).values())
    return targets, sum(p.numel() for p in model.parameters())


def overall_sparsity(model) -> float:
    zeros = total = 0
    for linear in models.target_linears(model).values():
        zeros += (linear.weight == 0).sum().item()
        total += linear.weight.numel()
    return zeros / total
