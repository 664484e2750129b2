"""Ray evaluation: two workers on a tiny model, one killed mid-run; and workers that hang, die on every
candidate of a kind, or cannot start, with an actor body that needs no model (Ray starts once here)."""
import dataclasses
import importlib.util
import os
import signal
import sys
import time

import pytest

from evolve.fitness import Choice
from evolve.search import Search, fitness_setup
from evolve.store import Store
from evolve.workers import RayPool
from pruners.device import default_threads
from pruners.errors import InputError

from test_search import hall, search_config


class KillingPool(RayPool):
    """Kills one of its workers with SIGKILL right after the first result of the run comes in."""

    killed = []

    def map(self, jobs, threshold, on_result, split="fitness"):
        def wrapped(job, result):
            on_result(job, result)
            if not self.killed:
                pid = self.ray.get(self.actors[1].pid.remote())
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)

        super().map(jobs, threshold, wrapped, split)


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    import ray

    # where Faulty workers note each candidate they start; set before Ray starts so its workers inherit it
    os.environ["FAULTY_LOG"] = str(tmp_path_factory.mktemp("faulty") / "started.txt")
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    yield ray
    ray.shutdown()


@pytest.mark.e2e  # two workers with a model each: 30 s
def test_search_with_two_ray_workers_survives_a_killed_worker(tiny_dir, tmp_path, ray_session):
    cfg = search_config(tiny_dir, serial=False, workers=2, generations=2)
    folder = tmp_path / "ray"
    folder.mkdir()
    engine = Search(cfg, folder, lambda setup: KillingPool(setup, 2, None, 600, log=lambda _: None), log=lambda _: None)
    best = engine.run(resume=False)
    assert KillingPool.killed, "no worker was killed"
    assert best and len(hall(folder)) > 3
    rows = Store(str(folder / "evaluations.sqlite"), {}).db.execute("SELECT status, worker FROM evaluations").fetchall()
    assert all(status in ("ok", "early") for status, _ in rows), rows
    assert len({worker for _, worker in rows}) >= 2  # both workers (and the restarted one) did work


class Faulty:
    """An actor body without a model: metrics with G hang, metrics with X kill their worker, and a model
    named 'no-room' fails while starting."""

    def __init__(self, setup, threads):
        if setup.model == "no-room":
            raise MemoryError("not enough memory for the model")

    def evaluate(self, expression, threshold, split, choice):
        with open(os.environ["FAULTY_LOG"], "a") as log:
            log.write(f"{expression} {os.getpid()}\n")
        if "G" in expression:
            time.sleep(600)
        if "X" in expression:
            os._exit(1)
        return {"fitness": 10.0 + len(expression), "status": "ok", "error": "", "points": "{}", "seconds": 0.0,
                "worker": str(os.getpid())}

    def pid(self):
        return os.getpid()


class FaultyPool(RayPool):
    body = Faulty


def test_hung_and_dying_workers_are_recorded_and_the_rest_is_evaluated(ray_session):
    pool = FaultyPool(fitness_setup(search_config("smollm2-135m")), 2, None, timeout_s=3, log=lambda _: None)
    jobs = [(key, expression, Choice()) for key, expression in (("a", "abs(W)"), ("b", "mul(W, G)"), ("c", "mul(W, X)"), ("d", "sqr(W)"))]
    results = {}
    start = time.monotonic()
    pool.map(jobs, None, lambda job, result: results.setdefault(job[0], result))
    pool.close()
    assert set(results) == {"a", "b", "c", "d"}
    assert (results["a"]["status"], results["a"]["fitness"]) == ("ok", 16.0)
    assert (results["d"]["status"], results["d"]["fitness"]) == ("ok", 16.0)
    assert (results["b"]["status"], results["b"]["fitness"]) == ("timeout", float("inf"))
    assert results["b"]["error"] == "no result after 3 s"
    assert (results["c"]["status"], results["c"]["fitness"]) == ("error", float("inf"))
    assert results["c"]["error"].startswith("worker died twice")
    with open(os.environ["FAULTY_LOG"]) as log:
        started = [line.rsplit(" ", 1) for line in log.read().splitlines()]
    tries = [pid for expression, pid in started if expression == "mul(W, X)"]
    assert len(tries) == 2 and tries[0] != tries[1]  # retried once, on a restarted worker
    assert [expression for expression, _ in started].count("mul(W, G)") == 1  # a timeout is not retried
    assert time.monotonic() - start < 500  # the hung worker (600 s asleep) was killed, not waited for; loose for loaded machines


def test_a_worker_that_cannot_start_stops_the_search_with_its_reason(ray_session):
    with pytest.raises(InputError, match="a Ray worker failed to start: .*not enough memory for the model"):
        FaultyPool(fitness_setup(search_config("no-room")), 1, None, timeout_s=3, log=lambda _: None)


def test_local_workers_fit_the_cores_ray_hands_out(ray_session, monkeypatch):
    """Ray holds an actor's cores while it lives: the workers past the local cores waited for ever, silently;
    and threads counted from a cpuset wider than Ray's cores (a container's CPU quota) made an actor no node
    could start."""
    import evolve.workers

    said = []
    with pytest.raises(InputError) as refused:
        FaultyPool(fitness_setup(search_config("smollm2-135m")), 1000, None, timeout_s=3, log=said.append)
    cpus = ray_session.cluster_resources()["CPU"]
    assert str(refused.value) == f"--workers 1000: the local Ray has {cpus:g} cores, one per worker at least; use --workers {cpus:g} or fewer"
    assert said == []  # refused before "starting 1000 Ray worker(s)"
    monkeypatch.setattr(evolve.workers, "default_threads", lambda workers=1: 64)
    pool = FaultyPool(fitness_setup(search_config("smollm2-135m")), 1, None, timeout_s=3, log=said.append)
    pool.close()
    assert pool.needs["CPU"] == cpus and said == [f"starting 1 Ray worker(s), {cpus:g} torch thread(s) each"]


class ImpatientPool(FaultyPool):
    start_grace_s = 2.0


@pytest.mark.skipif(importlib.util.find_spec("habana_frameworks") is not None, reason="this machine has Gaudi's plugin")
def test_workers_that_no_node_can_host_stop_the_search_in_one_line(ray_session):
    """Ray lets an actor wait for ever for a resource no node has (a GPU, Gaudi's HPU); the pool gives up
    after its grace, saying what was lacking. A resource that exists but is busy is waited for."""
    setup = dataclasses.replace(fitness_setup(search_config("smollm2-135m")), device="hpu")
    said = []
    start = time.monotonic()
    with pytest.raises(InputError, match=r"^no node of the Ray cluster has what a worker needs \(\d+ CPU, 1 HPU\); "
                                          r"waited 2 s for one to join: add one, or search with --device cpu$"):
        ImpatientPool(setup, 1, None, timeout_s=3, log=said.append)
    assert time.monotonic() - start < 60
    threads = default_threads(1)
    assert said[-1] == f"waiting for a node with what a worker needs ({threads} CPU, 1 HPU) to join the Ray cluster: none has it now"
    assert ray_session.available_resources().get("CPU") == ray_session.cluster_resources()["CPU"]  # the actor is gone


def test_unreachable_ray_address_is_one_line(capsys, tmp_path):
    from evolve.cli import main

    start = time.time()
    assert main(["search", "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "r"), "--model", "smollm2-135m",
                 "--generations", "0"]) == 2
    assert "cannot reach Ray at 127.0.0.1:9" in capsys.readouterr().err
    assert time.time() - start < 120


def test_an_address_is_checked_before_ray_tries_it():
    import socket

    from evolve.workers import _reachable

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        _reachable(f"127.0.0.1:{port}")
        _reachable(f":{port}")  # no host: this machine
    with pytest.raises(InputError, match=f"cannot reach Ray at 127.0.0.1:{port}: Connection refused"):
        _reachable(f"127.0.0.1:{port}")
    with pytest.raises(InputError, match="cannot reach Ray at 127.0.0.1:ray"):
        _reachable("127.0.0.1:ray")


def test_an_actor_body_evaluates_like_the_evaluator_it_holds(tiny_dir, capsys):
    import torch

    from evolve.fitness import FitnessEvaluator
    from evolve.workers import _Actor

    setup = fitness_setup(search_config(tiny_dir))
    threads = torch.get_num_threads()
    try:
        actor = _Actor(setup, 1)
        assert torch.get_num_threads() == 1  # the threads it was given, not every core
    finally:
        torch.set_num_threads(threads)
    said = capsys.readouterr().out  # what Ray forwards to the driver while the worker prepares
    assert f"worker {actor.name}: loading" in said and "X from the dense model" in said and "G " in said
    result = actor.evaluate("mul(abs(W), X)", None, "validation", Choice())
    assert result["worker"] == f"{os.uname().nodename}:{os.getpid()}" and actor.pid() == os.getpid()
    expected = FitnessEvaluator(setup).evaluate("mul(abs(W), X)", split="validation")
    assert (result["fitness"], result["points"]) == (expected["fitness"], expected["points"])


def test_workers_share_the_cores_this_process_may_run_on_not_the_machines(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)  # a big node, of which a cpuset grants three cores
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {4, 5, 6}, raising=False)
    assert [default_threads(w) for w in (1, 2, 3, 4)] == [3, 1, 1, 1]
