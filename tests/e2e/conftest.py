"""E2E fixtures: real `bentoml serve` processes of the default catalog, started by the benchmarks' launcher
(`bench.servers`: a free loopback port, its own process group, a ready wait that fails with the server's log).

The catalog is registered once (`python -m models ensure`) into a session store; each server gets its own
BentoML home with a copy of it, because a server wipes its home's Prometheus folder at start.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench import servers
from bench.servers import PROJECT, REQUEST_TIMEOUT_S, STOP_TIMEOUT_S, isolated_env, log_tail
from bench.soak.prometheus import running

WAIT_S = 300.0  # a condition a test polls for: another worker's metrics, a promotion followed, a scrape
TIMEOUT = httpx.Timeout(REQUEST_TIMEOUT_S)
SERVERS: dict[str, subprocess.Popen[bytes]] = {}  # the running servers by base URL, for tests that kill one
SERVER_LOGS: dict[str, Path] = {}  # their logs: a wait that times out shows their tails

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Poll `condition` until it holds; fail naming `what` at the deadline, with the running servers' log tails."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}{log_tails(SERVER_LOGS.items())}")
        time.sleep(0.1)


def log_tails(logs: Iterable[tuple[str, Path]]) -> str:
    return "".join(f"\n--- {name}: {log}\n{log_tail(log)}" for name, log in logs)


def scrape(url: str) -> Samples:
    """Every sample of `/metrics`, keyed by (sample name, labels)."""
    text = httpx.get(f"{url}/metrics", timeout=TIMEOUT).text
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape_when(url: str, ready: Callable[[Samples], bool], what: str) -> Samples:
    """The first scrape for which `ready` holds. A worker writes its metric increments every
    `CLF_METRICS_FLUSH_SECONDS` (and when it answers `/metrics`), so another worker's arrive up to that late."""
    found: Samples = {}

    def settled() -> bool:
        nonlocal found
        found = scrape(url)
        return ready(found)

    wait_until(settled, what)
    return found


def increased(before: Samples, name: str, by: float, **labels: str) -> Callable[[Samples], bool]:
    """A `scrape_when` condition: `name{labels}` has grown by `by` since `before`."""
    return lambda samples: value(samples, name, **labels) - value(before, name, **labels) >= by


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples of `name` whose labels include `labels` (a counter of a model sums its versions, unless
    `version` is given); 0 when there is none yet (a counter never incremented)."""
    return sum(matching(samples, name, **labels).values())


def matching(samples: Samples, name: str, **labels: str) -> dict[frozenset[tuple[str, str]], float]:
    """Every series of `name` whose labels include `labels`."""
    wanted = set(labels.items())
    return {key: v for (sample, key), v in samples.items() if sample == name and wanted <= key}


@contextlib.contextmanager
def prometheus_scraping(urls: list[str], home: Path) -> Iterator[str]:
    """A Prometheus on loopback with the shipped config and rules (the soak's, `bench.soak.prometheus`), scraping
    the servers at `urls` and evaluating the rules every second; yields its base URL once it has scraped them all."""
    with running(urls, home, 1.0) as prometheus:
        SERVER_LOGS[prometheus.url] = prometheus.server.log
        try:
            yield prometheus.url
        finally:
            del SERVER_LOGS[prometheus.url]


def query(url: str, promql: str) -> list[float]:
    """The values of an instant query's result vector."""
    return list(query_series(url, promql).values())


def query_series(url: str, promql: str) -> dict[frozenset[tuple[str, str]], float]:
    """An instant query's result vector: labels -> value."""
    body: dict[str, Any] = httpx.get(f"{url}/api/v1/query", params={"query": promql}, timeout=TIMEOUT).json()
    assert body["status"] == "success", body
    return {frozenset(s["metric"].items()): float(s["value"][1]) for s in body["data"]["result"]}


LOAD_CONNECTIONS = 4
Answer = tuple[int, str | None]  # a /predict answer's status, and the version that made it


@contextlib.contextmanager
def predict_load(url: str, model: str, rows: list[Any]) -> Iterator[list[Answer]]:
    """`LOAD_CONNECTIONS` clients posting `rows` to `/predict` in a closed loop until the block ends; yields the
    answers as they arrive."""
    answers: list[Answer] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=TIMEOUT) as client:
            while not stop.is_set():
                response = client.post(f"{url}/predict", json={"model": model, "instances": rows})
                version = response.json().get("version") if response.status_code == 200 else None
                answers.append((response.status_code, version))

    threads = [threading.Thread(target=load) for _ in range(LOAD_CONNECTIONS)]
    for thread in threads:
        thread.start()
    try:
        yield answers
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=STOP_TIMEOUT_S)


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent and answered, its status (or the transport error's name), its prediction ids."""

    sent: float
    answered: float
    status: int | str
    ids: tuple[str, ...] = ()


@contextlib.contextmanager
def recorded_load(url: str, model: str, rows: list[Any], clients: int = 8) -> Iterator[list[Outcome]]:
    """`clients` clients posting `rows` to `/predict` in a closed loop, each request's outcome recorded, a transport
    error by its name (a server that stops); yields the outcomes once 200 requests were answered, stops the clients
    when the block ends."""
    outcomes: list[Outcome] = []
    done = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=TIMEOUT) as http:
            while not done.is_set():
                sent = time.time()
                try:
                    response = http.post(f"{url}/predict", json={"model": model, "instances": rows})
                except httpx.TransportError as exc:
                    outcomes.append(Outcome(sent, time.time(), type(exc).__name__))
                    continue
                ids = tuple(p["id"] for p in response.json()["predictions"]) if response.status_code == 200 else ()
                outcomes.append(Outcome(sent, time.time(), response.status_code, ids))

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: sum(o.status == 200 for o in outcomes) >= 200, "200 answers before the signal")
        yield outcomes
    finally:
        done.set()
        for thread in threads:
            thread.join(STOP_TIMEOUT_S)


def assert_under_way_answered(outcomes: list[Outcome], signalled: float) -> None:
    """Every request sent before the signal was answered 200, some of them after it (they were under way)."""
    before = [o for o in outcomes if o.sent < signalled]
    under_way = [o for o in before if o.answered >= signalled]
    assert under_way and {o.status for o in before} == {200}, [o for o in before if o.status != 200]


def heartbeats(url: str) -> dict[int, float]:
    """Each worker's last heartbeat, by pid."""
    series = matching(scrape(url), "classifier_worker_heartbeat_timestamp_seconds")
    return {int(dict(labels)["pid"]): v for labels, v in series.items()}


def serves_everywhere(url: str, model: str, task: str, served: str, replaced: str) -> bool:
    """Whether every worker serves `served` in place of `replaced`: `classifier_model_info` is the workers' max, 0
    for `replaced` once every worker has replaced it."""
    samples = scrape(url)
    info = {v: value(samples, "classifier_model_info", model=model, version=v, task=task) for v in (served, replaced)}
    return info == {served: 1.0, replaced: 0.0}


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a session BentoML home holding the catalog, registered by `python -m models ensure`."""
    env = isolated_env(tmp_path_factory.mktemp("e2e-bentoml"))
    subprocess.run([sys.executable, "-m", "models", "ensure"], cwd=PROJECT, env=env, check=True)
    return env


@contextlib.contextmanager
def serving(e2e_env: dict[str, str], home: Path, **settings: str) -> Iterator[str]:
    """A `bentoml serve` of the catalog with `CLF_*` settings, in its own home; yields its base URL.

    The prediction log is a SQLite file in `home/data` unless `data_dir` or `database_url` say otherwise; a home
    served before keeps its models and its log (a restart).
    """
    if not (home / "models").exists():
        shutil.copytree(Path(e2e_env["BENTOML_HOME"]) / "models", home / "models")
    settings = {"data_dir": str(home / "data"), **settings}
    env = {**e2e_env, "BENTOML_HOME": str(home), **{f"CLF_{k.upper()}": v for k, v in settings.items()}}
    with servers.launched("bentoml serve", servers.service_command, home / "serve.log", env) as server:
        SERVERS[server.url] = server.process
        SERVER_LOGS[server.url] = server.log
        try:
            yield server.url
        finally:
            del SERVERS[server.url], SERVER_LOGS[server.url]
            stop(server.process, signal.SIGTERM, server.log)


def stop(process: subprocess.Popen[bytes], how: signal.Signals, log: Path | None = None) -> None:
    """`bench.servers.stop`: signal a server's process group (SIGKILL: its workers too, by pid). A server still
    running after `STOP_TIMEOUT_S` is killed, and the test fails with its `log`'s tail."""
    if not servers.stop(process, how):
        tail = log_tails([(str(process.args), log)]) if log is not None else ""
        pytest.fail(f"{process.args} did not stop within {STOP_TIMEOUT_S}s of {how.name}{tail}")


@pytest.fixture(scope="session")
def server(e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The catalog served as `make serve` does (default settings, one worker)."""
    with serving(e2e_env, tmp_path_factory.mktemp("serve-default")) as url:
        yield url


@pytest.fixture(scope="session")
def monitored_server(e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The catalog served by two workers, for monitoring scenarios and the Prometheus test."""
    with serving(e2e_env, tmp_path_factory.mktemp("serve-monitored"), workers="2") as url:
        yield url
