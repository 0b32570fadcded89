"""E2E fixtures: real `bentoml serve` processes of the default catalog, on free loopback ports.

The catalog is registered once (`python -m models ensure`) into a session store; each server gets its own
BentoML home with a copy of it, because a server wipes its home's Prometheus folder at start.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

PROJECT = Path(__file__).resolve().parents[2]
READY_TIMEOUT_S = 600  # a loaded machine has taken minutes to start a worker
SERVERS: dict[str, subprocess.Popen[bytes]] = {}  # the running servers by base URL, for tests that kill one
SERVER_LOGS: dict[str, Path] = {}  # their logs: a wait that times out shows their tails

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 180.0) -> None:
    """Poll `condition` until it holds; fail naming `what` at the deadline, with the running servers' log tails."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {url}: {log}\n{log.read_text()[-3000:]}" for url, log in SERVER_LOGS.items())
            pytest.fail(f"timed out after {timeout}s waiting for {what}{tails}")
        time.sleep(0.1)


def answers_200(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    """Whether `url` answers 200 yet; fails the test with the log's tail if `process` has exited."""
    if process.poll() is not None:
        pytest.fail(f"{process.args[0]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def scrape(url: str) -> Samples:
    """Every sample of `/metrics`, keyed by (sample name, labels)."""
    text = httpx.get(f"{url}/metrics", timeout=10).text
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


LOAD_CONNECTIONS = 4
Answer = tuple[int, str | None]  # a /predict answer's status, and the version that made it


@contextlib.contextmanager
def predict_load(url: str, model: str, rows: list[Any]) -> Iterator[list[Answer]]:
    """`LOAD_CONNECTIONS` clients posting `rows` to `/predict` in a closed loop until the block ends; yields the
    answers as they arrive."""
    answers: list[Answer] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(timeout=120) as client:
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
            thread.join(timeout=120)


def serves_everywhere(url: str, model: str, task: str, served: str, replaced: str) -> bool:
    """Whether every worker serves `served` in place of `replaced`: `classifier_model_info` is the workers' max, 0
    for `replaced` once every worker has replaced it."""
    samples = scrape(url)
    info = {v: value(samples, "classifier_model_info", model=model, version=v, task=task) for v in (served, replaced)}
    return info == {served: 1.0, replaced: 0.0}


@pytest.fixture(scope="session")
def e2e_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment of a session BentoML home holding the catalog, registered by `python -m models ensure`."""
    home = tmp_path_factory.mktemp("e2e-bentoml")
    env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "True"}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)  # bentoml serve sets its own per server
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
    port = free_port()
    log = home / "serve.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "bentoml", "serve", "service.app:ClassifierService",
             "--host", "127.0.0.1", "--port", str(port)],
            cwd=PROJECT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    SERVERS[url] = process
    SERVER_LOGS[url] = log
    try:
        wait_until(lambda: answers_200(f"{url}/readyz", process, log), f"bentoml serve on {url}", READY_TIMEOUT_S)
        yield url
    finally:
        del SERVERS[url], SERVER_LOGS[url]
        stop(process, signal.SIGTERM)


def stop(process: subprocess.Popen[bytes], how: signal.Signals) -> None:
    """Signal a server's arbiter and, for SIGKILL, its workers too: circus starts each worker in a session of its
    own, so only the arbiter stops them gracefully. Whatever is left after 60 s is killed."""
    workers = _workers(process)
    with contextlib.suppress(ProcessLookupError):  # already gone, or killed by the test
        os.killpg(process.pid, how)
    if how == signal.SIGKILL:
        _kill(workers)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    _kill([w for w in workers if w.is_running()])


def _workers(process: subprocess.Popen[bytes]) -> list[psutil.Process]:
    with contextlib.suppress(psutil.NoSuchProcess):
        return list(psutil.Process(process.pid).children(recursive=True))
    return []


def _kill(processes: list[psutil.Process]) -> None:
    for child in processes:
        with contextlib.suppress(psutil.NoSuchProcess):
            child.kill()
    psutil.wait_procs(processes, timeout=60)


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
