"""How far does float rounding alone move a point? The walker's calibration samples per forward change only
the order in which X (and H) are summed, so pruning once per batch size gives draws of one measurement that
differ by rounding alone. A top-k mask follows rounding only where scores nearly tie; a channel permutation
(an assignment with many near-equal optima) follows it much further. Printed per point: each method's
perplexity on every text per draw, and each method's ratio to the first method's in the same draw, with the
mean over draws: the spread within which a ranking of methods at that point is not a finding.

    python benchmarks/rounding_noise.py --also-eval text:/tmp/licenses --points 0.5,0.6,2:4p
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


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/compare-evolve-smollm2.yaml", help="model, calibration and evaluation")
    parser.add_argument("--methods", type=lambda t: t.split(";"), default=["wanda", "metric:mul(mul(sqr(W), X), abs(log(X)))"],
                        help="';' list; ratios are to the first")
    parser.add_argument("--points", type=lambda t: t.split(","), default=["0.5", "0.6", "2:4", "2:4p"])
    parser.add_argument("--batch-sizes", type=lambda t: [int(b) for b in t.split(",")], default=[1, 2, 4, 8])
    parser.add_argument("--also-eval", type=lambda t: t.split(","), default=[], help="other texts, e.g. text:/tmp/licenses")
    args = parser.parse_args()
    bench = Workbench(config.load(args.config, {"evaluate.options.perplexity.texts": args.also_eval}))
    for text in args.points:
        spec = point(text)
        # (method, batch) -> {score column: value}
        scores = {(m, b): bench.run(pruners.method(m, batch_size=b), spec).scores for m in args.methods for b in args.batch_sizes}
        columns = [c for c in scores[args.methods[0], args.batch_sizes[0]] if c.startswith("perplexity")]
        first = args.methods[0]
        print(f"\n## {spec.point()}: draws are the walker's samples per forward {args.batch_sizes}")
        print("| method | " + " | ".join(columns) + " | " + " | ".join(f"{c} / {first}'s" for c in columns) + " |")
        print("|---|" + "---|" * 2 * len(columns))
        for m in args.methods:
            values = [" / ".join(f"{scores[m, b][c]:.2f}" for b in args.batch_sizes) for c in columns]
            ratios = []
            for c in columns:
                each = [scores[m, b][c] / scores[first, b][c] - 1 for b in args.batch_sizes]
                ratios.append(" / ".join(f"{r:+.1%}" for r in each) + f" (mean {statistics.mean(each):+.1%})")
            print(f"| {m} | " + " | ".join(values) + " | " + " | ".join(ratios) + " |", flush=True)


if __name__ == "__main__":
    main()
