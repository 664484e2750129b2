"""The protocol every pruning method implements, and the two shapes most methods take."""
from abc import abstractmethod
from dataclasses import replace
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, PrivateAttr, field_validator

from pruners import masks, models
from pruners.allocation import block_sparsities
from pruners.errors import InputError
from pruners.reconstruct import Reconstruction
from pruners.spec import Sparsity
from pruners.walker import walk


class Pruner(BaseModel):
    """A pruning method: its fields are its options (unknown keys are refused), `prune` does the work."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    patterns: ClassVar[tuple[str, ...]] = ("unstructured", "N:M")  # what it prunes (Sparsity.kind), the default first
    allocates: ClassVar[bool] = False  # prunes block by block, so each block may take its own sparsity (--allocation)
    # chooses its masks from scores alone, so where the scores compete (--group) and the order of the inputs
    # before N:M groups form (--permute) are choices; SparseGPT and the surgeon choose theirs as they update
    scores_only: ClassVar[bool] = False
    default_allocation: ClassVar[str] = "uniform"  # an unstructured point's spread over the blocks when none is named

    def settle(self, spec: Sparsity) -> Sparsity:
        """The point as this method prunes it: an allocation the spec leaves open (None) becomes the method's
        default at an unstructured point, uniform at any other."""
        if spec.allocation is not None:
            return spec
        return replace(spec, allocation=self.default_allocation if spec.pattern == "unstructured" else "uniform")

    def check(self, spec: Sparsity) -> None:
        """Refuse a pattern this method does not prune, before any model loads."""
        spec = self.settle(spec)
        if spec.kind() not in self.patterns:
            raise InputError(f"method {self.name} prunes {', '.join(self.patterns)}; not {spec.kind()}")
        if spec.allocation != "uniform" and not self.allocates:
            raise InputError(f"method {self.name} does not prune block by block: --allocation {spec.allocation} "
                             "is for the layer methods")
        for flag, asked in (("--group", spec.group is not None), ("--permute", spec.permute)):
            if asked and not self.scores_only:
                raise InputError(f"method {self.name} does not choose its masks from scores alone: {flag} is for the "
                                 "score methods (magnitude, wanda, metric)")

    def check_model(self, model, spec: Sparsity) -> None:
        """Refuse a point that only the loaded model can tell this method cannot prune, before any pruning."""
        check_groups(model, spec)

    @property
    def needs_calibration(self) -> bool:
        return True

    @property
    def gradient_leaves(self) -> tuple[str, ...]:
        """The statistics of the loss gradients (G, F) it prunes by, which the caller computes."""
        return ()

    def channel_orders(self) -> dict[str, torch.Tensor]:
        """The last prune's input order of each N:M linear pruned with --permute, by target name: the weight's
        columns in that order hold N kept weights in every group of M."""
        return {}

    def title(self) -> str:
        """The method's name with its choices, e.g. 'layer-drop cosine/all'."""
        return self.name

    def label(self) -> str:
        """The method's name in tables."""
        return self.title()

    @abstractmethod
    def prune(self, model, calibration: torch.Tensor | None, spec: Sparsity, device: torch.device, gradients=None) -> dict[str, float] | None:
        """Prune `model` in place. `calibration` is (nsamples, seqlen) token ids; `gradients` maps each of
        gradient_leaves to its statistic by target name ('3.mlp.up_proj'), (out, in). May return
        measurements made while pruning (column -> value), which join the row's scores."""


# What a layer method with a reconstruction measures while pruning (LayerPruner.prune): relative errors, the
# blocks' before and after refitting; tables and plots read them as lower-is-better.
RECON_ERRORS = ("recon error before", "recon error")


class LayerPruner(Pruner):
    """A method that prunes each linear from its own weights and statistics, on the shared layer walker."""

    stats: ClassVar[tuple[str, ...]] = ()  # statistics from pruners.stats.COLLECTORS
    allocates: ClassVar[bool] = True
    batch_size: int = 8  # calibration samples per forward: larger is faster on CPU, costs activation memory
    # A reconstruction after each block's masks (pruners.reconstruct: none, lr, obs, br, br+gp, br+gp+cr, ...);
    # with one, the row reports the blocks' relative error before and after it ('none': the masks' alone).
    reconstruct: str | None = None

    @field_validator("reconstruct")
    @classmethod
    def _known(cls, text):
        Reconstruction.parse(text)
        return text

    @property
    def needs_calibration(self) -> bool:
        return bool(self.stats) or self.reconstruct is not None

    def label(self) -> str:
        return self.title() if self.reconstruct is None else f"{self.title()} +{Reconstruction.parse(self.reconstruct).label()}"

    @abstractmethod
    def prune_linear(self, name: str, weight: torch.Tensor, stats: dict[str, torch.Tensor], spec: Sparsity) -> None:
        """Prune one (out, in) weight in place. `name` is the target name, e.g. '3.mlp.up_proj'."""

    def prune(self, model, calibration, spec, device, gradients=None):
        stage = None if self.reconstruct is None else Reconstruction.parse(self.reconstruct)
        errors = dict.fromkeys(RECON_ERRORS, 0.0)

        spec = self.settle(spec)
        ratios = block_sparsities(model, calibration, device, spec, self.batch_size)

        def prune_block(step):
            dense = {name: linear.weight.data.clone() for name, linear in step.linears.items()} if stage and stage.layerwise else {}
            block_spec = replace(spec, ratio=ratios[step.index])
            for name, linear in step.linears.items():
                self.prune_linear(f"{step.index}.{name}", linear.weight.data, step.stats.get(name, {}), block_spec)
            if stage:
                before, after = stage.apply(step, dense)
                for column, value in zip(RECON_ERRORS, (before, after)):
                    errors[column] += value

        collect = tuple(dict.fromkeys(self.stats + (stage.stats if stage else ())))
        walk(model, calibration, device, collect, prune_block, self.batch_size,
             dense=stage.dense if stage else (), previous=bool(stage and stage.previous))
        return errors if stage else None


class ScorePruner(LayerPruner):
    """A method that only scores weights: the lowest scores of each comparison group become zero."""

    default_group: ClassVar[str] = "row"
    scores_only: ClassVar[bool] = True
    _orders: dict = PrivateAttr(default_factory=dict)

    @abstractmethod
    def score(self, name: str, weight: torch.Tensor, stats: dict[str, torch.Tensor]) -> torch.Tensor:
        """(out, in) scores for an (out, in) weight; higher means keep."""

    def prune(self, model, calibration, spec, device, gradients=None):
        self._orders.clear()
        return super().prune(model, calibration, spec, device, gradients)

    def prune_linear(self, name, weight, stats, spec):
        pruned, order = masks.choose(self.score(name, weight, stats), spec, self.default_group)
        weight[pruned] = 0
        if order is not None:
            self._orders[name] = order.cpu()

    def channel_orders(self):
        return dict(self._orders)


def check_groups(model, spec: Sparsity) -> None:
    """Refuse an N:M point whose groups of M do not tile the inputs of every target linear."""
    if spec.nm:
        m = spec.nm[1]
        widths = sorted({linear.in_features for linear in models.target_linears(model).values()})
        if untiled := [str(w) for w in widths if w % m]:
            raise InputError(f"pattern {spec.pattern} needs every linear's input width to be a multiple of {m}; "
                             f"this model has linears of {' and '.join(untiled)} inputs")


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
