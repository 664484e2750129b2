"""How noisy is a fitness measured on a slice of the evaluation text? Each candidate is pruned once per point
and scored on disjoint slices; what decides a search is not a candidate's own spread but the spread of its
ratio to a rival's on the same slice (the search compares candidates, always on one slice). Printed per
point and slice length: each candidate's perplexity (mean and coefficient of variation over slices), and
its ratio to Wanda's (mean, standard deviation, and how many slices rank it against Wanda the other way
than the whole text does); and the largest first-window-to-slice perplexity ratio, which bounds a safe
early stop: the numbers from which to choose the fitness tokens and the early stop."""
import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from evolve import config as configuration  # noqa: E402
from evolve.fitness import FitnessEvaluator  # noqa: E402
from evolve.perplexity import window_nll  # noqa: E402
from evolve.search import fitness_setup  # noqa: E402
from metrics.named import tree_of  # noqa: E402

CANDIDATES = ["wanda", "mul(mul(sqr(W), X), abs(log(X)))", "ria", "pruner-zero"]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", type=int, default=16, help="disjoint slices of the shortest length")
    parser.add_argument("--slice-tokens", type=int, default=1024)
    parser.add_argument("--points", default="0.5,0.6,2:4", help="comma list: sparsities and N:M patterns")
    parser.add_argument("--candidates", type=lambda t: t.split(";"), default=CANDIDATES, help="';' list, named or written")
    parser.add_argument("--config", default="configs/search-smollm2.yaml", help="model and calibration, as make run's")
    args = parser.parse_args()
    points = args.points.split(",")
    cfg = configuration.load(args.config, {
        "search.fitness_tokens": args.slices * args.slice_tokens, "search.validation_tokens": 0,
        # sparsities are the points of the unstructured pattern: without it they would be skipped
        "search.sparsities": [float(p) for p in points if ":" not in p],
        "search.patterns": ["unstructured"] * any(":" not in p for p in points) + [p for p in points if ":" in p],
    })
    evaluator = FitnessEvaluator(fitness_setup(cfg), log=print)
    windows = evaluator.windows[evaluator.setup.eval, "fitness"]  # (n, seqlen)
    per_slice = args.slice_tokens // windows.shape[1]
    print(f"{len(windows)} windows of {windows.shape[1]} tokens, slices of {per_slice} windows")
    for spec, label in zip(evaluator.specs, evaluator.setup.points):
        nll = {}  # candidate -> (n,) summed NLL per window
        for text in args.candidates:
            tree = tree_of(text)
            evaluator.prune(tree, spec)
            with torch.no_grad():
                nll[text] = torch.cat([window_nll(evaluator.host.model, w.unsqueeze(0)) for w in windows]).double()
        predicted = windows.shape[1] - 1
        whole = {t: math.exp(v.sum().item() / (len(v) * predicted)) for t, v in nll.items()}
        print(f"\n## {label}: whole text " + ", ".join(f"{t} {p:.3f}" for t, p in whole.items()))
        print("| slice tokens | slices | metric | perplexity mean | CV | ratio to wanda | its std | flips | first window / slice max |")
        print("|---|---|---|---|---|---|---|---|---|")
        size = per_slice
        while size <= len(windows) // 2:
            n = len(windows) // size
            ppl = {t: [math.exp(v[i * size:(i + 1) * size].sum().item() / (size * predicted)) for i in range(n)] for t, v in nll.items()}
            for text in args.candidates:
                ratios = [a / b for a, b in zip(ppl[text], ppl["wanda"])]
                flips = sum((r < 1) != (whole[text] < whole["wanda"]) for r in ratios) if text != "wanda" else 0
                first = max(math.exp(nll[text][i * size].item() / predicted) / ppl[text][i] for i in range(n))
                print(f"| {size * windows.shape[1]} | {n} | {text} | {statistics.mean(ppl[text]):.3f} "
                      f"| {statistics.stdev(ppl[text]) / statistics.mean(ppl[text]):.3f} | {statistics.mean(ratios):.4f} "
                      f"| {statistics.stdev(ratios):.4f} | {flips}/{n} | {first:.2f} |", flush=True)
            size *= 2


if __name__ == "__main__":
    main()
