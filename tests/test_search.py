import csv
import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import evolve.fitness
import metrics
from evolve import config as configuration
from evolve.fitness import Choice
from evolve.results import front_lines
from evolve.search import Search
from evolve.store import DATABASE, WORST, Store
from evolve.workers import SerialPool


def search_config(model_dir: str, **search) -> configuration.Config:
    return configuration.Config.model_validate({
        "model": {"name": model_dir},
        "data": {"nsamples": 4, "seqlen": 32},
        "search": {"population": 6, "generations": 3, "fitness_tokens": 128, "serial": True, **search},
    })


def run(cfg, folder: Path, pool_factory=None) -> Search:
    folder.mkdir(parents=True, exist_ok=True)
    engine = Search(cfg, folder, pool_factory or (lambda setup: SerialPool(setup, log=lambda _: None)), log=lambda _: None)
    engine.run(resume=False)
    return engine


def hall(folder: Path) -> list[dict]:
    with (folder / "hall_of_fame.csv").open() as f:
        return list(csv.DictReader(f))


def pareto(folder: Path) -> list[dict]:
    with (folder / "pareto.csv").open() as f:
        return [{**row, "fitness": float(row["fitness"])} for row in csv.DictReader(f)]


def test_seeded_search_is_deterministic_and_writes_its_folder(tiny_dir, tmp_path, capsys):
    a, b = tmp_path / "a" / "run", tmp_path / "b" / "run"
    run(search_config(tiny_dir), a)
    run(search_config(tiny_dir), b)
    assert hall(a) == hall(b) and len(hall(a)) > 3
    for name in ("logbook.csv", "hall_of_fame.json", "pareto.csv", "best_metric.json", "fitness.png", "pareto.png"):
        assert (a / name).is_file(), name
    with (a / "logbook.csv").open() as f:
        assert [int(r["generation"]) for r in csv.DictReader(f)] == [0, 1, 2, 3]
    best = min(float(r["fitness"]) for r in hall(a))
    assert float(hall(a)[0]["fitness"]) == best
    front = pareto(a)  # without genes the Pareto plot lists the expressions alone
    assert front_lines(front) == [f"{i}. {r['fitness']:.4g}  {r['expression']}" for i, r in enumerate(front, 1)]
    from evolve.cli import main

    assert main(["show", str(a)]) == 0  # the hall of fame, a row per entry in its order, then the Pareto front
    shown = capsys.readouterr().out.split("## Pareto front")[0].splitlines()[4:]
    assert [line.split(" | ")[3] for line in shown if line] == [r["expression"] for r in hall(a)]
    (a / "pareto.csv").unlink()  # as most folders under results/ were committed: show said "[Errno 2] ..."
    assert main(["show", str(a)]) == 0
    hall_part, pareto_part = capsys.readouterr().out.split("## Pareto front")
    assert hall_part.splitlines()[4:] == shown and pareto_part.strip() == f"(no pareto.csv in {a})"


def test_a_search_with_the_d_leaf_scores_sparsegpts_saliency(tiny_dir, tmp_path):
    """--leaves W,X,G,D: the workers gather D before the first candidate and a seeded SparseGPT saliency is
    scored with it, as the fitness evaluator alone scores it."""
    from evolve.fitness import FitnessEvaluator
    from evolve.search import fitness_setup

    cfg = search_config(tiny_dir, language="evolve", leaves=["W", "X", "G", "D"], generations=1,
                        seed_metrics=["divcol(sqr(W), D)"], validation_tokens=0)
    run(cfg, tmp_path)
    row = next(r for r in hall(tmp_path) if r["expression"] == "divcol(sqr(W), D)")
    alone = FitnessEvaluator(fitness_setup(cfg)).evaluate("divcol(sqr(W), D)")
    assert float(row["fitness"]) == pytest.approx(alone["fitness"], rel=1e-9)


def test_a_layer_search_names_its_group_and_apply_prunes_by_it(tiny_dir, tmp_path):
    """best_metric.json of a --group layer search says so, and the metric method then compares over the layer
    (unless told otherwise); a file naming another group is refused in one line."""
    import json

    import pruners
    from pruners.errors import InputError

    run(search_config(tiny_dir, group="layer", generations=1, validation_tokens=0), tmp_path)
    path = tmp_path / "best_metric.json"
    assert json.loads(path.read_text())["group"] == "layer"
    assert pruners.method("metric", metric=str(path)).default_group == "layer"
    assert pruners.method("metric", metric="mul(abs(W), X)").default_group == "row"
    import torch
    from conftest import tiny_llama
    from pruners import models
    from pruners.spec import Sparsity

    model, wanda_by_layer = tiny_llama(), tmp_path / "wanda.json"
    metrics.save(str(wanda_by_layer), metrics.parse("mul(abs(W), X)"), group="layer")
    pruners.method("metric", metric=str(wanda_by_layer)).prune(model, torch.randint(0, 96, (2, 16)), Sparsity.parse("unstructured", 0.5),
                                                     torch.device("cpu"), gradients={})
    zeros = [(lin.weight == 0).sum(dim=1) for lin in models.target_linears(model).values()]  # per row
    assert sum(z.sum().item() for z in zeros) == sum(z.numel() * lin.in_features // 2 for z, lin in
                                                     zip(zeros, models.target_linears(model).values()))
    assert any(len(set(z.tolist())) > 1 for z in zeros)  # rows lose different shares: compared over the layer
    path.write_text(path.read_text().replace('"group": "layer"', '"group": "block"'))
    with pytest.raises(InputError, match="unknown group 'block'"):
        pruners.method("metric", metric=str(path)).default_group


def test_a_per_row_search_gives_rank_equal_metrics_one_key(tiny_dir, tmp_path):
    """Per-row points and 2:4 cannot tell a per-row factor: one key, one evaluation; a layer search can, and
    so can a permuted 2:4 point, whose channel order sums the scores over rows."""
    same = [metrics.parse(e) for e in ("mul(sqr(W), X)", "divrow(mul(sqr(W), X), W)")]
    for group, permute, keys in (("row", False, 1), ("layer", False, 2), ("row", True, 2)):
        folder = tmp_path / f"{group}-{permute}"
        folder.mkdir()
        engine = Search(search_config(tiny_dir, group=group, language="evolve", permute=permute), folder, lambda setup: None,
                        log=lambda _: None)
        assert len({engine.inspect(engine.individual(tree))[0] for tree in same}) == keys, (group, permute)


def stored(run_dir) -> int:
    """Evaluations in a run's store, fitness and validation alike (0 before the store exists)."""
    if not (run_dir / "evaluations.sqlite").is_file():
        return 0
    return Store(str(run_dir / "evaluations.sqlite"), {}).db.execute("SELECT COUNT(*) FROM evaluations").fetchone()[0]


@pytest.mark.e2e  # a search in a subprocess, killed and resumed: 25 s each
@pytest.mark.parametrize("generation", [0, 2])
def test_resume_after_sigkill_ends_like_an_uninterrupted_run(tiny_dir, tmp_path, generation):
    whole, killed = tmp_path / "whole" / "run", tmp_path / "killed" / "run"
    run(search_config(tiny_dir, generations=4, validation_tokens=64), whole)
    argv = [sys.executable, "-m", "evolve", "search", "--model", tiny_dir, "--nsamples", "4", "--seqlen", "32",
            "--population", "6", "--generations", "4", "--fitness-tokens", "128", "--validation-tokens", "64",
            "--serial", "--out", str(killed)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logbook = killed / "logbook.csv"
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if generation == 0 and stored(killed) > 0 and not logbook.is_file():  # some of generation 0 stored, no checkpoint yet
            break
        if generation == 2 and logbook.is_file() and logbook.read_text().count("\n") >= 3 and stored(killed) > 0:
            break  # generation 1 checkpointed and 2 begun
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert process.returncode == -signal.SIGKILL
    assert logbook.is_file() == (generation == 2)
    resumed = subprocess.run([sys.executable, "-m", "evolve", "search", "--resume", str(killed)], capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert ("resuming in generation 0" if generation == 0 else "resuming after generation") in resumed.stdout
    assert hall(killed) == hall(whole)
    assert stored(killed) == stored(whole)  # a repeated evaluation would have failed its INSERT


class NaNOnce(evolve.fitness.FitnessEvaluator):
    """Every pruned model whose metric mentions G gives NaN logits: a candidate gone bad mid-search."""

    def prune(self, tree, spec, *args):
        super().prune(tree, spec, *args)
        if "G" in str(tree) or self.setup.leaves == ("W", "G"):
            next(iter(self.targets.values())).weight.data.fill_(float("nan"))


def test_a_nan_candidate_does_not_stop_the_search(tiny_dir, tmp_path, monkeypatch):
    monkeypatch.setattr("evolve.workers.FitnessEvaluator", NaNOnce)
    cfg = search_config(tiny_dir, seed_metrics=["mul(abs(W), G)", "mul(abs(W), X)"])
    run(cfg, tmp_path / "nan")
    store = Store(str(tmp_path / "nan" / "evaluations.sqlite"), {})
    rows = store.db.execute("SELECT expression, fitness, status FROM evaluations").fetchall()
    assert ("mul(abs(W), G)", WORST, "nan") in rows
    assert any(status == "ok" for *_, status in rows)
    assert all("G" not in r["expression"] for r in hall(tmp_path / "nan"))

    # a search whose every candidate fails ends with its logbook and stored failures, not a traceback
    run(search_config(tiny_dir, leaves=["W", "G"], generations=1), tmp_path / "all")
    assert hall(tmp_path / "all") == [] and not (tmp_path / "all" / "best_metric.json").exists()
    assert (tmp_path / "all" / "logbook.csv").is_file()


def test_a_resumed_search_keeps_its_model_data_and_evolution(tmp_path, capsys):
    """Its store and checkpoint hold fitnesses of one context: --nsamples 8 on resume made every stored
    evaluation foreign (the next resume ended in a traceback). More generations or workers are welcome."""
    from evolve import results
    from evolve.cli import main

    cfg = search_config("smollm2-135m", generations=0, population=2, validation_tokens=0)  # short, should a check go missing
    run, table = tmp_path / "run", tmp_path / "table"
    for folder in (run, table):
        folder.mkdir()
        results.save_config(folder, cfg)
    Store(str(run / "evaluations.sqlite"), {}).close()
    assert main(["search", "--resume", str(run), "--nsamples", "8"]) == 2
    assert f"{run}'s search ran with data.nsamples = 4, not 8: a resumed search keeps" in capsys.readouterr().err
    assert main(["search", "--resume", str(run), "--population", "12"]) == 2
    assert "search.population = 2, not 12" in capsys.readouterr().err
    assert main(["compare", "--resume", str(run)]) == 2
    assert f"{run} is a search's folder, not a compare's" in capsys.readouterr().err
    assert main(["search", "--resume", str(table)]) == 2
    assert f"{table} is a compare's folder, not a search's" in capsys.readouterr().err
    free = {"generations": 50, "workers": 4, "ray_address": "auto", "serial": False, "timeout_s": 60.0}
    results.check_resumed(run, cfg.model_copy(update={"search": cfg.search.model_copy(update=free)}), "search")


def test_bad_search_input_is_one_line(tmp_path, capsys):
    from evolve.cli import main

    assert main(["search", "--population", "1", "--out", str(tmp_path / "x")]) == 2
    assert "search.population" in capsys.readouterr().err
    assert main(["search", "--resume", str(tmp_path)]) == 2
    assert "is not a run folder to resume" in capsys.readouterr().err
    assert main(["search", "--pattern", "3:2", "--out", str(tmp_path / "y")]) == 2
    assert "0 < N < M" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    assert main(["show", str(tmp_path)]) == 2
    assert f"{tmp_path} is neither a search's nor a compare's folder" in capsys.readouterr().err
    Store(str(tmp_path / DATABASE), {}).close()  # a search stopped in generation 0
    assert main(["show", str(tmp_path)]) == 2
    assert f"{tmp_path} is a search that has finished no generation yet" in capsys.readouterr().err
    (tmp_path / DATABASE).unlink()
    assert main(["search", "--seed-metrics", "wanda,ria", "--out", str(tmp_path / "z")]) == 2
    assert "seed metric 'ria' uses divcol, divrow, not in the language 'pruner-zero'" in capsys.readouterr().err
    assert main(["search", "--seed-metrics", "mul(W, Q)", "--out", str(tmp_path / "z")]) == 2
    assert "seed metric 'mul(W, Q)': unknown operator or leaf 'Q'" in capsys.readouterr().err
    assert main(["search", "--language", "mine", "--out", str(tmp_path / "z")]) == 2
    assert "search.language" in capsys.readouterr().err
    assert main(["search", "--seed-metrics", "divcol(sqr(W), D)", "--language", "evolve", "--out", str(tmp_path / "z")]) == 2
    assert "seed metric 'divcol(sqr(W), D)' reads D, not among the search's leaves W,X,G" in capsys.readouterr().err
    assert main(["search", "--leaves", "X,D", "--out", str(tmp_path / "z")]) == 2
    assert "no leaf per weight" in capsys.readouterr().err
    assert main(["search", "--group", "row,block", "--out", str(tmp_path / "z")]) == 2
    assert "unknown comparison group block; choose among row, column, layer" in capsys.readouterr().err
    assert main(["search", "--allocation", "uniform,wide", "--out", str(tmp_path / "z")]) == 2
    assert "unknown allocation wide; choose among uniform, owl" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()


@pytest.mark.parametrize("language", ["pruner-zero", "evolve"])
def test_the_language_decides_the_search_space_and_seeds_lead_generation_0(tiny_dir, tmp_path, language):
    from evolve.search import CONSTANTS
    from metrics.ops import LANGUAGES

    seeds = ["wanda", "mul(sqr(W), X)"] + (["ria"] if language == "evolve" else [])
    leaves = ["W", "X", "G"] + (["D"] if language == "evolve" else [])  # D: a switch, off by default
    engine = Search(search_config(tiny_dir, language=language, seed_metrics=seeds, population=40, leaves=leaves), tmp_path,
                    lambda setup: None, log=lambda _: None)
    random.seed(0)
    population = engine.initial_population()
    assert [str(ind) for ind in population[:len(seeds)]] == \
        ["mul(abs(W), X)", "mul(sqr(W), X)"] + (["mul(add(divrow(abs(W), W), divcol(abs(W), W)), sqrt(X))"] if seeds[2:] else [])
    used, constants, read = set(), set(), set()
    for ind in population:
        for _ in range(20):
            (ind,) = engine.tb.mutate(engine.tb.clone(ind))
            tree = metrics.parse(str(ind))
            used |= tree.ops()
            read |= tree.leaves()
            constants |= {n.value for n in tree.nodes() if n.is_constant}
    assert used <= set(LANGUAGES[language])
    assert read == set(leaves)
    assert ({"divrow", "divcol"} <= used) == (language == "evolve")  # the new operators are really searched
    # and so are constants (simplification folds some into others: exp(1.0) -> e)
    assert (set(CONSTANTS) <= constants) if language == "evolve" else not constants


def test_trees_with_constants_survive_mutation_and_crossover(tiny_dir, tmp_path):
    import metrics

    engine = Search(search_config(tiny_dir), tmp_path, lambda setup: None, log=lambda _: None)
    random.seed(0)
    a = engine.individual(metrics.parse("mul(add(abs(W), 0.001), sub(2, X))"))
    b = engine.individual(metrics.parse("mul(abs(W), G)"))
    assert str(a) == "mul(add(abs(W), 0.001), sub(2, X))"
    for _ in range(200):
        (a,) = engine.tb.mutate(engine.tb.clone(a))
        a, b = engine.tb.mate(a, engine.tb.clone(b))
        metrics.parse(str(a))  # still a metric of the language


class OraclePool:
    """A fitness without a model, where metrics really differ (on the tiny random model every metric gives a
    perplexity of about the vocabulary size, so there is nothing to optimise): 1 + the share of the weights of
    a fixed random layer whose keep/drop decision at 50% per row differs from Wanda's. NaN scores are WORST.
    On the validation tokens the target is magnitude's decision instead: what wins the fitness need not
    win there."""

    def __init__(self, setup):
        import torch

        from pruners.spec import Sparsity

        generator = torch.Generator().manual_seed(0)
        self.W = torch.randn(32, 64, generator=generator)  # (out, in)
        self.X = torch.rand(1, 64, generator=generator) * 4  # (1, in): channel norms of very different sizes
        self.G = torch.rand(32, 64, generator=generator)
        self.spec = Sparsity.parse("unstructured", 0.5)
        self.target = {"fitness": self.drop("mul(abs(W), X)"), "validation": self.drop("abs(W)")}
        self.jobs = []  # the fitness jobs of each call, in order
        self.validated = []  # the validation jobs

    def drop(self, expression: str, group: str = "row"):
        import metrics
        from pruners import masks

        score = metrics.compile_metric(metrics.parse(expression))(W=self.W, X=self.X, G=self.G)
        return masks.mask(score, self.spec, group)

    def map(self, jobs, threshold, on_result, split="fitness"):
        (self.jobs if split == "fitness" else self.validated).append([expression for _, expression, _ in jobs])
        for job in jobs:
            try:
                fitness = 1 + (self.drop(job[1], job[2].group) != self.target[split]).float().mean().item()
            except FloatingPointError:
                fitness = WORST
            on_result(job, {"fitness": fitness, "status": "ok", "error": "", "points": "{}", "seconds": 0.0, "worker": "oracle"})

    def close(self):
        pass


def logbook(folder: Path) -> list[dict]:
    with (folder / "logbook.csv").open() as f:
        return [{k: float(v) if k != "best_expression" else v for k, v in row.items()} for row in csv.DictReader(f)]


def oracle_search(folder: Path, pools: list, pool_class=None, **search) -> Search:
    cfg = search_config("smollm2-135m", **{"population": 16, "generations": 8, **search})  # the pool never loads it
    folder.mkdir(parents=True, exist_ok=True)

    def factory(setup):
        pools.append((pool_class or OraclePool)(setup))
        return pools[-1]

    engine = Search(cfg, folder, factory, log=lambda _: None)
    engine.run(resume=False)
    return engine


def test_the_search_improves_where_metrics_differ(tmp_path):
    pools = []
    oracle_search(tmp_path / "run", pools)
    rows = logbook(tmp_path / "run")
    best = [r["best"] for r in rows]
    assert all(b <= a for a, b in zip(best, best[1:])), best  # elitism: the best never gets worse
    assert best[-1] < best[0]  # lower is better: a search maximising perplexity fails here
    assert rows[-1]["median"] < rows[0]["median"]
    hall_of_fame = hall(tmp_path / "run")
    assert float(hall_of_fame[0]["fitness"]) == best[-1] == min(float(r["fitness"]) for r in hall_of_fame)


def test_the_runs_metric_is_the_best_by_validation_of_the_best_by_fitness(tmp_path):
    pools = []
    engine = oracle_search(tmp_path / "run", pools, validate_top=5)
    (pool,) = pools
    fame = hall(tmp_path / "run")
    top = fame[:5]
    assert pool.validated == [[r["expression"] for r in top]]  # the five best by fitness, nothing else
    assert all(r["validation"] == "" for r in fame[5:])
    for r in top:  # each validation value is the validation target's, computed here another way
        want = 1 + (pool.drop(r["expression"]) != pool.drop("abs(W)")).float().mean().item()
        assert float(r["validation"]) == pytest.approx(want)
    chosen = min(top, key=lambda r: (float(r["validation"]), float(r["fitness"])))
    assert chosen["expression"] != fame[0]["expression"]  # the stub makes the two orders disagree
    saved = json.loads((tmp_path / "run" / "best_metric.json").read_text())
    assert str(metrics.load(str(tmp_path / "run" / "best_metric.json"))) == chosen["expression"]
    assert saved["fitness"]["validation"] == pytest.approx(float(chosen["validation"]))
    store = Store(str(tmp_path / "run" / "evaluations.sqlite"), engine.setup.validation_context())
    assert store.count() == 5

    again = []  # run again on the same store: validation comes from it too
    oracle_search(tmp_path / "run", again, validate_top=5)
    assert again == []


def test_generation_counters_add_up_to_the_store(tmp_path):
    pools = []
    engine = oracle_search(tmp_path / "run", pools)
    rows, (pool,) = logbook(tmp_path / "run"), pools
    evaluations = [int(r["evaluations"]) for r in rows]
    assert [n for n in evaluations if n] == [len(jobs) for jobs in pool.jobs]  # a generation with no new metric maps nothing
    assert rows[0]["evaluations"] + rows[0]["cache_hits"] == 16  # generation 0: 16 distinct individuals
    evaluated = [e for jobs in pool.jobs for e in jobs]
    assert len(set(evaluated)) == len(evaluated)  # nothing is evaluated twice in one run
    store = Store(str(tmp_path / "run" / "evaluations.sqlite"), engine.setup.context())
    assert store.count() == sum(evaluations) == len(evaluated)

    again = []  # the same search again on the same store: every metric is a cache hit, no pool is started
    oracle_search(tmp_path / "run", again)
    rows_again = logbook(tmp_path / "run")
    assert again == [] and all(r["evaluations"] == 0 for r in rows_again)
    assert rows_again[0]["cache_hits"] == 16
    assert [r["best"] for r in rows_again] == [r["best"] for r in rows]


class PointsPool(OraclePool):
    """The oracle with two points, 2:4 four times the 50% point's perplexity, recording the early-stop bounds."""

    def __init__(self, setup):
        super().__init__(setup)
        self.thresholds = []

    def map(self, jobs, thresholds, on_result, split="fitness"):
        self.thresholds.append(thresholds)
        super().map(jobs, thresholds, lambda job, r: on_result(job, {**r, "points": json.dumps({"0.5": r["fitness"], "2:4": 4 * r["fitness"]})}), split)


def test_early_stop_bounds_each_point_by_the_best_individuals_perplexity_there(tmp_path):
    pools = []
    oracle_search(tmp_path / "run", pools, PointsPool, early_stop=3.0, validation_tokens=0)
    (pool,) = pools
    assert pool.thresholds[0] is None and len(pool.thresholds) > 3  # generation 0 has no best yet
    for i, thresholds in enumerate(pool.thresholds[1:], 1):
        best = min(float(r["fitness"]) for r in hall(tmp_path / "run") if r["expression"] in sum(pool.jobs[:i], []))
        assert thresholds == pytest.approx({"0.5": 3 * best, "2:4": 12 * best})  # elitism keeps the best so far


@pytest.mark.parametrize("group", ["row", "row,layer"])
def test_resume_in_process_ends_like_an_uninterrupted_run(tmp_path, group):
    """The checkpoint keeps the population, its fitness (and groups, when they are a gene), the random state,
    the hall of fame and the logbook: two generations, then a resumed search to eight, ends exactly where
    eight in one go end."""
    whole, pools = tmp_path / "whole", []
    oracle_search(whole, pools, group=group)
    stopped = tmp_path / "stopped"
    oracle_search(stopped, pools, generations=2, group=group)
    random.seed(1234)  # as in a fresh process: the random state must come from the checkpoint
    resumed = Search(search_config("smollm2-135m", population=16, generations=8, group=group), stopped,
                     lambda setup: pools.append(OraclePool(setup)) or pools[-1], log=lambda _: None)
    resumed.run(resume=True)
    assert resumed.generation == 8
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]
    assert strip(logbook(stopped)) == strip(logbook(whole))
    assert hall(stopped) == hall(whole)
    assert (stopped / "best_metric.json").read_text() == (whole / "best_metric.json").read_text()


def test_a_search_killed_in_generation_0_resumes_without_losing_an_evaluation(tiny_dir, tmp_path, monkeypatch, capsys):
    from evolve.cli import main
    from evolve.workers import SerialPool

    argv = ["search", "--model", tiny_dir, "--nsamples", "4", "--seqlen", "32", "--population", "6",
            "--generations", "0", "--fitness-tokens", "128", "--serial", "--out"]  # generation 0 is all it needs
    assert main([*argv, str(tmp_path / "a" / "whole")]) == 0  # in another folder: siblings' stores are reused
    evaluated = []
    real_map = SerialPool.map

    def map_then_die(self, jobs, threshold, on_result, split="fitness"):  # the kill arrives after two finished evaluations
        def counted(job, result):
            on_result(job, result)
            evaluated.append(job)
            if len(evaluated) == 2:
                raise KeyboardInterrupt

        real_map(self, jobs, threshold, counted, split)

    monkeypatch.setattr(SerialPool, "map", map_then_die)
    assert main([*argv, str(tmp_path / "b" / "killed")]) == 130
    assert not (tmp_path / "b" / "killed" / "checkpoint.pkl").exists()  # killed before generation 0 was recorded
    monkeypatch.setattr(SerialPool, "map", real_map)
    calls = []
    monkeypatch.setattr(SerialPool, "map", lambda self, jobs, *a, **k: calls.append(len(jobs)) or real_map(self, jobs, *a, **k))
    capsys.readouterr()
    assert main(["search", "--resume", str(tmp_path / "b" / "killed")]) == 0
    assert "resuming in generation 0 (2 evaluations stored)" in capsys.readouterr().out
    assert calls[0] == 6 - 2  # the two finished evaluations came from the store
    assert hall(tmp_path / "b" / "killed") == hall(tmp_path / "a" / "whole")


class LayerOraclePool(OraclePool):
    """The oracle whose target is Wanda's decision compared over the whole layer: only a candidate evaluated in
    the layer group can reach it."""

    def __init__(self, setup):
        super().__init__(setup)
        self.target["fitness"] = self.drop("mul(abs(W), X)", "layer")
        self.groups = []  # the group of every fitness job

    def map(self, jobs, threshold, on_result, split="fitness"):
        self.groups += [choice.group for _, _, choice in jobs]
        super().map(jobs, threshold, on_result, split)


def test_the_group_as_a_gene_finds_the_group_its_tree_needs(tmp_path):
    """--group row,layer: every individual carries a group, each seed enters once per group with its own key,
    the evaluator is told the candidate's group, and best_metric.json names the group that won."""
    pools = []
    engine = oracle_search(tmp_path / "run", pools, LayerOraclePool, group="row,layer", seed_metrics=["mul(abs(W), X)"],
                           validation_tokens=0)
    (pool,) = pools
    assert set(pool.groups) == {"row", "layer"} and engine.genes == ["group"]
    fame = hall(tmp_path / "run")
    seeds = {r["group"]: r for r in fame if r["expression"] == "mul(abs(W), X)"}
    assert set(seeds) == {"row", "layer"} and seeds["row"]["key"] != seeds["layer"]["key"]
    assert float(seeds["layer"]["fitness"]) == 1.0 < float(seeds["row"]["fitness"])  # the layer's decision, exactly
    saved = json.loads((tmp_path / "run" / "best_metric.json").read_text())
    assert saved["group"] == "layer" and float(fame[0]["fitness"]) == 1.0
    assert logbook(tmp_path / "run")[0]["best_expression"].startswith("layer: ")
    front = pareto(tmp_path / "run")  # the Pareto plot's listing says each point's group, as its key does
    assert front_lines(front) == [f"{i}. {r['fitness']:.4g}  {r['group']}: {r['expression']}"
                                  for i, r in enumerate(front, 1)]


def test_gene_mutation_stays_among_the_searchs_values_and_keys_tell_choices_apart(tmp_path):
    """A mutation may move an individual to another of the search's groups or allocations (never outside them,
    one gene at a time, its tree kept); with both genes a tree's key differs per choice, as its masks do
    (mul(abs(W), X): per row, per column and over the layer all prune differently on a probe layer)."""
    from pruners import masks
    from pruners.spec import Sparsity

    engine = Search(search_config("smollm2-135m", group="row,column,layer", allocation="uniform,owl"), tmp_path,
                    lambda setup: None, log=lambda _: None)
    assert engine.genes == ["group", "allocation"] and len(engine.choices()) == 6
    tree = metrics.parse("mul(abs(W), X)")
    keys = {(c.group, c.allocation): engine.inspect(engine.individual(tree, c))[0] for c in engine.choices()}
    assert len(set(keys.values())) == 6 and keys["layer", "owl"].startswith("layer owl: ")
    W, X = torch.randn(8, 16), torch.rand(1, 16)
    score = metrics.compile_metric(tree)(W=W, X=X)
    dropped = [masks.mask(score, Sparsity.parse("unstructured", 0.5), group) for group in ("row", "column", "layer")]
    assert not any(torch.equal(a, b) for a, b in ((dropped[0], dropped[1]), (dropped[0], dropped[2]), (dropped[1], dropped[2])))
    column = Choice(group="column", allocation="owl")
    simpler = engine.simplified(engine.individual(metrics.parse("mul(abs(abs(W)), X)"), column))
    assert (str(simpler), simpler.choice) == ("mul(abs(W), X)", column)  # simplifying keeps the choice
    random.seed(0)
    seen = set()
    for _ in range(300):
        (ind,) = engine.tb.mutate(engine.individual(tree, Choice()))
        if ind.choice != Choice():
            assert str(ind) == str(tree) and (ind.choice.group == "row") != (ind.choice.allocation == "uniform")
        seen.add(ind.choice)
    assert seen == {Choice(), Choice("column"), Choice("layer"), Choice(allocation="owl")}
    single = Search(search_config("smollm2-135m", group="layer"), tmp_path, lambda setup: None, log=lambda _: None)
    assert not single.genes and single.inspect(single.individual(tree))[0] == keys["layer", "uniform"].removeprefix("layer uniform: ")
