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
"""
import argparse
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/compare-evolve-smollm2.yaml", help="model, calibration and evaluation")
    parser.add_argument("--methods", type=lambda t: t.split(";"), default=["wanda", "metric:mul(mul(sqr(W), X), abs(log(X)))"],
                        help="';' list; ratios are to the first")
    parser.add_argument("--points", type=lambda t: t.split(","), default=["0.5", "0.6", "2:4", "2:4p"])
    parser.add_argument("--batch-sizes", type=ints, default=[1, 2, 4, 8], help="the walker's samples per forward")
    parser.add_argument("--seeds", type=ints, default=[0], help="calibration sampling seeds (data.seed)")
    parser.add_argument("--also-eval", type=lambda t: t.split(","), default=[], help="other texts, e.g. text:/tmp/licenses")
    args = parser.parse_args()
    draws = [(s, b) for s in args.seeds for b in args.batch_sizes]
    specs = [point(p) for p in args.points]
    scores = {}  # (point, method, draw) -> {score column: value}
    for seed in args.seeds:
        bench = Workbench(config.load(args.config, {"data.seed": seed, "evaluate.options.perplexity.texts": args.also_eval}))
        for spec in specs:
            for m in args.methods:
                for b in args.batch_sizes:
                    row = bench.run(pruners.method(m, batch_size=b), spec)
                    scores[spec.point(), m, (seed, b)] = row.scores
                    print(f"seed {seed}, batch {b}, {spec.point()}, {m}: "
                          + ", ".join(f"{c} {v:.3f}" for c, v in row.scores.items()), flush=True)
    first = args.methods[0]
    names = ", ".join(f"seed {s} batch {b}" for s, b in draws)
    for spec in specs:
        columns = [c for c in scores[spec.point(), first, draws[0]] if c.startswith("perplexity")]
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
