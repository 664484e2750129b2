"""The search: DEAP genetic programming over metric trees, one generation per page of this loop.

Initial trees by half-and-half; tournament selection, one-point crossover, node or subtree mutation,
elitism and a height limit. Every offspring is simplified; degenerate ones and duplicates (by canonical
key) never reach a worker, and anything the store already holds is not evaluated again. After every
generation the population and the random state are checkpointed, so `--resume` ends exactly where an
uninterrupted run ends. At the end the best metrics by fitness are scored again on validation tokens
that the fitness never saw, and the best by validation is the run's metric."""
import dataclasses
import functools
import itertools
import json
import operator
import pickle
import random
import time
from pathlib import Path

from deap import base, creator, gp, tools

import metrics
from evolve import results
from evolve.config import Config
from evolve.fitness import Choice, FitnessSetup
from evolve.store import DATABASE, WORST, Evaluation, Store
from metrics.named import tree_of
from metrics.ops import LANGUAGES, OPS
from pruners.errors import InputError

CHECKPOINT = "checkpoint.pkl"


# Constants that our language's trees draw as leaves (DEAP's ephemeral constants): scales and shifts as the
# published metrics use them (GBLM's 100 G, the 1e-3 inside log). A few values, not a continuum, so that
# canonical keys stay exact rationals and the store finds a metric again.
CONSTANTS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 10.0, 100.0)

# With a gene beside the tree (`--group row,layer`, `--allocation uniform,owl`), the share of mutations that
# change one of an individual's genes instead of its tree: the tree stays, and a choice that suits it is one
# step away.
GENE_MUTATION = 0.2


def _constant() -> float:
    return random.choice(CONSTANTS)


def primitive_set(language: str, leaves=("W", "X", "G")) -> gp.PrimitiveSet:
    pset = gp.PrimitiveSet("metric", len(leaves))
    pset.renameArguments(**{f"ARG{i}": name for i, name in enumerate(leaves)})
    for name in LANGUAGES[language]:
        pset.addPrimitive(OPS[name].torch, OPS[name].arity, name=name)
    if language == "evolve":  # Pruner-Zero's search draws no constants
        pset.addEphemeralConstant("metric_constant", _constant)
    return pset


def seed_trees(s) -> list[metrics.Node]:
    """The search config's seed metrics (named or written out) as trees of its language; InputError if not."""
    trees = []
    for text in s.seed_metrics:
        try:
            tree = tree_of(text)
        except metrics.MetricError as error:
            raise InputError(f"seed metric {text!r}: {error}") from None
        outside = sorted(op for op in tree.ops() if op not in LANGUAGES[s.language])
        if outside:
            raise InputError(f"seed metric {text!r} uses {', '.join(outside)}, not in the language {s.language!r}; "
                             f"use --language evolve")
        unread = sorted(tree.leaves() - set(s.leaves))
        if unread:
            raise InputError(f"seed metric {text!r} reads {', '.join(unread)}, not among the search's leaves "
                             f"{','.join(s.leaves)}; add it with --leaves")
        trees.append(tree)
    return trees


if not hasattr(creator, "MetricFitness"):
    creator.create("MetricFitness", base.Fitness, weights=(-1.0,))  # perplexity: lower is better
    creator.create("MetricTree", gp.PrimitiveTree, fitness=creator.MetricFitness)


def evaluation(key: str, expression: str, result: dict) -> Evaluation:
    """A worker's result as the store keeps it, with the tree as Pruner-Zero's JSON."""
    tree = json.dumps(metrics.tree.to_pruner_zero(metrics.parse(expression)))
    return Evaluation(key=key, expression=expression, tree=tree, **result)


@functools.lru_cache(maxsize=65536)
def inspect(expression: str, rows_only: bool = False) -> tuple[str, bool]:
    """(canonical key, degenerate?) of an expression: sympy work, asked for the same trees again and again.
    rows_only: the search compares inside rows only (per-row points and N:M), so per-row factors drop."""
    node = metrics.parse(expression)
    key = metrics.canonical_key(node, rows_only)
    try:
        metrics.check(node)
        return key, False
    except metrics.DegenerateMetric:
        return key, True


def against_expression(text: str) -> str:
    """The expression of the fitness's reference metric, named or written out ("" stays ""); InputError if none."""
    if not text:
        return ""
    try:
        return str(tree_of(text))
    except metrics.MetricError as error:
        raise InputError(f"--fitness-against {text!r}: {error}") from None


def fitness_setup(cfg: Config) -> FitnessSetup:
    s, d, m = cfg.search, cfg.data, cfg.model
    points = []
    for pattern in s.patterns:
        points += [f"{x:g}" for x in s.sparsities] if pattern == "unstructured" else [pattern]
    return FitnessSetup(
        model=m.name, dtype=m.dtype, device=m.device, calib=d.calib, eval=d.eval, nsamples=d.nsamples,
        seqlen=d.seqlen, seed=d.seed, batch_size=d.batch_size, points=tuple(points),
        fitness_tokens=s.fitness_tokens, early_windows=s.early_windows, recalibrate=s.recalibrate,
        validation_tokens=s.validation_tokens, leaves=tuple(s.leaves), group=s.group,
        allocation=s.allocation, permute=s.permute, update=s.update, grad_calib=d.grad_calib, texts=tuple(s.texts),
        against=against_expression(s.against),
        calib_seeds=tuple(seed for seed in dict.fromkeys(s.calib_seeds) if seed != d.seed),  # each draw once
    )


class Search:
    def __init__(self, cfg: Config, run_dir: Path, pool_factory, log=print):
        self.cfg, self.dir, self.log = cfg, run_dir, log
        self.pset = primitive_set(cfg.search.language, cfg.search.leaves)
        s = cfg.search
        tb = base.Toolbox()
        tb.register("expr", gp.genHalfAndHalf, pset=self.pset, min_=s.init_min_height, max_=s.init_max_height)
        tb.register("tree", tools.initIterate, creator.MetricTree, tb.expr)
        tb.register("select", tools.selTournament, tournsize=s.tournament)
        tb.register("mate", gp.cxOnePoint)
        tb.register("subtree", gp.genFull, min_=0, max_=2)
        tb.register("mutate", self._mutate)
        limit = gp.staticLimit(key=operator.attrgetter("height"), max_value=s.max_height)
        tb.decorate("mate", limit)
        tb.decorate("mutate", limit)
        self.tb = tb
        self.setup = fitness_setup(cfg)
        self.options = self.setup.options()
        self.genes = [name for name, values in self.options.items() if len(values) > 1]  # each individual's own
        self.store_name = DATABASE
        self.store = Store(str(run_dir / DATABASE), self.setup.context())
        self.validation = Store(str(run_dir / DATABASE), self.setup.validation_context()) if s.validation_tokens else None
        self.pool_factory = pool_factory
        self.pool = None
        self.stored = self.store.count()  # evaluations in the store, counted again when the run ends

    # --- trees ---------------------------------------------------------------------------------
    def _mutate(self, ind):
        if self.genes and random.random() < GENE_MUTATION:
            gene = random.choice(self.genes)
            value = random.choice([v for v in self.options[gene] if v != getattr(ind.choice, gene)])
            ind.choice = dataclasses.replace(ind.choice, **{gene: value})
            return (ind,)
        if random.random() < 0.5:
            return gp.mutNodeReplacement(ind, pset=self.pset)
        return gp.mutUniform(ind, expr=self.tb.subtree, pset=self.pset)

    def individual(self, node: metrics.Node, choice: Choice | None = None):
        """A DEAP tree of `node` whose unstructured points prune as `choice` says (None: the search's first values).
        Constants become terminals of the set's one type: DEAP's own from_string would type them int or
        float, and a later mutation could then find no primitive of that type."""

        def prefix(n: metrics.Node):
            if n.args or n.op in metrics.LEAVES:
                yield self.pset.mapping[n.op]
                for a in n.args:
                    yield from prefix(a)
            else:
                yield gp.Terminal(n.op, True, self.pset.ret)  # symbolic: printed as written, "0.001"

        out = creator.MetricTree(list(prefix(node)))
        out.choice = choice or self.setup.default_choice()
        return out

    def random_individual(self):
        ind = self.tb.tree()
        ind.choice = Choice(**{name: random.choice(values) if name in self.genes else values[0]
                               for name, values in self.options.items()})
        return ind

    def choices(self) -> list[Choice]:
        """Every Choice the search's genes allow (one, when there is no gene)."""
        return [Choice(**dict(zip(self.options, values))) for values in itertools.product(*self.options.values())]

    def simplified(self, ind):
        """The offspring as its simplest equivalent tree (same mask, fewer nodes); keeps a valid fitness."""
        node = metrics.simplify(metrics.parse(str(ind)))
        if str(node) == str(ind):
            return ind
        out = self.individual(node, ind.choice)
        if ind.fitness.valid:
            out.fitness.values = ind.fitness.values
        return out

    def initial_population(self) -> list:
        s = self.cfg.search
        pop, keys = [], set()
        # every seed under the first choice before any under the next: a short population keeps each tree
        candidates = [self.individual(tree, choice) for choice in self.choices() for tree in seed_trees(s)]
        for _ in range(200 * s.population):
            if len(pop) == s.population:
                break
            ind = self.simplified(candidates.pop(0) if candidates else self.random_individual())
            key, degenerate = self.inspect(ind)
            if not degenerate and key not in keys:
                keys.add(key)
                pop.append(ind)
        return pop

    # --- evaluation ------------------------------------------------------------------------------
    def evaluate(self, population: list, thresholds: dict[str, float] | None) -> dict:
        """Fitness for every individual without one; returns the generation's counters."""
        counts = {"evaluations": 0, "cache_hits": 0, "rejected": 0}
        fitness, jobs = {}, {}
        for ind in population:
            if ind.fitness.valid:
                continue
            key, degenerate = self.inspect(ind)
            ind.key = key
            if key in fitness or key in jobs:
                counts["cache_hits"] += 1
                continue
            if degenerate:
                fitness[key] = WORST
                counts["rejected"] += 1
                continue
            stored = self.store.get(key)
            if stored is not None:
                fitness[key] = stored.fitness
                counts["cache_hits"] += 1
            else:
                jobs[key] = (str(ind), ind.choice)
        if jobs:
            progress = results.progress(len(jobs), f"gen {self.generation}")

            def on_result(job, result):
                key, expression, _ = job
                self.store.put(evaluation(key, expression, result))
                fitness[key] = result["fitness"]
                counts["evaluations"] += 1
                progress.update(1)

            self.workers().map([(key, *job) for key, job in jobs.items()], thresholds, on_result)
            progress.close()
        for ind in population:
            if not ind.fitness.valid:
                ind.fitness.values = (fitness[ind.key],)
        return counts

    def inspect(self, ind) -> tuple[str, bool]:
        """(key, degenerate?) of an individual, its key exact for the comparisons it makes: a channel
        permutation sums scores over rows to order the channels, so under --permute a per-row factor counts.
        (OWL's allocation reads Wanda's scores, not the candidate's.) The key names the individual's genes,
        since one tree prunes differently under each."""
        key, degenerate = inspect(str(ind), ind.choice.group == "row" and not self.cfg.search.permute)
        return self.label(ind, key), degenerate

    def label(self, ind, text: str | None = None) -> str:
        """`text` (None: the tree), led by the individual's genes when the search has any: "layer owl: ..."."""
        text = str(ind) if text is None else text
        return " ".join(getattr(ind.choice, gene) for gene in self.genes) + f": {text}" if self.genes else text

    def workers(self):
        if self.pool is None:
            self.pool = self.pool_factory(self.setup)
        return self.pool

    def validate(self) -> None:
        """The best `validate_top` by fitness, scored again on the validation tokens at every point (stored
        like fitness, so a resumed run does not repeat them); the run folder is written again with both."""
        if self.validation is None:
            return
        if not self.seen:
            self.log("validation: no candidate was scored, nothing to validate")
            return
        jobs = {}
        for entry in results.hall_of_fame(self.seen, self.cfg.search.validate_top):
            stored = self.validation.get(entry["key"])
            if stored is None:
                jobs[entry["key"]] = (entry["expression"], self.setup.choice_in(entry))
            else:
                self.seen[entry["key"]]["validation"] = stored.fitness
        if jobs:
            progress = results.progress(len(jobs), "validation")

            def on_result(job, result):
                key, expression, _ = job
                self.validation.put(evaluation(key, expression, result))
                self.seen[key]["validation"] = result["fitness"]
                progress.update(1)

            self.workers().map([(key, *job) for key, job in jobs.items()], None, on_result, split="validation")
            progress.close()
        best = results.best(self.seen)
        self.log(f"validation: best {best['validation']:.4f} (fitness {best['fitness']:.4f})  {best['expression']}")
        results.write(self.dir, self.logbook, self.seen, self.cfg, self.setup)

    # --- the loop ----------------------------------------------------------------------------------
    def checkpoint(self, population) -> None:
        state = {
            "generation": self.generation,
            "population": [(str(ind), ind.fitness.values[0], dataclasses.asdict(ind.choice)) for ind in population],
            "random": random.getstate(),
            "seen": self.seen,
            "logbook": self.logbook,
        }
        partial = self.dir / (CHECKPOINT + ".partial")
        partial.write_bytes(pickle.dumps(state))
        partial.replace(self.dir / CHECKPOINT)

    def restore(self):
        state = pickle.loads((self.dir / CHECKPOINT).read_bytes())
        random.setstate(state["random"])
        self.generation, self.seen, self.logbook = state["generation"], state["seen"], state["logbook"]
        population = []
        for expression, value, *choice in state["population"]:  # checkpoints before the genes hold no choice
            ind = self.individual(metrics.parse(expression), Choice(**choice[0]) if choice else None)
            ind.fitness.values = (value,)
            population.append(ind)
        return population

    def remember(self, population) -> None:
        """Every distinct metric seen, with the generation it first appeared in: hall of fame and Pareto front."""
        for ind in population:
            key = self.inspect(ind)[0]
            if key not in self.seen and ind.fitness.values[0] < WORST:
                self.seen[key] = {
                    "key": key, "expression": str(ind), **dataclasses.asdict(ind.choice), "fitness": ind.fitness.values[0],
                    "complexity": len(ind), "generation": self.generation,
                }

    def record(self, population, counts, seconds) -> None:
        values = sorted(ind.fitness.values[0] for ind in population)
        best = min(population, key=lambda ind: ind.fitness.values[0])
        row = {
            "generation": self.generation, **counts, "best": values[0], "median": values[len(values) // 2],
            "best_expression": self.label(best), "seconds": round(seconds, 2),
        }
        self.logbook.append(row)
        self.log(
            f"gen {self.generation:3d}  best {row['best']:.4f}  median {row['median']:.4f}  evaluated {counts['evaluations']}"
            f"  cached {counts['cache_hits']}  rejected {counts['rejected']}  {seconds:.0f}s  {row['best_expression']}"
        )
        results.write(self.dir, self.logbook, self.seen, self.cfg, self.setup)

    def thresholds(self, population) -> dict[str, float] | None:
        """Per point, the perplexity above which a candidate counts as clearly bad after its first windows:
        `early_stop` times the best individual's perplexity at that point."""
        if not self.cfg.search.early_stop:
            return None
        valid = [ind for ind in population if ind.fitness.valid and ind.fitness.values[0] < WORST]
        if not valid:
            return None
        best = self.store.get(self.inspect(min(valid, key=lambda ind: ind.fitness.values[0]))[0])
        return {label: ppl * self.cfg.search.early_stop for label, ppl in json.loads(best.points).items()}

    def run(self, resume: bool) -> dict:
        s = self.cfg.search
        try:
            if resume and (self.dir / CHECKPOINT).is_file():
                population = self.restore()
                self.log(f"resuming after generation {self.generation} ({self.store.count()} evaluations stored)")
            else:  # a new run, or one killed during generation 0: what the store holds is not evaluated again
                if resume:
                    self.log(f"resuming in generation 0 ({self.store.count()} evaluations stored)")
                random.seed(s.seed)
                self.generation, self.seen, self.logbook = 0, {}, []
                population = self.initial_population()
                start = time.perf_counter()
                counts = self.evaluate(population, None)
                self.remember(population)
                self.record(population, counts, time.perf_counter() - start)
                self.checkpoint(population)
            while self.generation < s.generations:
                start = time.perf_counter()
                thresholds = self.thresholds(population)
                self.generation += 1
                elites = [self.tb.clone(ind) for ind in tools.selBest(population, s.elites)]
                offspring = [self.tb.clone(ind) for ind in self.tb.select(population, len(population) - s.elites)]
                offspring, rejected = self.distinct(elites, self.vary(offspring))
                population = elites + offspring
                counts = self.evaluate(population, thresholds)
                counts["rejected"] += rejected
                self.remember(population)
                self.record(population, counts, time.perf_counter() - start)
                self.checkpoint(population)
            self.validate()
        finally:
            if self.pool is not None:
                self.pool.close()
            self.stored = self.store.count()
            self.store.close()
            if self.validation is not None:
                self.validation.close()
        return results.best(self.seen) if self.seen else {}

    def distinct(self, elites: list, offspring: list, tries: int = 20) -> tuple[list, int]:
        """Simplified offspring, each made distinct from the rest of the population and non-degenerate by
        mutating it again (up to `tries` times): clones of one good metric would otherwise fill the
        population, since a duplicate costs nothing to evaluate. Returns them and how many degenerate
        offspring were rejected on the way."""
        keys = {self.inspect(ind)[0] for ind in elites}
        out, rejected = [], 0
        for ind in offspring:
            for attempt in range(tries + 1):
                ind = self.simplified(ind)
                key, degenerate = self.inspect(ind)
                rejected += degenerate
                if (key not in keys and not degenerate) or attempt == tries:
                    break
                (ind,) = self.tb.mutate(self.tb.clone(ind))
                del ind.fitness.values
            keys.add(key)
            out.append(ind)
        return out, rejected

    def vary(self, offspring: list) -> list:
        """DEAP's varAnd: crossover on pairs, then mutation, each with its probability."""
        s = self.cfg.search
        for i in range(1, len(offspring), 2):
            if random.random() < s.crossover:
                offspring[i - 1], offspring[i] = self.tb.mate(offspring[i - 1], offspring[i])
                del offspring[i - 1].fitness.values, offspring[i].fitness.values
        for i in range(len(offspring)):
            if random.random() < s.mutation:
                (offspring[i],) = self.tb.mutate(offspring[i])
                del offspring[i].fitness.values
        return offspring
