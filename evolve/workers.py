"""Evaluators: where candidates are evaluated. Both take a list of (key, expression, choice) jobs, on the fitness
or the validation tokens, and report each result through a callback the moment it is known, so the
store commits it at once.

SerialPool runs in this process (tests, debugging). RayPool keeps one FitnessEvaluator per Ray actor;
an actor that dies is restarted and its candidate retried once, one that runs past the timeout is
killed and its candidate recorded as a timeout: the search never stops because of one worker."""
import os
import socket
import time
from collections import deque
from collections.abc import Callable

import torch

from evolve.fitness import Choice, FitnessEvaluator, FitnessSetup
from evolve.store import WORST
from pruners.device import default_threads
from pruners.errors import InputError

Job = tuple[str, str, Choice]  # (canonical key, expression, how its unstructured points prune)
OnResult = Callable[[Job, dict], None]


def failure(status: str, error: str, seconds: float = 0.0) -> dict:
    return {"fitness": WORST, "status": status, "error": error, "points": "{}", "seconds": seconds}


class SerialPool:
    def __init__(self, setup: FitnessSetup, log=print):
        self.evaluator = FitnessEvaluator(setup, log)
        self.workers = 1

    def map(self, jobs: list[Job], thresholds: dict[str, float] | None, on_result: OnResult, split: str = "fitness") -> None:
        for job in jobs:
            on_result(job, {**self.evaluator.evaluate(job[1], thresholds, split, job[2]), "worker": "serial"})

    def close(self) -> None:
        pass


class _Actor:
    """The body of a Ray actor: a FitnessEvaluator with the torch threads this actor was given."""

    def __init__(self, setup: FitnessSetup, threads: int):
        import torch

        torch.set_num_threads(threads)
        self.name = f"{os.uname().nodename}:{os.getpid()}"
        # Loading the model, X and G take minutes: say each stage (Ray forwards it to the driver's terminal).
        self.evaluator = FitnessEvaluator(setup, log=lambda message: print(f"worker {self.name}: {message}", flush=True))

    def evaluate(self, expression: str, thresholds, split: str, choice: Choice):
        return {**self.evaluator.evaluate(expression, thresholds, split, choice), "worker": self.name}

    def pid(self) -> int:
        return os.getpid()


def _reachable(address: str) -> None:
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=5).close()
    except (OSError, ValueError) as error:
        raise InputError(f"cannot reach Ray at {address}: {getattr(error, 'strerror', None) or error}") from None


class RayPool:
    body = _Actor  # what each actor runs
    start_grace_s = 600.0  # how long workers wait for a node with what they need to join the cluster

    def __init__(self, setup: FitnessSetup, workers: int, address: str | None, timeout_s: float, log=print):
        import ray

        self.ray = ray
        if address and address != "auto" and not address.startswith("ray://"):
            _reachable(address)  # ray.init keeps retrying an address where nothing listens
        try:
            if not ray.is_initialized():
                ray.init(address=address, include_dashboard=False, log_to_driver=True, configure_logging=False)
        except (ConnectionError, RuntimeError, ValueError) as error:
            raise InputError(f"cannot reach Ray at {address}: {str(error).splitlines()[0]}") from None
        local = address is None
        cpus = int(ray.cluster_resources().get("CPU", 0))
        if local and workers > cpus:  # Ray holds a worker's cores while it lives: the rest would wait for ever
            raise InputError(f"--workers {workers}: the local Ray has {cpus} cores, one per worker at least; "
                             f"use --workers {cpus} or fewer")
        # cores / workers threads each, of the cores this process may run on and Ray hands out (a container's
        # CPU quota can make these fewer than its cpuset: an actor asking for more would never start)
        threads = max(1, min(default_threads(), cpus) // workers) if local else 1
        self.needs = {"CPU": threads}  # what one actor asks of the node it runs on
        if setup.device.startswith("cuda") or (setup.device == "auto" and torch.cuda.is_available()):
            self.needs["GPU"] = 1  # each actor keeps a model on its own GPU
        if setup.device == "hpu":
            self.needs["HPU"] = 1
        resources = {name: amount for name, amount in self.needs.items() if name not in ("CPU", "GPU")}
        actor = ray.remote(self.body).options(num_cpus=threads, num_gpus=self.needs.get("GPU", 0),
                                              resources=resources, max_restarts=0)
        self.make = lambda: actor.remote(setup, threads)
        self.workers = workers
        self.timeout_s = timeout_s
        self.log = log
        log(f"starting {workers} Ray worker(s), {threads} torch thread(s) each")
        # The first worker fills the on-disk caches (converted model, G) before the others start.
        self.actors = self.started([self.make()])
        self.actors += self.started([self.make() for _ in range(workers - 1)])

    def started(self, actors: list) -> list:
        """The actors, once each has loaded its model. One that cannot start (no memory for the model, a
        broken install) would fail every candidate given to it: the search stops with its reason instead;
        everything evaluated so far is stored and the run resumes from its last generation.

        An actor waits for a node with what it needs (a GPU, the HPU resource): for ever, to Ray. While
        some node has it (busy or not) the wait is a queue and may be long (the first worker fills the
        caches for minutes); while none has it, the wait is for a node to join (an autoscaler), and ends
        in one line after `start_grace_s`."""
        refs = [a.pid.remote() for a in actors]
        lacking_since = None
        while len(self.ray.wait(refs, num_returns=len(refs), timeout=5.0)[0]) < len(refs):
            if self.feasible():
                lacking_since = None
            elif lacking_since is None:
                lacking_since = time.monotonic()
                self.log(f"waiting for a node with what a worker needs ({self.wanted()}) to join the Ray cluster: none has it now")
            elif time.monotonic() - lacking_since > self.start_grace_s:
                self.kill(actors)
                other = ", or search with --device cpu" if set(self.needs) - {"CPU"} else ""
                raise InputError(f"no node of the Ray cluster has what a worker needs ({self.wanted()}); waited "
                                 f"{self.start_grace_s:.0f} s for one to join: add one{other}")
        try:
            self.ray.get(refs)
        except self.ray.exceptions.RayError as error:
            self.kill(actors)
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            raise InputError(f"a Ray worker failed to start: {lines[-1] if lines else type(error).__name__}") from None
        return actors

    def feasible(self) -> bool:
        """Whether some live node has every resource one actor asks for, in use or not."""
        return any(node["Alive"] and all(node["Resources"].get(name, 0) >= amount for name, amount in self.needs.items())
                   for node in self.ray.nodes())

    def wanted(self) -> str:
        return ", ".join(f"{amount:g} {name}" for name, amount in self.needs.items())

    def kill(self, actors: list) -> None:
        for actor in actors:
            self.ray.kill(actor)

    def restart(self, i: int) -> None:
        self.ray.kill(self.actors[i], no_restart=True)
        (self.actors[i],) = self.started([self.make()])

    def map(self, jobs: list[Job], thresholds: dict[str, float] | None, on_result: OnResult, split: str = "fitness") -> None:
        ray = self.ray
        pending = deque((job, 0) for job in jobs)
        idle = deque(range(len(self.actors)))
        running = {}  # ref -> (actor index, job, attempt, start)
        while pending or running:
            while pending and idle:
                (job, attempt), i = pending.popleft(), idle.popleft()
                running[self.actors[i].evaluate.remote(job[1], thresholds, split, job[2])] = (i, job, attempt, time.monotonic())
            done, _ = ray.wait(list(running), num_returns=1, timeout=1.0)
            for ref in done:
                i, job, attempt, start = running.pop(ref)
                try:
                    on_result(job, ray.get(ref))
                except (ray.exceptions.RayActorError, ray.exceptions.RayTaskError) as error:
                    self.restart(i)
                    if attempt == 0:
                        pending.appendleft((job, 1))
                    else:
                        message = f"worker died twice: {type(error).__name__}"
                        on_result(job, {**failure("error", message, time.monotonic() - start), "worker": ""})
                idle.append(i)
            now = time.monotonic()
            for ref, (i, job, attempt, start) in list(running.items()):
                if now - start > self.timeout_s:
                    running.pop(ref)
                    self.restart(i)
                    on_result(job, {**failure("timeout", f"no result after {self.timeout_s:.0f} s", now - start), "worker": ""})
                    idle.append(i)

    def close(self) -> None:
        self.kill(self.actors)
