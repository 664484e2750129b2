"""What each switch of the search costs on the embedded default, in one run: for the plain search and each
switch alone (comparison group per layer, the leaf D, OWL's allocation, a second calibration draw, channel
permutation at N:M, the fixed-mask update by SparseGPT's sweep), the seconds to prepare a worker's statistics and the seconds per candidate over the
same candidates at 50%, 60% and 2:4, as ratios to the plain search, with each candidate's fitness."""
import argparse
import time

import torch

from evolve import config as configuration
from evolve.fitness import FitnessEvaluator
from evolve.search import fitness_setup

CANDIDATES = ["mul(abs(W), X)", "mul(mul(sqr(W), X), abs(log(X)))", "evolve-smollm2"]
SWITCHES = {
    "plain": {},
    "group layer": {"group": "layer"},
    "leaves +D": {"leaves": ["W", "X", "G", "D"]},
    "allocation owl": {"allocation": "owl"},
    "calib seeds +1": {"calib_seeds": [1]},
    "permute": {"permute": True},
    "update obs": {"update": "obs"},
    "update lr": {"update": "lr"},  # about 20 minutes a point on 2 cores: not in the default run
}
DEFAULT = [name for name in SWITCHES if name != "update lr"]


def expression(name: str) -> str:
    from metrics.named import NAMED

    return str(NAMED[name].tree) if name in NAMED else name


def measure(switch: dict, fitness_tokens: int) -> tuple[float, float, list[float]]:
    """(seconds to prepare, mean seconds per candidate, fitness of each candidate)."""
    cfg = configuration.Config.model_validate({
        "data": {"nsamples": 16, "seqlen": 512},
        "search": {"fitness_tokens": fitness_tokens, "validation_tokens": 0, "serial": True, **switch},
    })
    start = time.perf_counter()
    evaluator = FitnessEvaluator(fitness_setup(cfg))
    prepare = time.perf_counter() - start
    seconds, fitness = [], []
    for candidate in CANDIDATES:
        result = evaluator.evaluate(expression(candidate))
        seconds.append(result["seconds"])
        fitness.append(result["fitness"])
    return prepare, sum(seconds) / len(seconds), fitness


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fitness-tokens", type=int, default=512, help="per point (the 50-generation search's)")
    parser.add_argument("--switches", default=",".join(DEFAULT), help="comma list of " + ", ".join(SWITCHES))
    args = parser.parse_args()
    torch.set_num_threads(2)
    print(f"candidates: {', '.join(CANDIDATES)}; 16 x 512 calibration, {args.fitness_tokens} fitness tokens per point")
    print("| switch | prepare s | s per candidate | ratio to plain | fitness of each candidate |\n|---|---|---|---|---|")
    base = None
    for name in ["plain", *[s for s in args.switches.split(",") if s != "plain"]]:
        prepare, per, fitness = measure(SWITCHES[name], args.fitness_tokens)
        base = base or per
        print(f"| {name} | {prepare:.1f} | {per:.2f} | {per / base:.2f} | {' / '.join(f'{f:.2f}' for f in fitness)} |",
              flush=True)


if __name__ == "__main__":
    main()
