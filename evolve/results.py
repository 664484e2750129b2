"""The run folder: everything a person (or `evolve show`) needs, rewritten after every generation.

config.yaml, evaluations.sqlite, logbook.csv, hall_of_fame.csv/.json (complexity, fitness, validation
once scored, expression, comparison group and allocation, key, generation found), pareto.csv (complexity vs perplexity), best_metric.json
(for `evolve apply`: the best by validation once validated, else by fitness), fitness.png and pareto.png."""
import csv
import json
import math
import sys
from dataclasses import asdict
from pathlib import Path

import yaml

import metrics
from evolve.store import DATABASE
from pruners.errors import InputError

HALL_OF_FAME = 20
COLUMNS = ("complexity", "fitness", "validation", "expression", "group", "allocation", "key", "generation")


def progress(total: int, stage: str):
    """A bar per generation (or validation) on a terminal; nothing when the output is a file or a pipe."""
    from tqdm import tqdm

    return tqdm(total=total, desc=stage, leave=False, disable=not sys.stderr.isatty())


def hall_of_fame(seen: dict, size: int = HALL_OF_FAME) -> list[dict]:
    return sorted(seen.values(), key=lambda e: (e["fitness"], e["complexity"]))[:size]


def best(seen: dict) -> dict:
    """The run's metric: the best by validation among the validated, else the best by fitness."""
    validated = [e for e in seen.values() if "validation" in e]
    if validated:
        return min(validated, key=lambda e: (e["validation"], e["fitness"], e["complexity"]))
    return hall_of_fame(seen, 1)[0]


def pareto(seen: dict) -> list[dict]:
    """Best fitness at each complexity that beats every simpler metric, with PySR's score: the drop in
    log perplexity per added node against the previous point (higher is a better trade-off)."""
    front, best = [], math.inf
    for entry in sorted(seen.values(), key=lambda e: (e["complexity"], e["fitness"])):
        if entry["fitness"] < best:
            best = entry["fitness"]
            score = 0.0
            if front:
                prev = front[-1]
                score = (math.log(prev["fitness"]) - math.log(entry["fitness"])) / (entry["complexity"] - prev["complexity"])
            front.append({**entry, "score": score})
    return front


def _csv(path: Path, rows: list[dict], columns) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def write(run_dir: Path, logbook: list[dict], seen: dict, cfg, setup) -> None:
    if logbook:
        _csv(run_dir / "logbook.csv", logbook, logbook[0].keys())
    fame = hall_of_fame(seen)
    _csv(run_dir / "hall_of_fame.csv", fame, COLUMNS)
    (run_dir / "hall_of_fame.json").write_text(json.dumps(fame, indent=2) + "\n")
    front = pareto(seen)
    _csv(run_dir / "pareto.csv", front, (*COLUMNS, "score"))
    if fame:
        chosen = best(seen)
        scores = {setup.unit: chosen["fitness"], **({"validation": chosen["validation"]} if "validation" in chosen else {})}
        metrics.save(
            str(run_dir / "best_metric.json"), metrics.parse(chosen["expression"]), **asdict(setup.choice_in(chosen)),
            fitness={**scores, "generation": chosen["generation"], "context": asdict(setup)},
        )
    plot(run_dir, logbook, front, setup.unit)


def front_lines(front: list[dict]) -> list[str]:
    """The Pareto plot's listing, one numbered line per point. With genes beside the tree the key leads with
    them ("layer: 79b7..."), and so does the line: F compared over the layer is not F compared per row."""
    genes = [e["key"].rpartition(": ")[0] for e in front]
    return [f"{i}. {e['fitness']:.4g}  {g + ': ' if g else ''}{e['expression']}"
            for i, (e, g) in enumerate(zip(front, genes), 1)]


def plot(run_dir: Path, logbook: list[dict], front: list[dict], unit: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    if logbook:
        # the best on its own axis: its few percent of progress vanish on the median's log scale
        fig, (best_ax, median_ax) = plt.subplots(1, 2, figsize=(10, 4))
        gens = [r["generation"] for r in logbook]
        best = [r["best"] for r in logbook]
        best_ax.plot(gens, best, marker="o", markersize=3, drawstyle="steps-post")
        shown = 0
        for i in range(len(best)):  # each step of more than 0.1% (not float noise among rank-equal metrics)
            if i == 0 or best[i] < best[shown] * 0.999:
                best_ax.annotate(f"{best[i]:.4g}", (gens[i], best[i]), textcoords="offset points", xytext=(2, 4), fontsize=7)
                shown = i
        best_ax.set(xlabel="generation", ylabel=f"fitness ({unit})", title="best individual")
        medians = [r["median"] for r in logbook]
        median_ax.plot(gens, [m if math.isfinite(m) else float("nan") for m in medians], marker=".", color="tab:orange")
        median_ax.set(xlabel="generation", ylabel=f"fitness ({unit})", yscale="log", title="population median")
        for ax in (best_ax, median_ax):  # whole generations: a one-generation probe's axis read -0.04 to 0.04
            ax.set_xlim(gens[0] - 0.5, gens[-1] + 0.5)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        fig.tight_layout()
        fig.savefig(run_dir / "fitness.png", dpi=100)
        plt.close(fig)
    if front:
        # numbered points, the expressions listed beneath: long ones written beside their points overlap
        lines = front_lines(front)
        listing = 0.13 * len(lines) + 0.15  # inches of text beneath the axes
        height = listing + 0.65 + 3.0 + 0.4  # the listing, the x label, the axes, the title
        fig = plt.figure(figsize=(8, height))
        # room on the left for a log axis's widest tick labels (9x10^-1 on a narrow range) and its label
        ax = fig.add_axes((0.13, (listing + 0.65) / height, 0.82, 3.0 / height))
        ax.step([e["complexity"] for e in front], [e["fitness"] for e in front], where="post", marker="o")
        for i, e in enumerate(front, 1):
            ax.annotate(str(i), (e["complexity"], e["fitness"]), textcoords="offset points", xytext=(3, 3), fontsize=8)
        ax.set(xlabel="complexity (nodes)", ylabel=unit, yscale="log", title="Pareto front")
        fig.text(0.02, 0.02, "\n".join(line if len(line) <= 110 else line[:107] + "..." for line in lines),
                 fontsize=7, family="monospace", va="bottom")
        fig.savefig(run_dir / "pareto.png", dpi=100)
        plt.close(fig)


def save_config(run_dir: Path, cfg) -> None:
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(), sort_keys=False))


def show(run_dir: Path) -> str:
    """The hall of fame and the Pareto front as markdown, read from the run folder's CSV files alone; a file
    left out (a folder committed without its Pareto front) is said to be missing."""
    lines = []
    for title, name in (("hall of fame", "hall_of_fame.csv"), ("Pareto front", "pareto.csv")):
        if not (run_dir / name).is_file():
            lines += [f"## {title}", "", f"(no {name} in {run_dir})", ""]
            continue
        with (run_dir / name).open() as f:
            rows = list(csv.DictReader(f))
        lines += [f"## {title}", "", "| " + " | ".join(rows[0].keys() if rows else COLUMNS) + " |"]
        lines.append("|" + "---|" * len(rows[0] if rows else COLUMNS))
        lines += ["| " + " | ".join(r.values()) + " |" for r in rows]
        lines.append("")
    return "\n".join(lines)


def write_compare(folder: Path, rows: list, cfg, lower_is_better) -> None:
    """compare.md, compare.csv (a column per score), compare.json (rows and configuration) and compare.png."""
    from evolve.workbench import columns, table

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "compare.md").write_text(table(rows) + "\n")
    cols = columns(rows)
    flat = [{k: v for k, v in asdict(r).items() if k != "scores"} | {c: r.scores.get(c, "") for c in cols} for r in rows]
    _csv(folder / "compare.csv", flat, ["method", "point", "sparsity", "removed", "params", *cols, "prune_seconds", "eval_seconds",
                                        "peak_memory_mb", "error"])
    # the file a resumed compare reads its rows from: replaced whole, so a kill while writing loses no row
    partial = folder / "compare.json.partial"
    partial.write_text(json.dumps({"rows": [asdict(r) for r in rows], "config": cfg.model_dump()}, indent=2) + "\n")
    partial.replace(folder / "compare.json")
    plot_compare(folder / "compare.png", rows, cols, cfg.model.name, lower_is_better)


SEARCH_FREE = ("search.generations", "search.workers", "search.ray_address", "search.serial", "search.timeout_s")


def check_resumed(folder: Path, cfg, kind: str) -> None:
    """Refuse a resume that would change what the folder's results were measured with. A compare's table
    keeps its model, data and scores, so that its rows stay comparable; a search keeps its model, data and
    evolution, so that its store and checkpoint stay its own: only SEARCH_FREE may change (more
    generations, other workers)."""
    from evolve.config import load

    searched = (folder / DATABASE).is_file()
    if searched != (kind == "search"):
        raise InputError(f"{folder} is a {'search' if searched else 'compare'}'s folder, not a {kind}'s")
    before = load(str(folder / "config.yaml"), {})
    sections, keeps = {"compare": (("model", "data", "evaluate"), "model, data and scores"),
                       "search": (("model", "data", "search"), "model, data and evolution")}[kind]
    for section in sections:
        old, new = getattr(before, section).model_dump(), getattr(cfg, section).model_dump()
        for key in sorted(old.keys() | new.keys()):
            if old.get(key) != new.get(key) and f"{section}.{key}" not in SEARCH_FREE:
                raise InputError(f"{folder}'s {kind} ran with {section}.{key} = {old.get(key)!r}, not {new.get(key)!r}: "
                                 f"a resumed {kind} keeps its {keeps} (start another --out)")


def compare_rows(folder: Path, cfg) -> list:
    """The finished rows of a compare folder, when `cfg` measures as the folder's table did (check_resumed).
    Rows that ended in an error run again."""
    from evolve.workbench import Row

    check_resumed(folder, cfg, "compare")
    try:
        saved = json.loads((folder / "compare.json").read_text())
    except FileNotFoundError:  # stopped before its first row
        return []
    except (OSError, json.JSONDecodeError) as error:
        raise InputError(f"cannot read {folder / 'compare.json'}: {error}") from None
    return [Row(**r) for r in saved["rows"] if not r["error"]]


def bar_order(methods: list[str]) -> list[tuple[str, int, float]]:
    """(label, family, shade) per row label, in plotting order. A label "wanda +br+gp" is Wanda's masks, then
    a reconstruction: one method's rows sit side by side in the order of their stages (none, lr, ..., br,
    br+gp, br+gp+cr) as one family (its index: the method's first appearance), shaded from light (0) to
    full (1), so that a table of methods x reconstructions reads by colour. A label without a reconstruction
    is a family of its own."""
    from pruners.reconstruct import STAGES

    def split(label: str) -> tuple[str, tuple[int, ...]]:  # (method, its stages' places in STAGES)
        base, _, stages = label.rpartition(" +")
        if not base or not (stages == "none" or all(s in STAGES for s in stages.split("+"))):
            return label, ()
        return base, () if stages == "none" else tuple(STAGES.index(s) + 1 for s in stages.split("+"))

    parts = {label: split(label) for label in methods}
    bases = list(dict.fromkeys(base for base, _ in parts.values()))
    size = {base: sum(b == base for b, _ in parts.values()) for base in bases}
    out, placed = [], dict.fromkeys(bases, 0)
    for label in sorted(methods, key=lambda label: (bases.index(parts[label][0]), parts[label][1])):
        base = parts[label][0]
        out.append((label, bases.index(base), placed[base] / (size[base] - 1) if size[base] > 1 else 1.0))
        placed[base] += 1
    return out


def plot_compare(path: Path, rows: list, cols: list[str], model: str, lower_is_better) -> None:
    """One panel per score: grouped bars per sparsity point, one colour per method (its reconstructions in
    shades of it, see bar_order), the dense model as a dashed line, values on the bars, a log axis for
    perplexities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    done = [r for r in rows if not r.error]
    dense = {c: r.scores[c] for r in done if r.point == "-" for c in r.scores}
    pruned = [r for r in done if r.point != "-"]
    points = list(dict.fromkeys(r.point for r in pruned))
    bars_of = bar_order(list(dict.fromkeys(r.method for r in pruned)))
    methods = [label for label, _, _ in bars_of]
    families = [family for _, family, _ in bars_of]
    sizes = [families.count(f) for f in dict.fromkeys(families)]  # bars per family
    cols = cols or ["(no score)"]
    width = 0.8 / max(1, len(methods))
    if max(sizes, default=1) == 1:  # no reconstructions side by side
        palette = plt.get_cmap("tab10" if len(methods) <= 10 else "tab20")
        colours = [palette(j) for j in range(len(methods))]
    else:  # a family's hue, mixed with white from 60% (its lightest) to none (its fullest)
        palette = plt.get_cmap("tab10")
        colours = [tuple(1 - (0.4 + 0.6 * shade) * (1 - c) for c in palette(family % 10)[:3]) for _, family, shade in bars_of]
    ncols = min(2, len(cols))
    nrows = math.ceil(len(cols) / ncols)
    panel_width = max(4.5, 0.45 * len(points) * max(1, len(methods)) + 1.5)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_width * ncols, 3.4 * nrows + 0.8), squeeze=False,
                             layout="constrained")
    for ax, col in zip(axes.flat, cols):
        log = lower_is_better(col)
        if col in dense:
            ax.axhline(dense[col], color="black", linestyle="--", linewidth=1, label="dense")
        for j, method in enumerate(methods):
            xs, ys = [], []
            for i, point in enumerate(points):
                value = next((r.scores.get(col) for r in pruned if r.method == method and r.point == point), None)
                if value is not None and math.isfinite(value):
                    xs.append(i + (j - (len(methods) - 1) / 2) * width)
                    ys.append(value)
            bars = ax.bar(xs, ys, width, label=method, color=colours[j], edgecolor="white", linewidth=0.3)
            ax.bar_label(bars, labels=[f"{y:.3g}" if abs(y) < 1000 else f"{y:.0f}" for y in ys], fontsize=7,
                         rotation=90, padding=2)
        ax.set_xticks(range(len(points)), points)
        dense_note = f", dense {dense[col]:.3g}" if col in dense else ""
        ax.set(title=f"{col} ({'lower' if log else 'higher'} is better{dense_note})")
        if log:
            ax.set_yscale("log")
        ax.margins(y=0.3 if log else 0.2)
    for ax in axes.flat[len(cols):]:
        ax.set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    legend_cols = min(3, len(labels))
    if len(set(sizes)) == 1 and sizes[0] > 1:  # a legend column per family (the entries fill columns first)
        legend_cols = len(sizes)
        if labels[0] == "dense":  # the dense line takes a column of its own, padded to the families' height
            blank = [plt.Line2D([], [], alpha=0)] * (sizes[0] - 1)
            handles, labels = handles[:1] + blank + handles[1:], labels[:1] + [""] * len(blank) + labels[1:]
            legend_cols += 1
    fig.legend(handles, labels, loc="outside lower center", ncols=legend_cols, fontsize=8)
    fig.suptitle(f"{model}: scores after pruning, by sparsity point")
    fig.savefig(path, dpi=110)
    plt.close(fig)
