"""Fitness of a candidate metric: perplexity after pruning with it, on tokens calibration never saw.

Two disjoint slices of the evaluation split: the fitness tokens, which the search optimises, and the
validation tokens after them, on which the best metrics are scored again (a metric fitted to its fitness
tokens loses there). Other texts (`texts`, e.g. the model's own writing) are cut the same way and scored
at every point too, so that a metric fitted to the evaluation text's domain loses on theirs.

A FitnessEvaluator keeps a host (the model on the device, its dense state, every text's windows) and the
leaves' statistics of the dense model. Per candidate it scores every target linear, masks the lowest
scores, measures perplexity and puts the dense weights back: little more than one forward pass over the
fitness tokens."""
import json
import math
import time
from dataclasses import asdict, dataclass, replace

import torch

import metrics
import pruners
from evolve.host import Host
from evolve.perplexity import window_nll
from evolve.store import WORST
from pruners import base, data, masks, models
from pruners.allocation import owl_of_scores
from pruners.reconstruct import LAYERWISE, Reconstruction
from pruners.device import synchronize
from pruners.errors import InputError
from pruners.spec import Sparsity


@dataclass(frozen=True)
class Choice:
    """What a candidate decides beside its tree, for the unstructured points: where their scores compete and
    how their sparsity spreads over the blocks. A search makes either a gene by listing several values."""

    group: str = "row"
    allocation: str = "uniform"


@dataclass(frozen=True)
class FitnessSetup:
    """Everything a fitness depends on; it travels to the workers and names the store's context."""

    model: str
    dtype: str
    device: str
    calib: str
    eval: str
    nsamples: int
    seqlen: int | None
    seed: int
    batch_size: int
    points: tuple[str, ...]  # sparsity points: "0.5" (unstructured per row) or "2:4"
    fitness_tokens: int
    early_windows: int
    recalibrate: bool
    validation_tokens: int = 0  # evaluation tokens after the fitness tokens; 0: no validation
    leaves: tuple[str, ...] = ("W", "X", "G")  # statistics gathered before the first candidate
    group: str = "row"  # where an unstructured point's scores compete: row, column, layer, or a comma list (a gene)
    allocation: str = "uniform"  # an unstructured point's sparsity per block: uniform, owl, or a comma list (a gene)
    calib_seeds: tuple[int, ...] = ()  # more calibration draws: every point once per draw, `seed`'s first
    permute: bool = False  # N:M points: each linear's inputs reordered before its groups form
    update: str = "none"  # after the mask, each linear's kept weights refitted: "lr" or "obs" (pruners.reconstruct)
    grad_calib: str | None = None  # the text G comes from; None: the calibration text
    # more texts every point is scored on, each cut as the evaluation text is (its fitness tokens, then its
    # validation tokens), so that a metric fitted to one domain's text loses on another's
    texts: tuple[str, ...] = ()
    # a metric's expression whose perplexities the fitness divides by: the fitness is then the worst ratio to it
    # over points and texts (each pair's ratios over calibration draws by geometric mean), so that a candidate
    # must beat it at every point on every text; "": the geometric mean of all the perplexities
    against: str = ""

    def specs(self) -> list[Sparsity]:
        if not self.points:
            raise InputError("a search needs a sparsity point: --pattern and --sparsity name none")
        if twice := sorted({p for p in self.points if self.points.count(p) > 1}):
            raise InputError(f"sparsity point {twice[0]} is named twice in --sparsity or --pattern")
        for text in self.texts:
            if text == self.eval or [data.short_name(t) for t in (self.eval, *self.texts)].count(data.short_name(text)) > 1:
                raise InputError(f"fitness text {text} is named twice in --fitness-texts and --eval, or shares its "
                                 "short name with another: each names a text of its own")
        if self.permute and not any(":" in p for p in self.points):
            raise InputError("--permute reorders input channels for the N:M points: add one to --pattern, e.g. 2:4")
        if all(":" in p for p in self.points):  # the metric file would name a choice no fitness point made
            for flag, value, default in (("--group", self.group, "row"), ("--allocation", self.allocation, "uniform")):
                if value != default:
                    raise InputError(f"{flag} {value} is for the unstructured points: add one to --sparsity and --pattern")
        first = self.default_choice()
        return [Sparsity.parse(p, permute=self.permute) if ":" in p else
                Sparsity.parse("unstructured", float(p), first.group, allocation=first.allocation) for p in self.points]

    @property
    def unit(self) -> str:
        """What a fitness value is, for the plots and best_metric.json."""
        return f"worst ratio to {self.against}" if self.against else "perplexity"

    def options(self) -> dict[str, list[str]]:
        """The values a candidate's Choice may take, by field; a field with several is a gene."""
        return {"group": self.group.split(","), "allocation": self.allocation.split(",")}

    def default_choice(self) -> Choice:
        """The Choice of a candidate that names none: each field's first value."""
        return Choice(**{name: values[0] for name, values in self.options().items()})

    def choice_in(self, entry: dict) -> Choice:
        """The Choice a stored search entry names, each field it lacks (runs from before that gene) the first value."""
        return replace(self.default_choice(), **{name: entry[name] for name in self.options() if name in entry})

    def context(self) -> dict:
        """What makes two fitness values comparable; device and batch size do not change a perplexity."""
        keep = asdict(self)
        for k in ("device", "batch_size", "early_windows", "validation_tokens", "leaves"):
            keep.pop(k)
        for option, default in (("group", "row"), ("allocation", "uniform"), ("calib_seeds", ()), ("permute", False),
                                 ("update", "none"), ("grad_calib", None), ("texts", ()), ("against", "")):
            if keep[option] == default:  # as every search before the option: their stores stay readable
                keep.pop(option)
        if self.against and self.texts:  # such a fitness once took each point's texts by geometric mean: apart
            keep["against_worst"] = "point and text"
        return {**keep, "semantics": metrics.SEMANTICS}

    def validation_context(self) -> dict:
        """What makes two validation values comparable: the fitness context and the validation slice."""
        return {**self.context(), "split": "validation", "validation_tokens": self.validation_tokens}


def block_of(target: str) -> int:
    """The decoder block of a target name: 3 for '3.mlp.up_proj'."""
    return int(target.split(".")[0])


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


class FitnessEvaluator:
    def __init__(self, setup: FitnessSetup, log=lambda message: None):
        self.setup = setup
        s = setup
        self.host = Host(s.model, s.dtype, s.device, s.calib, s.eval, s.nsamples, s.seqlen, s.seed,
                         s.fitness_tokens + s.validation_tokens, s.batch_size, grad_calib=s.grad_calib, on_device=True, log=log)
        self.device, self.specs = self.host.device, setup.specs()
        first = s.fitness_tokens // self.host.seqlen
        self.windows: dict[tuple[str, str], torch.Tensor] = {}  # (text, split) -> (n, seqlen)
        for text in (s.eval, *s.texts):
            cut = self.host.windows if text == s.eval else self.host.windows_of(text)
            self.windows[text, "fitness"], self.windows[text, "validation"] = cut[:first], cut[first:]
            for split, tokens in (("fitness", s.fitness_tokens), ("validation", s.validation_tokens)):
                if tokens and not len(self.windows[text, split]):
                    raise InputError(f"{split} needs at least one window of {self.host.seqlen} tokens; {tokens} {split} "
                                     f"tokens asked for, {cut.numel()} evaluation tokens of {text} cut in all")
        for spec in self.specs:
            base.check_groups(self.host.model, spec)
        self.targets = models.target_linears(self.host.model)
        self.W = {n: self.host.dense_weight(n) for n in self.targets}  # dense (out, in), on the device
        self.seeds = (s.seed, *s.calib_seeds)
        # (calibration seed, text, point, label): every point once per draw and text, a pruning read on each
        # text in turn; a later draw's labels name their seed, another text's its short name ("2:4 self32")
        self.runs = [(seed, text, spec, label + (f" {data.short_name(text)}" if text != s.eval else "")
                      + (f" seed {seed}" if seed != s.seed else ""))
                     for seed in self.seeds for spec, label in zip(self.specs, s.points) for text in (s.eval, *s.texts)]
        self._leaves: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        self._block_sparsities: dict[tuple[Sparsity, int], list[float]] = {}
        for seed in self.seeds:
            for leaf in s.leaves:
                self.leaf(leaf, seed)
            if s.update != "none" and not s.recalibrate:
                self.host.statistic("H", seed)
        # split -> label -> the `against` metric's perplexity, the denominators of a ratio fitness
        self.reference: dict[str, dict[str, float]] = {}
        if s.against:
            for split in ("fitness", "validation") if s.validation_tokens else ("fitness",):
                try:
                    points = {}
                    self.points(metrics.parse(s.against), None, split, None, points)
                    if not all(map(math.isfinite, points.values())):
                        raise FloatingPointError("a perplexity is not finite")
                except FloatingPointError as error:
                    raise InputError(f"--fitness-against {s.against}: {error}") from None
                self.reference[split] = points
                log(f"reference {s.against} on the {split} tokens: " + ", ".join(f"{k} {v:.2f}" for k, v in points.items()))

    def leaf(self, name: str, seed: int | None = None) -> dict[str, torch.Tensor]:
        """A leaf's statistic of every target from one calibration draw (None: `seed`'s), where scoring runs:
        the device (one value per weight in the model's dtype on accelerators, as W is; per input channel
        in float32). Computed on first use: the setup's leaves of every draw before the first candidate."""
        seed = self.setup.seed if seed is None else seed
        if (name, seed) not in self._leaves:
            per_weight = metrics.LEAVES[name].per == "weight" and self.device.type != "cpu"
            dtype = self.host.dtype if per_weight else torch.float32
            stat = self.W if name == "W" else self.host.statistic(name, seed)
            self._leaves[name, seed] = {n: t.to(self.device, dtype) for n, t in stat.items()}
        return self._leaves[name, seed]

    def block_sparsities(self, spec: Sparsity, seed: int) -> list[float]:
        """Each block's sparsity at a point, computed once per calibration draw: OWL's from the dense W and
        X (the pass its code makes), or the point's own everywhere."""
        if (spec, seed) not in self._block_sparsities:
            blocks = max(block_of(name) for name in self.targets) + 1
            X = self.leaf("X", seed) if spec.allocation == "owl" else None
            self._block_sparsities[spec, seed] = [spec.ratio] * blocks if X is None else owl_of_scores(
                [[self.W[n].abs() * X[n] for n in self.targets if block_of(n) == b] for b in range(blocks)], spec.ratio)
        return self._block_sparsities[spec, seed]

    def prune(self, tree: metrics.Node, spec: Sparsity, seed: int | None = None, choice: Choice | None = None) -> None:
        """The dense model pruned in place with `tree` at `spec`, its statistics from calibration draw `seed`
        (None: the setup's own), an unstructured point as `choice` says (None: as the spec says)."""
        seed = self.setup.seed if seed is None else seed
        if choice and not spec.nm:
            spec = replace(spec, group=choice.group, allocation=choice.allocation)
        if self.setup.recalibrate:  # X gathered block by block from the pruned model, as `evolve apply` does
            self.host.restore()
            reconstruct = None if self.setup.update == "none" else self.setup.update
            method = pruners.method("metric", metric=str(tree), reconstruct=reconstruct)
            gradients = {leaf: self.host.statistic(leaf, seed) for leaf in method.gradient_leaves}
            method.prune(self.host.model, self.host.calibration_of(seed), spec, self.device, gradients)
            return
        score = metrics.compile_metric(tree)
        ratios = self.block_sparsities(spec, seed)
        for name, lin in self.targets.items():
            target_spec = replace(spec, ratio=ratios[block_of(name)])
            try:
                drop = masks.mask(score(**{leaf: self.leaf(leaf, seed)[name] for leaf in tree.leaves() | {"W"}}), target_spec)
            except FloatingPointError:
                raise FloatingPointError(f"score has NaN or Inf on layer {name}") from None
            if self.setup.update != "none":  # the kept weights refitted to the dense outputs (zero where dropped)
                H = self.host.statistic("H", seed)[name].to(self.device)
                lin.weight.data.copy_(LAYERWISE[self.setup.update](self.W[name], drop, H, Reconstruction().percdamp))
            else:
                lin.weight.data.copy_(self.W[name]).masked_fill_(drop, 0)

    @torch.no_grad()
    def perplexity(self, threshold: float | None, split: str = "fitness", text: str | None = None) -> tuple[float, bool]:
        """(perplexity, stopped early) on a split's windows of a text (None: the evaluation text): stops after
        the first windows when already above `threshold`."""
        total, predicted = 0.0, 0
        windows = self.windows[text or self.setup.eval, split]
        for i, window in enumerate(windows):
            total += window_nll(self.host.model, window.unsqueeze(0).to(self.device)).item()
            predicted += window.numel() - 1
            # with as few windows as early_windows the whole point decides: its later points are not worth running
            if threshold and i + 1 == min(self.setup.early_windows, len(windows)):
                if math.exp(total / predicted) > threshold:
                    return math.exp(total / predicted), True
        return math.exp(total / predicted), False

    def evaluate(self, expression: str, thresholds: dict[str, float] | None = None, split: str = "fitness",
                 choice: Choice | None = None) -> dict:
        """{fitness, status, error, points, seconds} on the split's tokens ('fitness' or 'validation'), the
        unstructured points pruned as the candidate's `choice` says (None: the setup's first values); never
        raises for a bad candidate. `thresholds`: per point, the perplexity above which its first
        windows stop the candidate (points differ several-fold, 2:4 against 50%, so one bound cannot serve all)."""
        start = time.perf_counter()
        points, status, error = {}, "ok", ""
        try:
            stopped = self.points(metrics.parse(expression), thresholds, split, choice, points)
            status = "early" if stopped else "ok"
            fitness = self.combine(points, split, stopped)
            if not math.isfinite(fitness):
                status, error, fitness = "nan", "perplexity is not finite", WORST
        except FloatingPointError as e:
            status, error, fitness = "nan", str(e), WORST
        except Exception as e:  # a bad candidate must never stop the search
            status, error, fitness = "error", f"{type(e).__name__}: {e}".splitlines()[0], WORST
        return {
            "fitness": fitness,
            "status": status,
            "error": error,
            "points": json.dumps(points),
            "seconds": time.perf_counter() - start,
        }

    def points(self, tree: metrics.Node, thresholds: dict[str, float] | None, split: str, choice: Choice | None,
               points: dict[str, float]) -> bool:
        """Whether it stopped early: every run's pruning read on the split's windows, in order, its perplexity
        put in `points` by label (so that a candidate that fails at a later point keeps the earlier ones),
        until a point's first windows pass its threshold; the model is dense again after."""
        pruned = None
        try:
            for seed, text, spec, label in self.runs:
                if (seed, spec) != pruned:  # the next text reads the same pruned model
                    self.prune(tree, spec, seed, choice)
                    pruned = seed, spec
                points[label], stopped = self.perplexity((thresholds or {}).get(label), split, text)
                if stopped:
                    return True
            return False
        finally:
            self.host.restore()
            synchronize(self.device)

    def combine(self, points: dict[str, float], split: str, stopped: bool) -> float:
        """The fitness of a candidate's points: the geometric mean of their perplexities or, `against` a
        reference, the worst ratio to it over points and texts (a mean over texts hid a loss of a third on one,
        README); a candidate stopped early gets the worst value it reached."""
        if self.setup.against:
            points = {label: ppl / self.reference[split][label] for label, ppl in points.items()}
            if not stopped:
                return max(geometric_mean(points[label] for _, t, run, label in self.runs if (run, t) == (spec, text))
                           for spec in self.specs for text in (self.setup.eval, *self.setup.texts))
        return max(points.values()) if stopped else geometric_mean(points.values())
