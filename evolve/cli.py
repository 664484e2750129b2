"""`evolve`: the command line. Bad input ends in one line on stderr and exit status 2."""
import argparse
import os
import shutil
import sys
import time
from pathlib import Path

# Progress bars (lm-eval's, the GGUF conversion's) are for a terminal; in a log they are lines of carriage
# returns. tqdm reads this once, when torch first imports it, so it is set before.
if not sys.stderr.isatty():
    os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

import gradients
import pruners
from evolve import config as configuration
from evolve import results
from evolve.host import read_data
from evolve.store import DATABASE
from evolve.workbench import Row, Workbench, check_folder, columns, host, row_point, say, table, table_header, table_row
from metrics import MetricError
from metrics.named import NAMED
from pruners import base, data
from pruners.device import peak_memory_bytes, reset_peak_memory, resolve_device
from pruners.errors import InputError
from pruners.reconstruct import Reconstruction
from pruners.spec import SHARES, Sparsity


class _Parser(argparse.ArgumentParser):
    """A bad flag ends in one line, as all bad input does, not in argparse's usage block."""

    def error(self, message: str):
        raise InputError(f"{message} (see {self.prog} --help)")


# The model and text flags: (flag, config key, help). Each command takes those it reads.
DATA_FLAGS = [
    ("--model", "model.name", "alias, hub id, local folder or .gguf file (default smollm2-135m)"),
    ("--dtype", "model.dtype", "auto, float32, float16, bfloat16"),
    ("--device", "model.device", "auto, cpu, cuda, hpu, mps"),
    ("--calib", "data.calib", "calibration text: pydoc, pysource:MOD+..., text:PATH, wikitext2, c4"),
    ("--eval", "data.eval", "evaluation text, same choices"),
    ("--nsamples", "data.nsamples", "calibration windows (default 128)"),
    ("--seqlen", "data.seqlen", "tokens per window (default: context, at most 2048)"),
    ("--seed", "data.seed", "calibration sampling seed (default 0)"),
    ("--eval-tokens", "data.eval_tokens", "evaluate only the first N tokens' windows"),
    ("--eval-skip-tokens", "data.eval_skip_tokens", "leave out the evaluation windows that hold the first N tokens (a search's own)"),
    ("--self-data", "data.self_data", "JSONL from evolve generate-data, mixed into calibration"),
    ("--self-nsamples", "data.self_nsamples", "how many of its samples join calibration"),
    ("--grad-calib", "data.grad_calib", "text the gradients of the leaves G and F come from, same choices (default: the calibration text)"),
]
INTS = {"--nsamples", "--seqlen", "--seed", "--eval-tokens", "--eval-skip-tokens", "--self-nsamples"}


def _data_flags(parser: argparse.ArgumentParser, without: tuple[str, ...] = ()) -> None:
    """--config and the model and text flags but those `without`: a flag a command would silently ignore
    is not offered. The two texts' sources stay together: where they are the same offline text, calibration
    reads its head and evaluation its tail, so each changes what the other reads."""
    parser.add_argument("--config", help="YAML file (see configs/); flags override it")
    for flag, key, text in DATA_FLAGS:
        if flag not in without:
            parser.add_argument(flag, dest=key, type=int if flag in INTS else str, help=text)


def _score_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tasks", dest="evaluate.tasks", type=_words,
                        help="lm-eval tasks, comma list: the shipped last-word, continuation, or e.g. boolq, hellaswag")
    parser.add_argument("--limit", dest="evaluate.limit", type=int, help="at most N examples per task")
    parser.add_argument("--task-text", dest="evaluate.task_text",
                        help="text the shipped tasks are built from: pydoc or text:PATH (default: the evaluation split)")
    parser.add_argument("--also-eval", dest="evaluate.options.perplexity.texts", type=_words,
                        help="perplexity on these sources' evaluation text too, a column each: pydoc, "
                        "pysource:MOD+..., text:PATH, wikitext2, c4")


def _prune_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sparsity", dest="prune.sparsity", type=float, help="share of weights to zero (default 0.5)")
    parser.add_argument("--pattern", dest="prune.pattern",
                        help="unstructured, N:M (e.g. 2:4), row-column, channels or blocks (default: the method's own)")
    parser.add_argument("--blocks", dest="prune.blocks", type=int, help="decoder blocks to remove (pattern blocks)")
    parser.add_argument("--group", dest="prune.group", help="unstructured comparison group: row, column (per input channel) or layer")
    parser.add_argument("--allocation", dest="prune.allocation",
                        help="unstructured sparsity per block: uniform or owl (outlier-weighted, OWL); default "
                             "uniform, or the one a metric file names")
    parser.add_argument("--permute", dest="prune.permute", action="store_true", default=None,
                        help="N:M: reorder each linear's input channels before its groups of M form (RIA's permutation)")
    parser.add_argument("--reconstruct", dest="prune.options.reconstruct",
                        help="refit after the masks: none (report the error only), lr, obs, br, br+gp, br+gp+cr, lr+br (layer methods)")
    parser.add_argument("--save", dest="save", help="folder for the pruned model (safetensors) and report.json")
    parser.add_argument("--force", dest="force", action="store_true", default=None, help="overwrite a non-empty --save folder")


def _floats(text: str) -> list[float]:
    try:
        return [float(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got {text!r}") from None


def _ints(text: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected whole numbers separated by commas, got {text!r}") from None


def _words(text: str) -> list[str]:
    """A comma list whose items may hold commas inside parentheses: 'wanda,metric:mul(W, X)'."""
    items, depth, start = [], 0, 0
    for i, char in enumerate(text + ","):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if char == "," and depth == 0:
            items.append(text[start:i].strip())
            start = i + 1
    return [x for x in items if x]


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="evolve", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)

    baseline = sub.add_parser("baseline", help="prune with one registered method and measure perplexity")
    _data_flags(baseline)
    baseline.add_argument("--method", dest="prune.method", help=f"one of {', '.join(pruners.METHODS)}, or metric:NAME|FILE")
    _prune_flags(baseline)
    drop = baseline.add_argument_group("layer-drop options")
    drop.add_argument("--criterion", dest="prune.options.criterion", help="angular (default) or cosine")
    drop.add_argument("--tokens", dest="prune.options.tokens", help="last (default) or all")
    drop.add_argument("--skip", dest="prune.options.skip", type=_ints, help="blocks kept, comma list; -1 is the last (write --skip=-1)")
    drop.add_argument("--contiguous", dest="prune.options.contiguous", action="store_true", default=None,
                      help="remove the best run of consecutive blocks (Gromov et al.)")
    channels = baseline.add_argument_group("channels options")
    channels.add_argument("--no-rearrange", dest="prune.options.rearrange", action="store_false", default=None,
                          help="keep the diagonal Fisher's choice (default: Kwon's rearrangement, as INC does)")
    channels.add_argument("--tune", dest="prune.options.tune", action="store_true", default=None,
                          help="Kwon's mask tuning: rescale the kept channels by least squares to the dense outputs")
    _score_flags(baseline)

    apply = sub.add_parser("apply", help="prune with a symbolic metric (ours or Pruner-Zero's JSON) and measure perplexity")
    apply.add_argument("metric", help=f"metric file, named metric ({', '.join(NAMED)}) or expression")
    _data_flags(apply)
    _prune_flags(apply)
    _score_flags(apply)

    evaluate = sub.add_parser("eval", help="measure a model as it is (a folder saved with --save, or any model)")
    _data_flags(evaluate, without=("--nsamples", "--seed", "--self-data", "--self-nsamples", "--grad-calib"))  # no calibration
    _score_flags(evaluate)

    generate = sub.add_parser("generate-data", help="calibration text the model writes itself, as JSONL")
    generate.add_argument("--config", help="YAML file (see configs/); flags override it")
    generate.add_argument("--model", dest="model.name", help="alias, hub id, local folder or .gguf file (default smollm2-135m)")
    generate.add_argument("--device", dest="model.device", help="auto, cpu, cuda, hpu, mps")
    generate.add_argument("--nsamples", dest="data.nsamples", type=int, help="samples to write (default 128)")
    generate.add_argument("--seqlen", dest="data.seqlen", type=int, help="tokens per sample (default: context, at most 2048)")
    generate.add_argument("--seed", dest="data.seed", type=int, help="the samples' seed (default 0)")
    generate.add_argument("--out", required=True, help="the JSONL file to write")
    generate.add_argument("--force", dest="force", action="store_true", default=None, help="overwrite --out")

    grads = sub.add_parser("gradients", help="compute G and F (from the loss gradients) once and cache them")
    _data_flags(grads, without=("--eval-tokens", "--eval-skip-tokens"))  # no evaluation

    search = sub.add_parser("search", help="discover a metric by genetic programming (resumable)")
    # a search has a seed of its own and cuts its fitness and validation tokens itself
    _data_flags(search, without=("--seed", "--eval-tokens", "--eval-skip-tokens", "--self-data", "--self-nsamples"))
    search.add_argument("--generations", dest="search.generations", type=int)
    search.add_argument("--population", dest="search.population", type=int)
    search.add_argument("--seed", dest="search.seed", type=int, help="the evolution's seed (default 0)")
    search.add_argument("--sparsity", dest="search.sparsities", type=_floats, help="fitness points, comma list (default 0.5,0.6)")
    search.add_argument("--pattern", dest="search.patterns", type=_words, help="comma list: unstructured, 2:4, 4:8 (default unstructured,2:4)")
    search.add_argument("--fitness-tokens", dest="search.fitness_tokens", type=int, help="evaluation tokens per candidate")
    search.add_argument("--validation-tokens", dest="search.validation_tokens", type=int,
                        help="the next evaluation tokens, where the best are scored again (default 4096; 0: none)")
    search.add_argument("--language", dest="search.language", help="search space: pruner-zero (its primitives, the "
                        "default) or evolve (also divrow and divcol, the row and column reductions)")
    search.add_argument("--leaves", dest="search.leaves", type=_words,
                        help="statistics the trees read, comma list (default W,X,G; F adds the Fisher over tokens, D "
                        "SparseGPT's inverse Hessian diagonal, M and V DSnoT's mean and variance of each input channel)")
    search.add_argument("--group", dest="search.group", help="where an unstructured point's scores compete: row "
                        "(default), column or layer, or a comma list (row,layer) that each individual carries one "
                        "of as a gene; the metric file names it and apply prunes by it")
    search.add_argument("--allocation", dest="search.allocation", help="an unstructured point's sparsity per block: "
                        "uniform (default) or owl, or the list uniform,owl as a gene (as --group)")
    search.add_argument("--permute", dest="search.permute", action="store_true", default=None,
                        help="N:M points: reorder each linear's input channels before its groups form")
    search.add_argument("--update", dest="search.update", help="after each candidate's mask: none (default), lr (the "
                        "kept weights refitted by least squares) or obs (SparseGPT's sweep, cheaper)")
    search.add_argument("--fitness-texts", dest="search.texts", type=_words,
                        help="more texts every point is scored on, comma list (e.g. text:data/self.jsonl, the model's "
                        "own writing from generate-data): fitness and validation tokens from each")
    search.add_argument("--fitness-against", dest="search.against",
                        help="a metric (named, e.g. wanda, or an expression): the fitness is the worst perplexity "
                        "ratio to it over points and texts, so a candidate must beat it at every point on every text")
    search.add_argument("--calib-seeds", dest="search.calib_seeds", type=_ints,
                        help="more calibration draws, comma list of seeds: every point scored once per draw")
    search.add_argument("--seed-metrics", dest="search.seed_metrics", type=_words,
                        help="named metrics or expressions put into generation 0, comma list (e.g. wanda,ria)")
    search.add_argument("--workers", dest="search.workers", type=int, help="Ray workers, each with a model (default 1)")
    search.add_argument("--ray-address", dest="search.ray_address", help="join a Ray cluster (auto or host:port)")
    search.add_argument("--serial", dest="search.serial", action="store_true", default=None, help="no Ray: evaluate here")
    search.add_argument("--out", dest="out", help="the run folder (default results/search-<time>)")
    search.add_argument("--resume", dest="resume", help="continue the run in this folder")

    show = sub.add_parser("show", help="a search's hall of fame and Pareto front, or a compare's table")
    show.add_argument("run", help="a search's or a compare's folder")

    compare = sub.add_parser("compare", help="several methods on the same model, samples and tokens, as one table")
    _data_flags(compare)
    compare.add_argument("--methods", dest="compare.methods", type=_words, help="comma list (default dense,magnitude,wanda)")
    compare.add_argument("--sparsity", dest="compare.sparsities", type=_floats, help="comma list (default 0.5)")
    compare.add_argument("--pattern", dest="compare.patterns", type=_words,
                         help="comma list: unstructured, 2:4, 4:8, row-column, channels, blocks")
    compare.add_argument("--blocks", dest="compare.blocks", type=_ints, help="pattern blocks' points, comma list")
    compare.add_argument("--reconstruct", dest="compare.reconstruct", type=_words,
                         help="comma list: every layer method once per reconstruction, e.g. none,lr,br,br+gp")
    compare.add_argument("--allocations", dest="compare.allocations", type=_words,
                         help="comma list: every unstructured point once per allocation, e.g. uniform,owl "
                              "(default: uniform, or the one a metric file names)")
    compare.add_argument("--permute", dest="compare.permute", action="store_true", default=None,
                         help="every N:M point also with each linear's input channels reordered (score methods)")
    compare.add_argument("--out", dest="out", help="folder for the table, CSV, JSON and plot (default results/compare-<time>)")
    compare.add_argument("--resume", dest="resume", help="continue the table in this folder: its rows are kept, the "
                         "missing ones (and those that ended in an error) run; flags may add methods and points")
    _score_flags(compare)
    return top


def baseline(cfg: configuration.Config) -> None:
    p = cfg.prune
    method = pruners.method(p.method, **p.options)
    pattern = p.pattern or ("blocks" if p.blocks is not None else method.patterns[0])
    spec = method.settle(Sparsity.parse(pattern, p.sparsity, p.group, p.blocks, p.allocation, bool(p.permute)))
    method.check(spec)
    check_folder(cfg.save, None if cfg.force else "pass --force to overwrite it")
    bench = Workbench(cfg)
    say(f"pruning with {method.name} at {spec.point()}")
    row = bench.run(method, spec)
    print(table([row]))
    if cfg.save:
        bench.save(cfg.save, row, method.channel_orders())
        say(f"saved to {cfg.save}")


def apply(cfg: configuration.Config, metric: str) -> None:
    cfg.prune.method = f"metric:{metric}"  # pruned in the group and allocation its file names, unless told others
    baseline(cfg)


def evaluate(cfg: configuration.Config) -> None:
    bench = Workbench(cfg)
    reset_peak_memory(bench.host.device)
    start = time.perf_counter()
    model = bench.host.model
    row = Row(cfg.model.name, "-", base.overall_sparsity(model), params=base.counts(model)[1], scores=bench.measure())
    row.eval_seconds = time.perf_counter() - start
    row.peak_memory_mb = peak_memory_bytes(bench.host.device) / 2**20
    print(table([row]))


def compute_gradients(cfg: configuration.Config) -> None:
    h = host(cfg)
    reset_peak_memory(h.device)
    start = time.perf_counter()
    G = h.statistic("G")  # computes F in the same pass, unless G's file was cached before F existed
    windows = h.calibration_of(h.seed, gradients=True)  # (n, seqlen): --grad-calib's own, else calibration's
    if not gradients.cache_path(h.name, windows, h.dtype, "F").is_file():
        h.statistic("F")  # computed only where missing: reading it would hold a second model-sized tensor set
    print(f"G and F for {len(G)} linears, {windows.shape[0]} x {windows.shape[1]} tokens: "
          f"{time.perf_counter() - start:.1f} s, peak memory {peak_memory_bytes(h.device) / 2**20:.0f} MB")


def compare_points(cfg: configuration.Config) -> list[Sparsity]:
    c, points = cfg.compare, []
    if c.blocks and "blocks" not in c.patterns:
        raise InputError("--blocks gives the points of pattern blocks: add blocks to --pattern")
    if c.permute and not any(":" in p for p in c.patterns):
        raise InputError("--permute reorders input channels for the N:M points: add one to --pattern, e.g. 2:4")
    if c.allocations and "unstructured" not in c.patterns:
        raise InputError("--allocations spreads the unstructured points' sparsity over the blocks: add unstructured to --pattern")
    for pattern in c.patterns:
        if pattern == "unstructured":
            points += [Sparsity.parse(pattern, s, allocation=a) for s in c.sparsities for a in c.allocations or [None]]
        elif pattern in SHARES:
            points += [Sparsity.parse(pattern, s) for s in c.sparsities]
        elif pattern == "blocks":
            if not c.blocks:
                raise InputError("pattern blocks needs its points: --blocks N[,N...]")
            points += [Sparsity.parse(pattern, blocks=n) for n in c.blocks]
        else:
            points += [Sparsity.parse(pattern, permute=p) for p in ([False, True] if c.permute else [False])]
    return points


def with_reconstructions(methods: list, names: list[str]) -> list:
    """Each method that takes a reconstruction, once per name; the others once."""
    for name in names:
        Reconstruction.parse(name)  # a bad name fails before any model loads
    takes = lambda m: names and "reconstruct" in type(m).model_fields
    return [variant for m in methods for variant in ([m.model_copy(update={"reconstruct": n}) for n in names] if takes(m) else [m])]


def compare(cfg: configuration.Config, out: str | None = None, resume: str | None = None) -> None:
    points = compare_points(cfg)
    keys = [name.split("(")[0] for name in cfg.compare.methods]  # what compare.options names each method by
    if stray := sorted(set(cfg.compare.options) - set(keys)):  # a typo's options would be ignored
        raise InputError(f"compare.options names {', '.join(stray)}, not a compared method ({', '.join(cfg.compare.methods)})")
    methods = [pruners.method(name, **cfg.compare.options.get(key, {})) for name, key in zip(cfg.compare.methods, keys)]
    methods = with_reconstructions(methods, cfg.compare.reconstruct)
    if not methods:
        raise InputError("--methods names no method to compare")
    plan = []  # (method, point) of every row, each checked here, before any model loads
    for method in methods:  # each method runs at the points of the patterns it prunes
        if not any(spec.kind() in method.patterns for spec in points):
            raise InputError(f"method {method.name} prunes {', '.join(method.patterns)}: none of the compared patterns")
        takes = lambda s: (s.kind() in method.patterns and (s.allocation == "uniform" or method.allocates)
                           and (not s.permute or method.scores_only))
        for spec in points[:1] if method.name == "dense" else [s for s in map(method.settle, points) if takes(s)]:
            method.check(spec)
            named = (method.label(), row_point(method, spec))
            if any((m.label(), row_point(m, s)) == named for m, s in plan):
                raise InputError(f"{' at '.join(r for r in named if r != '-')} is asked for twice "
                                 "(by --methods, --sparsity, --pattern, --allocations or --reconstruct)")
            plan.append((method, spec))
    folder = Path(resume or out or f"results/compare-{time.strftime('%Y%m%d-%H%M%S')}")
    # a folder that holds results is continued with --resume, never written over
    check_folder(folder, None if resume else f"continue it with --resume {folder}")
    rows = results.compare_rows(folder, cfg) if resume else []  # refused before any model loads if it measured otherwise
    bench, shown = Workbench(cfg), None  # bad scores and models fail here, before the folder is made
    for method, spec in plan:  # and points the loaded model cannot take (more blocks than it has)
        bench.check(method, spec)
    folder.mkdir(parents=True, exist_ok=True)
    results.save_config(folder, cfg)
    done = {(r.method, r.point) for r in rows}
    if rows:
        say(f"{len(rows)} rows kept from {folder}")
    for method, spec in plan:
        if (method.label(), row_point(method, spec)) in done:
            continue
        say(f"{method.label()} at {spec.point()}")
        try:
            row = bench.run(method, spec)
        except (FloatingPointError, RuntimeError, InputError, MetricError) as error:
            row = Row(method.label(), row_point(method, spec), float("nan"), error=str(error).splitlines()[0])
        rows.append(row)
        if columns(rows) != shown:  # a header for the first row, and again when a row brings new scores
            shown = columns(rows)  # (the dense row has no reconstruction errors, the rows after it do)
            print(table_header(shown), flush=True)
        print(table_row(row, shown), flush=True)
        results.write_compare(folder, rows, cfg, bench.lower_is_better)  # after every row: nothing finished is lost
    say(f"table, CSV, JSON and plot in {folder}")


def search(cfg: configuration.Config, out: str | None = None, resume: str | None = None) -> None:
    from evolve.search import Search, fitness_setup, seed_trees
    from evolve.workers import RayPool, SerialPool

    if resume:
        results.check_resumed(Path(resume), cfg, "search")
    d = cfg.data
    if unused := [key for key in ("eval_tokens", "eval_skip_tokens", "self_data") if getattr(d, key)]:
        raise InputError(f"a search does not use data.{unused[0]}: it cuts its evaluation text into fitness and "
                         "validation tokens, and calibrates on --calib alone")
    fitness_setup(cfg).specs()  # bad sparsity points and seed metrics fail before any folder is made
    seed_trees(cfg.search)
    if cfg.search.serial or not cfg.search.ray_address:  # the device and texts too, unless they are a cluster's
        resolve_device(cfg.model.device)  # Ray would wait for ever for a GPU this machine has not got
        read_data(cfg.model.name, cfg.data.calib, cfg.data.eval, None, 0, cfg.data.grad_calib)
        for text in cfg.search.texts:
            data.readable(text)

    run_dir = Path(resume or out or f"results/search-{time.strftime('%Y%m%d-%H%M%S')}")
    check_folder(run_dir, None if resume else f"continue it with --resume {run_dir}")
    made = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    results.save_config(run_dir, cfg)
    s = cfg.search
    factory = (lambda setup: SerialPool(setup, say)) if s.serial else (
        lambda setup: RayPool(setup, s.workers, s.ray_address, s.timeout_s, say)
    )
    engine = Search(cfg, run_dir, factory, log=lambda line: print(line, flush=True))
    for sibling in run_dir.parent.glob(f"*/{engine.store_name}"):
        if sibling.parent != run_dir and (taken := engine.store.absorb(str(sibling))):
            say(f"reusing {taken} evaluations from {sibling.parent}")
    try:
        best = engine.run(resume=bool(resume))
    except InputError:
        if not resume and not engine.stored:  # a search that could not start leaves its folder as it found it
            shutil.rmtree(run_dir)
            if not made:
                run_dir.mkdir()  # the empty folder the user gave
        raise
    if best:
        print(f"best: {best['expression']}  {engine.setup.unit} {best['fitness']:.4f}  -> {run_dir / 'best_metric.json'}")


def show(cfg: configuration.Config, run: str) -> None:
    """A search's hall of fame and Pareto front, or a compare's table, read from the folder alone."""
    folder = Path(run)
    if (folder / "compare.md").is_file():
        print((folder / "compare.md").read_text(), end="")
    elif (folder / "hall_of_fame.csv").is_file():
        print(results.show(folder))
    elif (folder / DATABASE).is_file():
        raise InputError(f"{run} is a search that has finished no generation yet: its hall of fame comes after "
                         f"generation 0 (a stopped one goes on with evolve search --resume {run})")
    else:
        raise InputError(f"{run} is neither a search's nor a compare's folder (no hall_of_fame.csv, no compare.md)")


def generate_data(cfg: configuration.Config, out: str) -> None:
    import json
    import re

    from pruners import data, models

    path = Path(out)
    if path.is_dir():
        raise InputError(f"{out} is a folder; --out names the JSONL file to write")
    if path.exists() and not cfg.force:
        raise InputError(f"{out} exists; pass --force to overwrite it")
    check_folder(path.parent)
    device = resolve_device(cfg.model.device)
    model, tokenizer = models.load(cfg.model.name, models.resolve_dtype(cfg.model.dtype, device))
    seqlen, n, seed = models.window_length(model, cfg.data.seqlen), cfg.data.nsamples, cfg.data.seed
    # Samples go to a side file as they come (minutes apart on a CPU), named by what they depend on, so
    # that the same command after a kill keeps them; a torn last line is dropped.
    partial = path.with_name(f"{path.name}.{re.sub(r'[^A-Za-z0-9.-]', '_', cfg.model.name)}-seed{seed}-{seqlen}.partial")
    kept = []
    for line in partial.read_text().splitlines()[:n] if partial.exists() else []:
        try:
            if len(json.loads(line)["ids"]) == seqlen:
                kept.append(line + "\n")
                continue
        except (ValueError, KeyError, TypeError):
            pass
        break
    say(f"writing {n} samples of {seqlen} tokens (seed {seed}) to {out}"
        + (f", {len(kept)} kept from {partial}" if kept else ""))
    start = time.perf_counter()
    path.parent.mkdir(parents=True, exist_ok=True)
    with partial.open("w") as file:
        file.writelines(kept)
        samples = data.generate_self_data(model.to(device), tokenizer, n, seqlen, seed, device, skip=len(kept))
        for i, sample in enumerate(samples, start=len(kept) + 1):
            file.write(json.dumps(sample) + "\n")
            file.flush()
            say(f"sample {i}/{n} ({time.perf_counter() - start:.0f} s)")
    partial.replace(path)


COMMANDS = {
    "generate-data": generate_data,
    "baseline": baseline, "apply": apply, "eval": evaluate, "gradients": compute_gradients, "compare": compare, "search": search, "show": show,
}


def _run_config(run: str) -> str:
    folder = Path(run)
    if not (folder / "config.yaml").is_file():  # written before anything else: a kill at any moment resumes
        raise InputError(f"{run} is not a run folder to resume (no config.yaml)")
    return str(folder / "config.yaml")


def main(argv: list[str] | None = None) -> int:
    try:
        parsed, extra = parser().parse_known_args(argv)
        args = vars(parsed)
        command, path = args.pop("command"), args.pop("config", None)
        if extra:  # argparse would blame the top parser; the command's own help lists what it takes
            raise InputError(f"unrecognized arguments: {' '.join(extra)} (see evolve {command} --help)")
        positional = {k: args.pop(k) for k in [k for k in args if "." not in k and k not in ("save", "force")]}
        if positional.get("resume") and positional.get("out"):  # the run would go on in one and ignore the other
            raise InputError("--resume goes on in the folder it names; leave out --out")
        if positional.get("resume") and path:  # the run's own config.yaml would replace it, silently
            raise InputError("--resume reads the run's own config.yaml; leave out --config (flags still apply)")
        if positional.get("resume"):
            path = _run_config(positional["resume"])
        cfg = configuration.load(path, args)
        section = {"compare": cfg.compare, "search": cfg.search}.get(command)  # N:M points fix their sparsity
        if section and args.get(f"{command}.sparsities") and not set(section.patterns) & set(SHARES):
            raise InputError(f"--sparsity gives the points of {', '.join(SHARES)}; --pattern names none of them")
        torch.manual_seed(cfg.data.seed)
        COMMANDS[command](cfg, **positional)
    except (InputError, MetricError) as error:
        print(f"evolve: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a disk that fills or a folder taken away while working: one line too
        print(f"evolve: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("evolve: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
