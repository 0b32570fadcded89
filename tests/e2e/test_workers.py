"""Lost capacity: a killed worker is not restarted and `/readyz` stays 200, but its heartbeat stops."""

from __future__ import annotations

import os
import signal
import time

import httpx
import pytest

from tests.e2e.conftest import matching, scrape, serving, wait_until

pytestmark = pytest.mark.e2e

HEARTBEAT_S = 0.2


def heartbeats(url: str) -> dict[int, float]:
    series = matching(scrape(url), "classifier_worker_heartbeat_timestamp_seconds")
    return {int(dict(labels)["pid"]): v for labels, v in series.items()}


def test_a_killed_workers_heartbeat_stops_while_the_others_go_on(
    e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> None:
    home = tmp_path_factory.mktemp("serve-workers")
    with serving(e2e_env, home, workers="2", models="digits", heartbeat_seconds=str(HEARTBEAT_S)) as url:
        wait_until(lambda: len(heartbeats(url)) == 2, "both workers' heartbeats")
        victim, survivor = sorted(heartbeats(url))
        os.kill(victim, signal.SIGKILL)
        killed_at = time.time()
        wait_until(lambda: heartbeats(url)[survivor] > killed_at + 5 * HEARTBEAT_S, "the survivor to beat on")
        beats = heartbeats(url)
        assert beats[victim] <= killed_at  # the dead worker's series stays, frozen: the alert's signal
        assert beats[survivor] - beats[victim] > 5 * HEARTBEAT_S
        assert httpx.get(f"{url}/readyz").status_code == 200  # why the heartbeat is needed
