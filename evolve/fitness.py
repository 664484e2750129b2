"""Fitness of a candidate metric: perplexity after pruning with it, on tokens calibration never saw.

A FitnessEvaluator loads the model once and keeps the dense weights, the statistics X and G (from the
dense model, computed once) and the fitness windows. Per candidate it scores every target linear,
masks the lowest scores, measures perplexity and puts the dense weights back: little more than one
forward pass over the fitness tokens."""
import json
import math
import time
from dataclasses import asdict, dataclass

import torch

import gradients
import metrics
import pruners
from evolve.perplexity import window_nll, windows
from evolve.store import WORST
from pruners import data, masks, models
from pruners.device import resolve_device, synchronize
from pruners.spec import Sparsity
from pruners.walker import walk


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

    def specs(self) -> list[Sparsity]:
        return [Sparsity.parse(p) if ":" in p else Sparsity.parse("unstructured", float(p)) for p in self.points]

    def context(self) -> dict:
        """What makes two fitness values comparable; device and batch size do not change a perplexity."""
        keep = asdict(self)
        for k in ("device", "batch_size", "early_windows"):
            keep.pop(k)
        return {**keep, "semantics": metrics.SEMANTICS}


def geometric_mean(values) -> float:
    values = list(values)
    return math.exp(sum(math.log(v) for v in values) / len(values))


def dense_input_norms(model, calibration, device, batch_size) -> dict[str, torch.Tensor]:
    """X of every target linear from the dense model: the walker with statistics and no pruning."""
    out = {}

    def record(index, _block, _targets, stats):
        for name, s in stats.items():
            out[f"{index}.{name}"] = s["X"]

    walk(model, calibration, device, ("X",), record, batch_size)
    return out


class FitnessEvaluator:
    def __init__(self, setup: FitnessSetup, log=lambda message: None):
        self.setup = setup
        self.device = resolve_device(setup.device)
        dtype = models.resolve_dtype(setup.dtype, self.device)
        calib_text, eval_text = data.texts(setup.calib, setup.eval)
        self.model, tokenizer = models.load(setup.model, dtype)
        seqlen = setup.seqlen or min(models.context_length(self.model), 2048)
        self.calibration = data.calibration_samples(tokenizer, calib_text, setup.nsamples, seqlen, setup.seed)
        self.windows = windows(data.evaluation_tokens(tokenizer, eval_text), seqlen, setup.fitness_tokens)
        self.specs = setup.specs()
        self.model.to(self.device)
        self.targets = models.target_linears(self.model)
        self.dense = {n: lin.weight.detach().clone() for n, lin in self.targets.items()}
        log("statistics: X from the dense model")
        self.X = dense_input_norms(self.model, self.calibration, self.device, setup.batch_size)
        G, _, _ = gradients.load_or_compute(self.model, setup.model, self.calibration, self.device, log=log)
        self.G = {n: g.to(self.device, dtype if self.device.type != "cpu" else torch.float32) for n, g in G.items()}
        self.G_host = G

    def restore(self) -> None:
        for name, lin in self.targets.items():
            lin.weight.data.copy_(self.dense[name])

    def prune(self, tree: metrics.Node, spec: Sparsity) -> None:
        if self.setup.recalibrate:  # X gathered block by block from the pruned model, as `evolve apply` does
            self.restore()
            pruners.method("metric", metric=str(tree)).prune(self.model, self.calibration, spec, self.device, self.G_host)
            return
        score = metrics.compile_metric(tree)
        for name, lin in self.targets.items():
            try:
                drop = masks.mask(score(W=self.dense[name], X=self.X[name], G=self.G[name]), spec, "row")
            except FloatingPointError:
                raise FloatingPointError(f"score has NaN or Inf on layer {name}") from None
            lin.weight.data.copy_(self.dense[name]).masked_fill_(drop, 0)

    @torch.no_grad()
    def perplexity(self, threshold: float | None) -> tuple[float, bool]:
        """(perplexity, stopped early): stops after the first windows when already above `threshold`."""
        total, predicted = 0.0, 0
        for i, window in enumerate(self.windows):
            total += window_nll(self.model, window.unsqueeze(0).to(self.device)).item()
            predicted += window.numel() - 1
            if threshold and i + 1 == self.setup.early_windows and i + 1 < len(self.windows):
                if math.exp(total / predicted) > threshold:
                    return math.exp(total / predicted), True
        return math.exp(total / predicted), False

    def evaluate(self, expression: str, threshold: float | None = None) -> dict:
        """{fitness, status, error, points, seconds}; never raises for a bad candidate."""
        start = time.perf_counter()
        points, status, error = {}, "ok", ""
        try:
            tree = metrics.parse(expression)
            for spec, label in zip(self.specs, self.setup.points):
                self.prune(tree, spec)
                ppl, stopped = self.perplexity(threshold)
                points[label] = ppl
                if stopped:
                    status = "early"
                    break
            fitness = max(points.values()) if status == "early" else geometric_mean(points.values())
            if not math.isfinite(fitness):
                status, error, fitness = "nan", "perplexity is not finite", WORST
        except FloatingPointError as e:
            status, error, fitness = "nan", str(e), WORST
        except Exception as e:  # a bad candidate must never stop the search
            status, error, fitness = "error", f"{type(e).__name__}: {e}".splitlines()[0], WORST
        finally:
            self.restore()
            synchronize(self.device)
        return {
            "fitness": fitness,
            "status": status,
            "error": error,
            "points": json.dumps(points),
            "seconds": time.perf_counter() - start,
        }
