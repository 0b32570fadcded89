"""A real Prometheus, with the shipped scrape config and rules, scraping the service run by two workers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
import yaml

from models.catalog import CATALOG, held_out_rows
from tests.e2e.conftest import PROJECT, answers_200, free_port, scrape, value, wait_until

pytestmark = pytest.mark.e2e

SHIPPED = PROJECT / "deploy" / "prometheus"


@pytest.fixture(scope="module")
def prometheus(monitored_server: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Base URL of a Prometheus on loopback: the shipped config, pointed at the server, scraping every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not on PATH: run scripts/install-system-deps.sh")
    home = tmp_path_factory.mktemp("prometheus")
    config = yaml.safe_load((SHIPPED / "prometheus.yml").read_text())
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(SHIPPED / path) for path in config["rule_files"]]
    (job,) = config["scrape_configs"]
    job["static_configs"] = [{"targets": [monitored_server.removeprefix("http://")]}]
    (home / "prometheus.yml").write_text(yaml.safe_dump(config))
    # every series exists before the first scrape, so that rate() over the test's window sees its traffic whole
    for model in CATALOG:
        rows = held_out_rows(model)[:1].tolist()
        assert httpx.post(f"{monitored_server}/predict", json={"model": model, "instances": rows}).status_code == 200
    port = free_port()
    log = (home / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [binary, f"--config.file={home / 'prometheus.yml'}", f"--storage.tsdb.path={home / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: answers_200(f"{url}/-/ready", process, home / "prometheus.log"), "Prometheus to start", 60)
        wait_until(lambda: query(url, 'up{job="classifier-service"}') == [1.0], "the first scrape of the service")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)
        log.close()


def query(url: str, promql: str) -> list[float]:
    """The values of an instant query's result vector."""
    body: dict[str, Any] = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=10).json()
    assert body["status"] == "success", body
    return [float(sample["value"][1]) for sample in body["data"]["result"]]


def test_scraped_values_and_recording_rules_match_the_service(monitored_server: str, prometheus: str) -> None:
    model = "digit_groups"
    before = scrape(monitored_server)
    # noisy rows: their mean confidence differs from the validation one, so the estimate's offset shows
    X = np.clip(held_out_rows(model) + np.random.default_rng(1).normal(0, 4, (450, 64)), 0, 16)
    for start in range(0, len(X), 150):
        rows = X[start : start + 150].tolist()
        assert httpx.post(f"{monitored_server}/predict", json={"model": model, "instances": rows}).status_code == 200
    after = scrape(monitored_server)

    ok_requests = value(after, "classifier_requests_total", model=model, endpoint="/predict", code="ok")
    counter = f'sum(classifier_requests_total{{model="{model}",endpoint="/predict",code="ok"}})'
    wait_until(lambda: query(prometheus, counter) == [ok_requests], f"Prometheus to see {ok_requests} requests")

    # every worker's heartbeat is scraped, and the recording rule counts them alive
    assert len(query(prometheus, "classifier_worker_heartbeat_timestamp_seconds")) == 2
    wait_until(lambda: query(prometheus, "classifier:workers_alive") == [2.0], "classifier:workers_alive == 2")

    # the label-free estimate: live mean confidence of this traffic, less the validation calibration gap
    def delta(name: str) -> float:
        return value(after, name, model=model) - value(before, name, model=model)

    live_mean = delta("classifier_prediction_confidence_sum") / delta("classifier_prediction_confidence_count")
    baseline = value(after, "classifier_validation_mean_confidence", model=model)
    assert abs(live_mean - baseline) > 0.01
    expected = live_mean - baseline + value(after, "classifier_validation_accuracy", model=model)
    estimate = f'classifier:estimated_accuracy:rate1h{{model="{model}"}}'
    wait_until(lambda: _close(query(prometheus, estimate), expected), f"{estimate} == {expected}")

    # the drift gauges computed at scrape time reach Prometheus as the service renders them
    service_psi = value(scrape(monitored_server), "classifier_prediction_drift_psi", model=model)
    scraped_psi = query(prometheus, f'classifier_prediction_drift_psi{{model="{model}"}}')
    assert len(scraped_psi) == 1 and np.isfinite(scraped_psi[0]) and np.isclose(scraped_psi[0], service_psi)


def _close(values: list[float], expected: float) -> bool:
    # rate() extrapolates the _sum and _count series to the range ends by slightly different factors (they
    # start at different values), so the ratio is exact to about 1e-5, far below the offset being checked
    return len(values) == 1 and bool(np.isclose(values[0], expected, rtol=0, atol=2e-4))
