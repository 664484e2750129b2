"""Ray evaluation: two workers on a tiny model, one killed mid-run (about a minute: Ray starts here)."""
import os
import signal
import time

import pytest

from evolve.search import Search
from evolve.store import Store
from evolve.workers import RayPool

from test_search import hall, search_config


class KillingPool(RayPool):
    """Kills one of its workers with SIGKILL right after the first result of the run comes in."""

    killed = []

    def map(self, jobs, threshold, on_result):
        def wrapped(job, result):
            on_result(job, result)
            if not self.killed:
                pid = self.ray.get(self.actors[1].pid.remote())
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)

        super().map(jobs, threshold, wrapped)


@pytest.fixture
def ray_session():
    import ray

    yield ray
    ray.shutdown()


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


def test_unreachable_ray_address_is_one_line(capsys, tmp_path):
    from evolve.cli import main

    start = time.time()
    assert main(["search", "--ray-address", "127.0.0.1:9", "--out", str(tmp_path / "r"), "--model", "smollm2-135m",
                 "--generations", "0"]) == 2
    assert "cannot reach Ray at 127.0.0.1:9" in capsys.readouterr().err
    assert time.time() - start < 120
