"""The workbench: a model loaded once with its calibration samples and evaluation windows, so that
several methods prune the same weights and are measured on the same tokens."""
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import gradients
from evolve.config import Config
from evolve.perplexity import perplexity, windows
from pruners import base, data, models
from pruners.device import peak_memory_bytes, reset_peak_memory, resolve_device, synchronize
from pruners.errors import InputError
from pruners.spec import Sparsity


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Row:
    method: str
    pattern: str
    sparsity: float  # reached, over all target linears
    perplexity: float
    prune_seconds: float
    eval_seconds: float
    peak_memory_mb: float
    error: str = ""


def check_save_dir(path: str | None, force: bool) -> None:
    """Refuse a non-empty folder before any work is done, so that no work is lost to the refusal."""
    if path and Path(path).exists() and any(Path(path).iterdir()) and not force:
        raise InputError(f"save folder {path} is not empty; pass --force to overwrite it")


class Workbench:
    def __init__(self, config: Config):
        self.config = config
        self.device = resolve_device(config.model.device)
        dtype = models.resolve_dtype(config.model.dtype, self.device)
        models.resolve(config.model.name)  # bad names and sources fail before any loading
        calib_text, eval_text = data.texts(config.data.calib, config.data.eval)
        say(f"loading {config.model.name} ({dtype}) for {self.device}")
        self.model, self.tokenizer = models.load(config.model.name, dtype)
        self.seqlen = config.data.seqlen or min(models.context_length(self.model), 2048)
        d = config.data
        self.calibration = data.calibration_samples(self.tokenizer, calib_text, d.nsamples, self.seqlen, d.seed)
        self.windows = windows(data.evaluation_tokens(self.tokenizer, eval_text), self.seqlen, d.eval_tokens)
        # The dense weights of every target linear stay on the host, to restore between methods.
        self.dense = {n: lin.weight.detach().to("cpu", copy=True) for n, lin in models.target_linears(self.model).items()}
        self._gradients = None

    def gradients(self) -> dict[str, torch.Tensor]:
        """G of the dense model over the calibration samples: from the cache, else computed (once)."""
        if self._gradients is None:
            self.restore()
            self.model.to(self.device)
            self._gradients, path, seconds = gradients.load_or_compute(
                self.model, self.config.model.name, self.calibration, self.device, log=say
            )
            say(f"G {'computed in %.1f s' % seconds if seconds else 'read'}: {path}")
        return self._gradients

    def restore(self) -> None:
        for name, linear in models.target_linears(self.model).items():
            linear.weight.data.copy_(self.dense[name])

    def run(self, method: base.Pruner, spec: Sparsity) -> Row:
        """Prune a fresh copy of the dense weights with `method`, then measure perplexity."""
        G = self.gradients() if method.needs_gradients else None
        self.restore()
        reset_peak_memory(self.device)
        start = time.perf_counter()
        method.prune(self.model, self.calibration if method.needs_calibration else None, spec, self.device, G)
        synchronize(self.device)
        pruned = time.perf_counter()
        self.model.to(self.device)
        ppl = perplexity(self.model, self.windows, self.device)
        synchronize(self.device)
        return Row(
            method=method.label(),
            pattern=spec.pattern,
            sparsity=base.overall_sparsity(self.model),
            perplexity=ppl,
            prune_seconds=pruned - start,
            eval_seconds=time.perf_counter() - pruned,
            peak_memory_mb=peak_memory_bytes(self.device) / 2**20,
        )

    def save(self, path: str, row: Row) -> None:
        """The pruned model (safetensors), its tokenizer and a JSON report of what was done."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(out, safe_serialization=True)
        self.tokenizer.save_pretrained(out)
        report = {
            "result": asdict(row),
            "layer_sparsity": base.sparsity(self.model),
            "config": self.config.model_dump(),
            "seqlen": self.seqlen,
            "eval_tokens": int(self.windows.numel()),
        }
        (out / "report.json").write_text(json.dumps(report, indent=2))


COLUMNS = ("method", "pattern", "sparsity", "perplexity", "prune s", "eval s", "peak MB")


def table_header() -> str:
    return "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)


def table_row(row: Row) -> str:
    if row.error:
        return f"| {row.method} | {row.pattern} | - | failed: {row.error} | - | - | - |"
    return (
        f"| {row.method} | {row.pattern} | {row.sparsity:.4f} | {row.perplexity:.3f} | "
        f"{row.prune_seconds:.1f} | {row.eval_seconds:.1f} | {row.peak_memory_mb:.0f} |"
    )
