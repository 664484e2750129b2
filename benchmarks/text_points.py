"""Each metric's perplexity at every point of make run's fitness on the first tokens of one text, pruned as the
fitness prunes (X, G and F from the configuration's calibration windows, drawn from the whole calibration text
when the text is another): how a text other than the fitness's would rank the metrics, point by point. Printed:
the fitness (geometric mean over the points) and each point's perplexity with its ratio to the first metric's.

    python benchmarks/text_points.py --text text:results/reconstruct-smollm2-self-32x512/self32.jsonl"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evolve import config as configuration  # noqa: E402
from evolve.fitness import FitnessEvaluator  # noqa: E402
from evolve.search import fitness_setup  # noqa: E402
from metrics.named import tree_of  # noqa: E402

METRICS = ["wanda", "mul(mul(sqr(W), X), abs(log(X)))", "mul(mul(F, divcol(sqr(W), W)), abs(log(X)))",
           "mul(mul(sqr(W), F), abs(log(X)))", "mul(mul(sqr(W), sqrt(mul(X, F))), abs(log(X)))", "ria"]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--text", required=True, help="the text to score on: text:PATH, pydoc, wikitext2, c4")
    parser.add_argument("--tokens", type=int, default=4096, help="its first tokens")
    parser.add_argument("--metrics", type=lambda t: t.split(";"), default=METRICS, help="';' list, named or written; "
                        "the first is the ratios' denominator")
    parser.add_argument("--config", default="configs/search-smollm2.yaml", help="model, calibration and points, as make run's")
    parser.add_argument("--recalibrate", action="store_true", help="X gathered block by block on the pruned path, as "
                        "evolve apply and compare prune, instead of once from the dense model")
    args = parser.parse_args()
    cfg = configuration.load(args.config, {"data.eval": args.text, "search.fitness_tokens": args.tokens,
                                           "search.validation_tokens": 0, "search.texts": [],
                                           "search.recalibrate": args.recalibrate})
    evaluator = FitnessEvaluator(fitness_setup(cfg), log=print)
    points = evaluator.setup.points
    print("| metric | fitness | " + " | ".join(points) + " |")
    print("|---|---|" + "---|" * len(points))
    first = None
    for text in args.metrics:
        result = evaluator.evaluate(str(tree_of(text)))
        ppl = json.loads(result["points"])
        first = first or ppl
        print(f"| {text} | {result['fitness']:.2f} | "
              + " | ".join(f"{ppl[p]:.2f} ({100 * (ppl[p] / first[p] - 1):+.1f}%)" for p in points) + " |", flush=True)


if __name__ == "__main__":
    main()
