"""The search on the embedded default, in one run: seconds per candidate against one dense forward pass
over the same fitness tokens; for each language (Pruner-Zero's primitives, ours with the row and column
reductions) the share of offspring answered from the store or rejected before any evaluation over a
10-generation search, and its candidates per minute; candidates per minute with 1 and 2 Ray workers."""
import argparse
import tempfile
import time
from pathlib import Path

import torch

from evolve import config as configuration
from evolve.fitness import Choice, FitnessEvaluator
from evolve.perplexity import perplexity
from evolve.search import Search, fitness_setup
from evolve.workers import RayPool, SerialPool

CANDIDATES = ["abs(W)", "mul(abs(W), X)", "mul(abs(mul(W, W)), mms(G))", "mul(abs(W), add(X, mul(100, G)))",
              "mul(sqr(W), X)", "add(abs(W), X)", "mul(W, G)", "mul(sqrt(X), abs(W))"]


def config(fitness_tokens: int, **search) -> configuration.Config:
    return configuration.Config.model_validate({
        "data": {"nsamples": 16, "seqlen": 512},
        "search": {"fitness_tokens": fitness_tokens, "serial": True, **search},
    })


def cost_ratio(fitness_tokens: int) -> None:
    evaluator = FitnessEvaluator(fitness_setup(config(fitness_tokens)))
    start = time.perf_counter()
    windows = evaluator.windows[evaluator.setup.eval, "fitness"]  # (n, seqlen)
    perplexity(evaluator.host.model, windows, evaluator.device)
    dense = time.perf_counter() - start
    per = []
    for expression in CANDIDATES:
        start = time.perf_counter()
        evaluator.evaluate(expression)
        per.append(time.perf_counter() - start)
    mean = sum(per) / len(per)
    print(f"per candidate {mean:.2f} s against a dense forward over the same {windows.numel()} tokens "
          f"{dense:.2f} s: ratio {mean / dense:.2f}")


def store_share(fitness_tokens: int, generations: int, language: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        cfg = config(fitness_tokens, generations=generations, population=16, language=language, validation_tokens=0)
        engine = Search(cfg, Path(folder), lambda setup: SerialPool(setup, log=lambda _: None), log=lambda _: None)
        engine.run(resume=False)
        rows = engine.logbook[1:]  # offspring generations
        evaluated = sum(r["evaluations"] for r in rows)
        cached = sum(r["cache_hits"] for r in rows)
        rejected = sum(r["rejected"] for r in rows)
        new = evaluated + cached + rejected
        minutes = sum(r["seconds"] for r in rows) / 60
        print(f"{language:12s} {generations} generations: {new} new offspring, {cached / new:.0%} answered from the "
              f"store or a twin, {rejected / new:.0%} rejected before evaluation, {evaluated / new:.0%} evaluated; "
              f"{new / minutes:.1f} offspring and {evaluated / minutes:.1f} evaluations per minute")


def throughput(fitness_tokens: int) -> None:
    import ray

    setup = fitness_setup(config(fitness_tokens))
    jobs = [(str(i), e, Choice()) for i, e in enumerate(CANDIDATES)]
    for workers in (1, 2):
        pool = RayPool(setup, workers, None, 3600, log=lambda _: None)
        pool.map(jobs[:workers], None, lambda *_: None)  # warm: every worker has loaded its model
        start = time.perf_counter()
        pool.map(jobs, None, lambda *_: None)
        seconds = time.perf_counter() - start
        print(f"Ray, {workers} worker(s): {len(jobs) / seconds * 60:.1f} candidates per minute")
        pool.close()
    ray.shutdown()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--fitness-tokens", type=int, default=2048)
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--share-tokens", type=int, default=512, help="fitness tokens in the 10-generation search")
    args = parser.parse_args()
    torch.set_num_threads(2)
    cost_ratio(args.fitness_tokens)
    for language in ("pruner-zero", "evolve"):
        store_share(args.share_tokens, args.generations, language)
    throughput(args.fitness_tokens)


if __name__ == "__main__":
    main()
