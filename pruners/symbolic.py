from functools import cached_property
from typing import ClassVar

from pydantic import ConfigDict, PrivateAttr

import metrics
from metrics.named import NAMED
from pruners.base import ScorePruner
from pruners.errors import InputError
from pruners.stats import GRADIENT_LEAVES, WALKED_LEAVES, rescale
from pruners.spec import ALLOCATIONS, GROUPS


def read_metric(text: str) -> metrics.Node:
    """A named metric (wanda, pruner-zero, ...), a metric file (ours or Pruner-Zero's) or an expression."""
    try:
        return NAMED[text].tree if text in NAMED else metrics.load(text)
    except metrics.MetricError as error:
        raise InputError(str(error)) from None


class Metric(ScorePruner):
    """Prune with a symbolic metric over the language's leaves, unstructured per output row or N:M.

    The metric is simplified first (it prunes the same weights, cheaper) and refused when degenerate.
    G and F, the leaves from the loss gradients, come from the gradients package as an argument. A metric a
    search found (its file, or a named one) sees X, D, G and F on the scale of the calibration it was found with
    (stats.rescale), whatever the samples and window length pruning calibrates with now: W^2 X |log X|
    found on windows of 512 tokens, pruning on windows of 256 unscaled, ranked other weights and lost to
    Wanda by 18% where it had beaten it.

        method: metric
        options: {metric: "mul(abs(W), X)"}
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str] = "metric"
    metric: str  # a named metric, a metric file or an expression
    _scorer = PrivateAttr(None)
    _gradients: dict = PrivateAttr(default_factory=dict)
    _scales: dict = PrivateAttr(default_factory=dict)

    @cached_property
    def tree(self) -> metrics.Node:
        try:
            return metrics.check(read_metric(self.metric))
        except metrics.DegenerateMetric as error:
            raise InputError(str(error)) from None

    def _chosen(self, gene: str, known: tuple[str, ...], default: str) -> str:
        """What the search that found the metric chose beside the tree, as its file or its named entry says;
        `default` where it names none."""
        value = (NAMED[self.metric].choices.get(gene, default) if self.metric in NAMED
                 else metrics.choice_of(self.metric, gene, default))
        if value not in known:
            raise InputError(f"{self.metric}: unknown {gene} {value!r}; a metric file names {', '.join(known)}")
        return value

    @cached_property
    def default_group(self) -> str:
        """Per row, unless the metric (a file or a named one) was found by a search comparing in another group."""
        return self._chosen("group", GROUPS, "row")

    @cached_property
    def default_allocation(self) -> str:
        """Uniform, unless the metric file was found by a search spreading sparsity otherwise (Pruner.settle)."""
        return self._chosen("allocation", ALLOCATIONS, "uniform")

    @cached_property
    def found_at(self) -> tuple[int, int] | None:
        """(samples, tokens per sample) of the calibration the metric was found with; None: not known."""
        return NAMED[self.metric].calibration if self.metric in NAMED else metrics.calibration_of(self.metric)

    def check(self, spec):
        """Also refuse a missing metric file, a bad expression or a degenerate metric before any model loads."""
        self.tree
        super().check(spec)

    def title(self) -> str:
        return f"metric:{self.metric}"

    @property
    def needs_calibration(self) -> bool:
        """Also for a found metric over W, G and F alone: its leaves' scale follows the calibration's shape
        (the walker runs no calibration for a method without statistics)."""
        return super().needs_calibration or bool(self.found_at and self.gradient_leaves)

    @property
    def stats(self) -> tuple[str, ...]:
        return tuple(WALKED_LEAVES[leaf][0] for leaf in sorted(self.tree.leaves()) if leaf in WALKED_LEAVES)

    @property
    def gradient_leaves(self) -> tuple[str, ...]:
        return tuple(leaf for leaf in GRADIENT_LEAVES if leaf in self.tree.leaves())

    def prune(self, model, calibration, spec, device, gradients=None):
        if missing := [leaf for leaf in self.gradient_leaves if leaf not in (gradients or {})]:
            raise InputError(f"metric {self.metric} uses {' and '.join(missing)}: compute it first (evolve gradients)")
        self._scorer = metrics.compile_metric(self.tree)
        self._gradients = gradients or {}
        found = rescale(self.found_at, tuple(calibration.shape)) if self.found_at else {}
        self._scales = {leaf: factor for leaf, factor in found.items() if factor != 1.0}  # none in a search
        return super().prune(model, calibration, spec, device, gradients)

    def score(self, name, weight, stats):
        walked = self.tree.leaves() & WALKED_LEAVES.keys()
        leaves = {leaf: WALKED_LEAVES[leaf][1](stats[WALKED_LEAVES[leaf][0]]) for leaf in walked}
        leaves |= {leaf: by_name[name].to(weight.device) for leaf, by_name in self._gradients.items()}
        for leaf in self._scales.keys() & leaves.keys():  # a new tensor: the host's statistics stay as gathered
            leaves[leaf] = leaves[leaf] * self._scales[leaf]
        return self._scorer(W=weight, **leaves)

    def prune_linear(self, name, weight, stats, spec):
        try:
            super().prune_linear(name, weight, stats, spec)
        except FloatingPointError:
            raise InputError(f"metric {self.tree} yields NaN or Inf on layer {name}") from None
