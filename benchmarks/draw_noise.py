"""How far do draws of one measurement move a point? Two kinds of draw, each a repeat that should not
matter: the walker's samples per forward (`--batch-sizes`), which change only the order in which X (and H)
are summed, so nothing but float rounding; and the calibration windows (`--seeds`, data.seed), another 32
windows of the same text. A top-k mask follows rounding only where scores nearly tie; a channel permutation
(an assignment with many near-equal optima) follows it much further, and another set of windows moves every
mask. Printed per point: each method's perplexity on every text per draw, and each method's ratio to the
first method's in the same draw, with the mean over draws: the spread within which a ranking of methods at
that point is not a finding. Draws are every seed with every batch size, one model load per seed.

    python benchmarks/draw_noise.py --also-eval text:/tmp/licenses --points 0.5,0.6,2:4p
    python benchmarks/draw_noise.py --also-eval text:/tmp/licenses --seeds 0,1,2,3,4 --batch-sizes 8 --points 0.5,0.6,2:4 \
        --methods "wanda;metric:results/selftext-search20-smollm2/best_metric.json"

`--reuse LOG` reads the rows an earlier run printed (same seed, batch, point and method; its config and texts
are the caller's to match), so a method measured once is the reference of later runs without running again:
`--methods "wanda;wanda(reconstruct=obs)" --reuse results/draws-smollm2/make-run-metric.log` runs only the
second. A seed whose rows are all read loads no model. Reused values carry the log's three decimals.
"""
import argparse
import re
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pruners  # noqa: E402
from evolve import config  # noqa: E402
from evolve.workbench import Workbench  # noqa: E402
from pruners.spec import Sparsity  # noqa: E402


def point(text: str) -> Sparsity:
    """'0.6' is 60% unstructured, '2:4' the N:M pattern, '2:4p' that pattern with the channel permutation."""
    if ":" in text:
        return Sparsity.parse(text.removesuffix("p"), permute=text.endswith("p"))
    return Sparsity.parse("unstructured", float(text))


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",")]


def row_line(seed: int, batch: int, spot: str, method: str, scores: dict[str, float]) -> str:
    """A row as a run prints it and read_rows reads it back:
    'seed 0, batch 8, 50%, METHOD: perplexity 23.237, perplexity licenses 47.985'."""
    return f"seed {seed}, batch {batch}, {spot}, {method}: " + ", ".join(f"{c} {v:.3f}" for c, v in scores.items())


def read_rows(path: str) -> dict:
    """The rows a run printed (row_line): (point, method, (seed, batch)) -> {score column: value}. The method
    may hold ', ' but no ': ', a point neither."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as error:
        raise argparse.ArgumentTypeError(f"cannot read {path}: {error.strerror}") from None
    rows = {}
    for line in lines:
        if match := re.fullmatch(r"seed (\d+), batch (\d+), ([^,]+), (.+?): ((?:[^,:]+ \S+)(?:, [^,:]+ \S+)*)", line):
            seed, batch, spot, method, values = match.groups()
            pairs = (v.rpartition(" ") for v in values.split(", "))
            rows[spot, method, (int(seed), int(batch))] = {c: float(v) for c, _, v in pairs}
    if not rows:
        raise argparse.ArgumentTypeError(f"{path} holds no rows of draw_noise.py")
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/compare-evolve-smollm2.yaml", help="model, calibration and evaluation")
    parser.add_argument("--methods", type=lambda t: t.split(";"), default=["wanda", "metric:mul(mul(sqr(W), X), abs(log(X)))"],
                        help="';' list; ratios are to the first")
    parser.add_argument("--points", type=lambda t: t.split(","), default=["0.5", "0.6", "2:4", "2:4p"])
    parser.add_argument("--batch-sizes", type=ints, default=[1, 2, 4, 8], help="the walker's samples per forward")
    parser.add_argument("--seeds", type=ints, default=[0], help="calibration sampling seeds (data.seed)")
    parser.add_argument("--also-eval", type=lambda t: t.split(","), default=[], help="other texts, e.g. text:/tmp/licenses")
    parser.add_argument("--reuse", type=read_rows, action="append", default=[], metavar="LOG",
                        help="an earlier run's printed rows, read instead of run again (repeatable)")
    args = parser.parse_args()
    draws = [(s, b) for s in args.seeds for b in args.batch_sizes]
    specs = [point(p) for p in args.points]
    scores = {k: v for log in args.reuse for k, v in log.items()}  # (point, method, draw) -> {score column: value}
    for seed in args.seeds:
        todo = [(spec, m, b) for spec in specs for m in args.methods for b in args.batch_sizes
                if (spec.point(), m, (seed, b)) not in scores]
        if reused := len(specs) * len(args.methods) * len(args.batch_sizes) - len(todo):
            print(f"seed {seed}: {reused} rows reused", flush=True)
        if not todo:
            continue
        bench = Workbench(config.load(args.config, {"data.seed": seed, "evaluate.options.perplexity.texts": args.also_eval}))
        for spec, m, b in todo:
            row = bench.run(pruners.method(m, batch_size=b), spec)
            scores[spec.point(), m, (seed, b)] = row.scores
            print(row_line(seed, b, spec.point(), m, row.scores), flush=True)
    first = args.methods[0]
    names = ", ".join(f"seed {s} batch {b}" for s, b in draws)
    for spec in specs:
        columns = [c for c in scores[spec.point(), first, draws[0]] if c.startswith("perplexity")]
        for m in args.methods:
            for d in draws:
                if missing := set(columns) - set(scores[spec.point(), m, d]):
                    sys.exit(f"draw_noise.py: {m}'s row at {spec.point()}, seed {d[0]} batch {d[1]} has no "
                             f"{', '.join(sorted(missing))}: a reused log scored other texts")
        print(f"\n## {spec.point()}: draws {names}")
        print("| method | " + " | ".join(columns) + " | " + " | ".join(f"{c} / {first}'s" for c in columns) + " |")
        print("|---|" + "---|" * 2 * len(columns))
        for m in args.methods:
            values = [" / ".join(f"{scores[spec.point(), m, d][c]:.2f}" for d in draws) for c in columns]
            ratios = []
            for c in columns:
                each = [scores[spec.point(), m, d][c] / scores[spec.point(), first, d][c] - 1 for d in draws]
                ratios.append(" / ".join(f"{r:+.1%}" for r in each) + f" (mean {statistics.mean(each):+.1%})")
            print(f"| {m} | " + " | ".join(values) + " | " + " | ".join(ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
