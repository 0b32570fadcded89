"""The files dead workers leave in the multiprocess folder: removed by the worker that replaces one, kept (and the
reason `/livez` fails) where nobody replaces it. The workers are real processes that wrote real metric files."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import bentoml
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.testclient import TestClient

from service.monitoring.window import SlidingCounts
from service.monitoring.workers import Workers, process_alive
from tests.test_http import assert_error

ROOT = Path(__file__).resolve().parents[2]
KEY, WIDTH, SLOT_SECONDS, SLOTS = "digits-v1", 2, 60.0, 30

# A worker's files: a heartbeat (mode all), an in-flight gauge (livesum), a model-info gauge (max), a counter, and a
# drift window with two counts.
WORKER = f"""
import os, sys, time
from pathlib import Path
os.environ["PROMETHEUS_MULTIPROC_DIR"] = sys.argv[1]
import numpy as np
from prometheus_client import CollectorRegistry
from service.monitoring.metrics import Metrics
from service.monitoring.window import SlidingCounts
metrics = Metrics.create(CollectorRegistry())
metrics.heartbeat.set(time.time())
metrics.in_flight.labels("/predict").inc()
metrics.model_info.labels("digits", "v1", "multiclass").set(1)
metrics.requests.labels("digits", "v1", "/predict", "ok").inc(3)
SlidingCounts(Path(sys.argv[1]), {KEY!r}, {WIDTH}, {SLOT_SECONDS}, {SLOTS}).add(np.array([5.0, 7.0]))
print("written", flush=True)
sys.stdin.read()  # until the test closes stdin
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path / "prometheus"


Worker = subprocess.Popen[str]


@pytest.fixture
def start_worker(folder: Path) -> Iterator[Callable[[], Worker]]:
    """Starts worker processes that write their files and wait; they are ended after the test."""
    folder.mkdir()
    started: list[subprocess.Popen[str]] = []

    def start() -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-c", WORKER, str(folder)], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        started.append(process)
        assert process.stdout is not None and process.stdout.readline() == "written\n"
        return process

    yield start
    for process in started:
        process.communicate(timeout=120)


def kill(process: Worker) -> int:
    """`kill -9`; the pid, once the process is dead and reaped."""
    process.kill()
    os.waitid(os.P_PID, process.pid, os.WEXITED | os.WNOWAIT)  # dead, not reaped yet: a zombie
    assert not process_alive(process.pid)
    process.wait(timeout=120)
    assert not process_alive(process.pid)
    return process.pid


def exported(folder: Path) -> dict[str, list[dict[str, str]]]:
    """Each metric family's sample labels as `/metrics` would export them from `folder`."""
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return {family.name: [sample.labels for sample in family.samples] for family in registry.collect()}


def requests_counted(folder: Path) -> float:
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return sum(s.value for f in registry.collect() if f.name == "classifier_requests" for s in f.samples
               if s.name.endswith("_total"))  # fmt: skip


def test_a_replacement_removes_a_dead_workers_files_and_keeps_its_counts(
    folder: Path, start_worker: Callable[[], Worker]
) -> None:
    survivor, victim = start_worker(), start_worker()
    dead = kill(victim)
    assert {int(s["pid"]) for s in exported(folder)["classifier_worker_heartbeat_timestamp_seconds"]} == {
        survivor.pid,
        dead,
    }
    replacement = SlidingCounts(folder, KEY, WIDTH, SLOT_SECONDS, SLOTS)  # this process replaces the dead one
    window = replacement.total().tolist()

    workers = Workers(folder, respawned=True)
    assert workers.dead() == [dead] and workers.lost() == []
    assert workers.clean_up([replacement]) == [dead]

    heartbeats = exported(folder)["classifier_worker_heartbeat_timestamp_seconds"]
    assert [int(s["pid"]) for s in heartbeats] == [survivor.pid]  # the dead worker's series is no longer exported
    left = sorted(p.name for p in folder.iterdir() if str(dead) in p.name)
    assert left == [f"counter_{dead}.db", f"histogram_{dead}.db"]  # its counts stay in the sums; gauges, window go
    assert requests_counted(folder) == 6
    assert replacement.total().tolist() == window == [10.0, 14.0]  # the dead worker's rows, taken over
    assert workers.dead() == [] and workers.clean_up([replacement]) == []


def test_where_no_one_replaces_a_worker_its_files_stay_and_it_is_lost(
    folder: Path, start_worker: Callable[[], Worker]
) -> None:
    survivor, victim = start_worker(), start_worker()
    dead = kill(victim)
    before = sorted(p.name for p in folder.iterdir())
    workers = Workers(folder, respawned=False)
    assert workers.clean_up([]) == []
    assert workers.lost() == workers.dead() == [dead]
    assert sorted(p.name for p in folder.iterdir()) == before
    assert process_alive(survivor.pid)


def test_livez_fails_naming_a_lost_worker_where_no_one_replaces_it(
    api: TestClient, folder: Path, start_worker: Callable[[], Worker], monkeypatch: pytest.MonkeyPatch
) -> None:
    dead = kill(start_worker())
    service = bentoml.get_current_service()
    monkeypatch.setattr(service, "workers", Workers(folder, respawned=False))  # a container BentoML built
    error = assert_error(api.get("/livez"), 503, "unavailable")
    assert f"worker pid {dead} of this server died" in error["message"]
    assert "restart the container" in error["message"]
    assert api.get("/readyz").status_code == 200
    monkeypatch.setattr(service, "workers", Workers(folder, respawned=True))  # `bentoml serve`: circus replaces it
    assert api.get("/livez").status_code == 200
