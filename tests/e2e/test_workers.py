"""A worker killed with `kill -9` under `bentoml serve` with two workers.

Outside a container BentoML lets circus respawn workers: the killed one is replaced, the replacement serves, and it
removes what the dead worker left in the Prometheus folder (its heartbeat series stops being exported) and takes
over its drift window. In a container BentoML built (`BENTOML_CONTAINERIZED`) nothing is respawned: `/livez` fails,
so that the orchestrator restarts the container, while the other worker serves on and the dead one's heartbeat
stays frozen (the `ClassifierWorkerLost` alert's signal).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from bench.servers import READY_TIMEOUT_S
from service.home import server_metrics_folder
from service.monitoring.monitor import RECONSTRUCTION_TOTALS
from service.monitoring.window import TOTALS, window_file
from tests.e2e.conftest import SERVERS, TIMEOUT, Samples, heartbeats, scrape_when, serving, value, wait_until
from tests.helpers import digits_rows

pytestmark = pytest.mark.e2e

HEARTBEAT_S = 0.2
ROWS = digits_rows(10)[0].tolist()
OK = {"model": "digits", "endpoint": "/predict", "code": "ok"}


def predict(url: str) -> None:
    """One request on a connection of its own (a kept-alive one could lead to a dead worker)."""
    response = httpx.post(f"{url}/predict", json={"model": "digits", "instances": ROWS}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text


def counted(url: str, requests: int) -> None:
    """Wait until every worker wrote what it counted of `requests` requests: the digits drift window (summed over
    the workers' files) holds their rows, and `classifier_requests_total` their number."""

    def written(samples: Samples) -> bool:
        rows = value(samples, "classifier_drift_window_rows", model="digits")
        return rows == requests * len(ROWS) and value(samples, "classifier_requests_total", **OK) == requests

    scrape_when(url, written, f"the counts of {requests} requests")


def replaced(url: str, dead: int) -> bool:
    """Whether two workers beat again, `dead` not among them (its series no longer exported)."""
    beats = heartbeats(url)
    return len(beats) == 2 and dead not in beats


def test_a_killed_worker_is_replaced_serves_and_leaves_only_its_counts_behind(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home: Path = tmp_path_factory.mktemp("serve-workers-respawned")
    with serving(e2e_env, home, workers="2", models="digits", heartbeat_seconds=str(HEARTBEAT_S)) as url:
        wait_until(lambda: len(heartbeats(url)) == 2, "both workers' heartbeats")
        first, second = sorted(heartbeats(url))
        for _ in range(5):
            predict(url)
        counted(url, 5)  # written by the workers before one is killed

        os.kill(first, signal.SIGKILL)
        wait_until(lambda: replaced(url, first), f"a worker in place of pid {first}", READY_TIMEOUT_S)
        (replacement,) = set(heartbeats(url)) - {second}
        # kill the other original too: until it is replaced, only the replacement can answer
        os.kill(second, signal.SIGKILL)
        for _ in range(5):
            predict(url)
        wait_until(lambda: replaced(url, second), f"a worker in place of pid {second}", READY_TIMEOUT_S)
        assert replacement in heartbeats(url)

        counted(url, 10)  # the dead workers' window rows were taken over, and their counters still add up
        folder = server_metrics_folder(home, SERVERS[url].pid)
        left = sorted(p.name for p in folder.iterdir() if str(first) in p.name or str(second) in p.name)
        version = httpx.get(f"{url}/models/digits", timeout=TIMEOUT).json()["version"]
        counts = [f"{kind}_{pid}.db" for kind in ("counter", "histogram") for pid in (first, second)]
        kinds = (TOTALS, RECONSTRUCTION_TOTALS)  # counts since the start: they outlive their writer
        bins = [window_file(f"digits-{version}", str(pid), kind) for kind in kinds for pid in (first, second)]
        assert left == sorted(counts + bins)
        assert httpx.get(f"{url}/livez", timeout=TIMEOUT).status_code == 200
        assert httpx.get(f"{url}/readyz", timeout=TIMEOUT).status_code == 200


def test_in_a_container_a_killed_worker_fails_livez_and_the_other_serves_on(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("serve-workers-container")
    container = {**e2e_env, "BENTOML_CONTAINERIZED": "true"}  # what BentoML's Dockerfile sets
    with serving(container, home, workers="2", models="digits", heartbeat_seconds=str(HEARTBEAT_S)) as url:
        wait_until(lambda: len(heartbeats(url)) == 2, "both workers' heartbeats")
        victim, survivor = sorted(heartbeats(url))
        assert httpx.get(f"{url}/livez", timeout=TIMEOUT).status_code == 200
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()

        wait_until(lambda: httpx.get(f"{url}/livez", timeout=TIMEOUT).status_code == 503, "/livez to fail")
        error = httpx.get(f"{url}/livez", timeout=TIMEOUT).json()["error"]
        assert error["code"] == "unavailable" and f"worker pid {victim} of this server died" in error["message"]
        predict(url)
        assert httpx.get(f"{url}/readyz", timeout=TIMEOUT).status_code == 200  # why /livez must say it
        wait_until(lambda: heartbeats(url)[survivor] > killed_at + 5 * HEARTBEAT_S, "the survivor to beat on")
        assert heartbeats(url)[victim] <= killed_at  # the dead worker's series stays, frozen
