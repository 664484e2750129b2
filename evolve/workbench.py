"""The workbench: methods run one after another on one host, every one measured by the same scores on
the same tokens, each row a dictionary of scores."""
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import save_file

from evolve.config import Config
from evolve.host import Host, say
from evolve.scores import Score, score
from pruners import base, models
from pruners.device import peak_memory_bytes, reset_peak_memory, synchronize
from pruners.errors import InputError
from pruners.spec import Sparsity


ORDERS_FILE = "channel_orders.safetensors"


@dataclass
class Row:
    method: str
    point: str  # the sparsity point asked for: "50%", "2:4", "row-column 30%"; "-" for the dense model
    sparsity: float  # share of zeros reached, over the target linears the model has now
    removed: float = 0.0  # share of the dense model's target weights physically removed (blocks, channels)
    params: int = 0  # parameters of the whole model now
    scores: dict[str, float] = field(default_factory=dict)  # column -> value, from every score
    prune_seconds: float = 0.0
    eval_seconds: float = 0.0
    peak_memory_mb: float = 0.0
    error: str = ""


def row_point(method: base.Pruner, spec: Sparsity) -> str:
    """The point a row names: what `spec` asked for, "-" for the dense model."""
    return "-" if method.name == "dense" else spec.point()


def check_folder(path: str | Path | None, hint: str | None = None) -> None:
    """Refuse, before any work is done, a folder that cannot be made or written in (so that no pruning is
    lost to a save that fails at the end) and, with a `hint` saying how to go on, one that holds files (so
    that nothing finished is written over). The check makes the folder, writes a file in it and takes away
    what it made."""
    if not path:
        return
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{path} is a file, not a folder")
    if hint and folder.is_dir() and any(folder.iterdir()):
        raise InputError(f"folder {path} is not empty; {hint}")
    made = [p for p in (folder, *folder.parents) if not p.exists()]  # what mkdir would make, deepest first
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".evolve-write-check"
        probe.touch()
        probe.unlink()
    except OSError as error:
        raise InputError(f"cannot write to folder {path}: {error.strerror or error}") from None
    finally:
        for p in made:
            if p.is_dir():
                p.rmdir()


def scores(config: Config) -> list[Score]:
    """The configured scores, their options checked before any model loads. The tasks flags (--tasks,
    --limit, --task-text) are the tasks score's options: naming a task adds it."""
    e = config.evaluate
    if not e.tasks and (e.limit or e.task_text):  # they would be ignored: no tasks score is made
        raise InputError("--limit and --task-text (evaluate.limit, evaluate.task_text) are options of --tasks: name the tasks")
    names = list(dict.fromkeys(e.scores + (["tasks"] if e.tasks else [])))
    if stray := sorted(set(e.options) - set(names)):  # a typo's options would be ignored
        raise InputError(f"evaluate.options names {', '.join(stray)}, not a measured score ({', '.join(names)})")
    out = []
    for name in names:
        options = dict(e.options.get(name, {}))
        if name == "tasks":
            text = e.task_text or config.data.eval
            options = {"tasks": e.tasks, "limit": e.limit, "text": text, "calib": config.data.calib, **options}
        out.append(score(name, **options))
        out[-1].check()
    return out


def host(config: Config, **kwargs) -> Host:
    m, d = config.model, config.data
    return Host(m.name, m.dtype, m.device, d.calib, d.eval, d.nsamples, d.seqlen, d.seed, d.eval_tokens, d.batch_size,
                eval_skip_tokens=d.eval_skip_tokens,
                self_data=d.self_data, self_nsamples=d.self_nsamples, grad_calib=d.grad_calib, **kwargs)


class Workbench:
    def __init__(self, config: Config):
        self.config = config
        self.scores = scores(config)
        self.host = host(config)
        for s in self.scores:
            s.prepare(self.host)

    def measure(self) -> dict[str, float]:
        """Every score of the model the host holds now."""
        values = {}
        for s in self.scores:
            values.update(s.evaluate(self.host))
            synchronize(self.host.device)
        return values

    def lower_is_better(self, column: str) -> bool:
        return column in base.RECON_ERRORS or any(s.lower_is_better(column) for s in self.scores)

    def check(self, method: base.Pruner, spec: Sparsity) -> None:
        """Refuse a point the method cannot prune, on this host's model as well (the dense model: a
        compare checks every row before its first)."""
        spec = method.settle(spec)
        method.check(spec)
        method.check_model(self.host.model, spec)

    def run(self, method: base.Pruner, spec: Sparsity) -> Row:
        """Prune the dense model with `method`, then measure every score."""
        self.check(method, spec)
        spec = method.settle(spec)
        h = self.host
        gradients = {leaf: h.statistic(leaf) for leaf in method.gradient_leaves}
        h.restore()
        reset_peak_memory(h.device)
        start = time.perf_counter()
        calibrated = method.needs_calibration or spec.allocation != "uniform"  # OWL reads activations, even for magnitude
        measured = method.prune(h.model, h.calibration if calibrated else None, spec, h.device, gradients) or {}
        synchronize(h.device)
        pruned = time.perf_counter()
        values = {**self.measure(), **measured}
        targets, params = base.counts(h.model)
        return Row(
            method=method.label(),
            point=row_point(method, spec),
            sparsity=base.overall_sparsity(h.model),
            removed=1 - targets / h.dense_counts[0],
            params=params,
            scores=values,
            prune_seconds=pruned - start,
            eval_seconds=time.perf_counter() - pruned,
            peak_memory_mb=peak_memory_bytes(h.device) / 2**20,
        )

    def save(self, path: str, row: Row, orders: dict[str, torch.Tensor] | None = None) -> None:
        """The pruned model (safetensors), its tokenizer and a JSON report of what was done; with `orders`
        (--permute) also channel_orders.safetensors: each N:M linear's input order by target name, in which
        its weight's columns hold N kept weights in every group of M (the model itself keeps its layout)."""
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        models.pad_mlps(self.host.model)  # MLPs of different widths (channels) padded to the config's one
        self.host.model.save_pretrained(out, safe_serialization=True)
        self.host.tokenizer.save_pretrained(out)
        if orders:
            save_file({name: order.contiguous() for name, order in orders.items()}, out / ORDERS_FILE)
        report = {
            "result": asdict(row),
            "layer_sparsity": base.sparsity(self.host.model),
            "config": self.config.model_dump(),
            "seqlen": self.host.seqlen,
            "eval_tokens": int(self.host.windows.numel()),
        }
        (out / "report.json").write_text(json.dumps(report, indent=2))


def columns(rows: list[Row]) -> list[str]:
    """Every score column of the rows, in the order they first appear."""
    return list(dict.fromkeys(c for r in rows for c in r.scores))


def table_header(score_columns: list[str]) -> str:
    names = ["method", "point", "sparsity", "removed", "params M", *score_columns, "prune s", "eval s", "peak MB"]
    return "| " + " | ".join(names) + " |\n|" + "---|" * len(names)


def _value(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.4f}" if abs(x) < 1 else f"{x:.3f}"


def table_row(row: Row, score_columns: list[str]) -> str:
    if row.error:
        return f"| {row.method} | {row.point} | - | failed: {row.error} |" + " - |" * (len(score_columns) + 4)
    values = " | ".join(_value(row.scores.get(c)) for c in score_columns)
    return (
        f"| {row.method} | {row.point} | {row.sparsity:.4f} | {row.removed:.4f} | {row.params / 1e6:.2f} | {values} | "
        f"{row.prune_seconds:.1f} | {row.eval_seconds:.1f} | {row.peak_memory_mb:.0f} |"
    )


def table(rows: list[Row]) -> str:
    cols = columns(rows)
    return "\n".join([table_header(cols), *(table_row(r, cols) for r in rows)])
