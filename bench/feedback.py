"""The feedback benchmark: `POST /feedback` items/s in FEEDBACK_ITEMS-item label batches, per database.

Per database one `bentoml serve` (1 worker, FEEDBACK_MODEL only, prediction log on), started like the load servers
(own home and data folder, own process group, stopped on any exit): SQLite is the default file in the server's data
folder, PostgreSQL a throwaway cluster with fsync on (`bench.postgres`). FEEDBACK_PREDICTIONS predictions are created
first and waited for until the log has written them: labels usually arrive long after their prediction, and the
service makes feedback for an id it has not written yet wait for the writer, which is not what is measured here.

The client is this process: FEEDBACK_CONNECTIONS threads, each with one keep-alive httpx connection, posting pre-encoded
bodies taken in turn from one shared sequence, closed loop like wrk. At 100 items per body the target is tens of
requests per second, far below what the client can send; its own CPU per request is reported to show it. wrk is
not used: it cannot read the answers, and a 200 may still refuse items.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import re
import sqlite3
import subprocess
import threading
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import httpx
import numpy as np
import orjson
import psutil

from . import config, payloads
from .config import WARMUP_S, Variant
from .postgres import PostgresUnavailable, server_bin, throwaway_cluster
from .results import FeedbackResult
from .servers import JSON, Server, ServerError, cpu_delta, cpu_seconds, http_status, rss_mb, serving

logger = logging.getLogger("bench.feedback")

POLL_S = 0.5


class FeedbackError(RuntimeError):
    """The predictions to label could not be created or were not written."""


def variant(database: str) -> Variant:
    """The server of one database's run: the default service, prediction log on, serving FEEDBACK_MODEL only."""
    return Variant(
        f"feedback_{database}",
        f"service 1 worker, prediction log on {config.FEEDBACK_DATABASES[database]}",
        models=(config.FEEDBACK_MODEL,),
    )


# ---------------------------------------------------------------- the bodies


def truth(model: str, rows: int) -> list[str]:
    """The held-out labels of the rows `payloads.body(model, rows)` sends (repeated the same way)."""
    from models.catalog import evaluation_rows

    return [str(label) for label in np.resize(evaluation_rows(model)[1], rows)]


def interleave(requests: Sequence[Sequence[str]]) -> list[tuple[str, int]]:
    """(id, row) of every created prediction, row by row across requests: the items of one body label predictions
    of different requests, as feedback on predictions made at different times does, not one request's rows."""
    longest = max((len(ids) for ids in requests), default=0)
    return [(ids[row], row) for row in range(longest) for ids in requests if row < len(ids)]


def corrected(label: str, classes: Sequence[str]) -> str:
    """Another class than `label`: a relabel is a correction."""
    return next((c for c in classes if c != label), label)


def encode(items: Sequence[tuple[str, str]], per_body: int) -> list[bytes]:
    """`/feedback` bodies of at most `per_body` (prediction id, label) items each."""
    chunks = (items[start : start + per_body] for start in range(0, len(items), per_body))
    return [orjson.dumps({"feedback": [{"prediction_id": i, "label": tag} for i, tag in chunk]}) for chunk in chunks]


@dataclass
class Bodies:
    """Every created prediction labelled once (`fresh`, its true label), then, once those are used up, again with
    another label (`relabel`), then with the true label again, and so on: bodies are taken in turn, thread-safely."""

    fresh: list[bytes]
    relabel: list[bytes]
    _next: Iterator[int] = field(default_factory=itertools.count)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def take(self) -> tuple[bytes, bool]:
        """The next body, and whether it labels its predictions for the first time."""
        with self._lock:
            index = next(self._next)
        cycle, position = divmod(index, len(self.fresh))
        if cycle == 0:
            return self.fresh[position], True
        return (self.relabel if cycle % 2 else self.fresh)[position], False


def bodies(requests: Sequence[Sequence[str]], labels: Sequence[str], per_body: int) -> Bodies:
    """The bodies labelling every prediction of `requests` (ids per request; `labels` per row)."""
    classes = sorted(set(labels))
    order = interleave(requests)
    fresh = encode([(i, labels[row]) for i, row in order], per_body)
    relabel = encode([(i, corrected(labels[row], classes)) for i, row in order], per_body)
    return Bodies(fresh, relabel)


# ---------------------------------------------------------------- the predictions to label


def create_predictions(client: httpx.Client, url: str, model: str, count: int, rows: int) -> list[list[str]]:
    """`count` predictions in `rows`-row /predict requests (the load's held-out rows); their ids per request."""
    body = payloads.body(model, rows)
    requests = []
    for _ in range(math.ceil(count / rows)):
        status, answer = http_status(f"{url}/predict", body, timeout=60.0, client=client)
        if status != 200:
            raise FeedbackError(f"creating predictions: /predict answered HTTP {status}: {answer[:300]!r}")
        requests.append([p["id"] for p in orjson.loads(answer)["predictions"]])
    return requests


def wait_written(client: httpx.Client, url: str, requests: list[list[str]], timeout: float) -> list[list[str]]:
    """The requests the log has written, once the last one is readable (one worker writes in order); a request
    missing then was dropped by the log (its queue was full) and is left out."""

    def readable(prediction_id: str) -> bool:
        return http_status(f"{url}/predictions/{prediction_id}", timeout=30.0, client=client)[0] == 200

    deadline = time.monotonic() + timeout
    last = requests[-1][-1]
    while not readable(last):
        if time.monotonic() > deadline:
            raise FeedbackError(f"prediction {last} was not readable after {timeout:.0f} s")
        time.sleep(POLL_S)
    written = [ids for ids in requests if readable(ids[-1])]
    if len(written) < len(requests):
        lost = len(requests) - len(written)
        logger.warning("%d of %d /predict requests were not logged: left out", lost, len(requests))
    return written


# ---------------------------------------------------------------- the client


@dataclass(frozen=True)
class Sample:
    """One `/feedback` request as the client saw it."""

    latency_s: float
    fresh: bool
    status: int  # 0: no answer
    accepted: int = 0
    refused: int = 0
    error: str | None = None  # the first refusal, or why the request failed


def sample_of(status: int, answer: bytes, latency_s: float, fresh: bool) -> Sample:
    """A sample from an answer: a 200 says how many items were accepted and why the others were refused."""
    if status != 200:
        return Sample(latency_s, fresh, status, error=f"HTTP {status}: {answer[:300]!r}")
    try:
        body = orjson.loads(answer)
        accepted, errors = int(body["accepted"]), list(body["errors"])
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return Sample(latency_s, fresh, 0, error=f"unreadable 200 answer: {answer[:300]!r}")
    first = None if not errors else f"{errors[0].get('code')}: {errors[0].get('message')}"
    return Sample(latency_s, fresh, status, accepted, len(errors), first)


def post(client: httpx.Client, body: bytes, fresh: bool) -> Sample:
    started = time.perf_counter()
    try:
        response = client.post("/feedback", content=body, headers=JSON)
    except httpx.HTTPError as exc:  # the client opens a new connection for the next request
        return Sample(time.perf_counter() - started, fresh, 0, error=f"{type(exc).__name__}: {exc}")
    return sample_of(response.status_code, response.content, time.perf_counter() - started, fresh)


def load(clients: Sequence[httpx.Client], source: Bodies, duration_s: float) -> tuple[list[Sample], float]:
    """Closed loop for `duration_s`: each client, on a thread of its own, posts its next body when the previous
    answer has arrived. Returns the samples and the seconds until the last answer."""
    samples: list[Sample] = []
    deadline = time.monotonic() + duration_s

    def send(client: httpx.Client) -> None:
        while time.monotonic() < deadline:
            samples.append(post(client, *source.take()))

    started = time.monotonic()
    threads = [threading.Thread(target=send, args=(c,), name=f"feedback-client-{n}") for n, c in enumerate(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples, time.monotonic() - started


def percentile(values: Sequence[float], q: float) -> float | None:
    """The nearest-rank `q`th percentile (None without values)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))]


# ---------------------------------------------------------------- one database


def database_processes(url: str | None) -> list[psutil.Process]:
    """PostgreSQL's postmaster of `url` (its port is on its command line) and its backends; none for SQLite."""
    if url is None:
        return []
    port = urllib.parse.urlsplit(url).port
    for process in psutil.process_iter(["name", "cmdline"]):
        if process.info["name"] == "postgres" and f"port={port}" in (process.info["cmdline"] or []):
            with contextlib.suppress(psutil.NoSuchProcess):
                return [process, *process.children(recursive=True)]
    return []


@dataclass(frozen=True)
class Usage:
    """CPU seconds of the server tree, the database's processes and this process, at one moment."""

    server: dict[int, float]
    database: dict[int, float]
    client: float

    @staticmethod
    def now(server: Server, database_url: str | None) -> Usage:
        return Usage(cpu_seconds(server.tree()), cpu_seconds(database_processes(database_url)), time.process_time())


def summarize(
    database: str, samples: Sequence[Sample], elapsed_s: float, before: Usage, after: Usage
) -> FeedbackResult:
    """The figures of one measured run from its samples and the CPU used meanwhile."""
    answered = [s for s in samples if s.status == 200]
    latencies_ms = [1e3 * s.latency_s for s in answered]
    per_request = 1e3 / len(answered) if answered else None
    database_cpu = cpu_delta(before.database, after.database) if after.database else None

    def ms(seconds: float | None) -> float | None:
        return None if seconds is None or per_request is None else seconds * per_request

    return FeedbackResult(
        database=database,
        items_per_request=config.FEEDBACK_ITEMS,
        connections=config.FEEDBACK_CONNECTIONS,
        duration_s=elapsed_s,
        requests=len(answered),
        failed_requests=len(samples) - len(answered),
        items=sum(s.accepted for s in answered),
        item_errors=sum(s.refused for s in answered),
        fresh_items=sum(s.accepted for s in answered if s.fresh),
        relabel_items=sum(s.accepted for s in answered if not s.fresh),
        p50_ms=percentile(latencies_ms, 50),
        p99_ms=percentile(latencies_ms, 99),
        server_cpu_ms_per_request=ms(cpu_delta(before.server, after.server)),
        database_cpu_ms_per_request=ms(database_cpu),
        client_cpu_ms_per_request=ms(after.client - before.client),
        first_error=next((s.error for s in samples if s.error), None),
    )


def measure(server: Server, database: str, database_url: str | None, duration_s: float) -> FeedbackResult:
    """Create and wait for the predictions, warm up for WARMUP_S, then the measured run with CPU and RSS. The clients
    are made first: making one costs milliseconds of CPU (its TLS context), which the client's figure would count."""
    with contextlib.ExitStack() as stack:
        clients = [
            stack.enter_context(httpx.Client(base_url=server.url, timeout=config.FEEDBACK_REQUEST_TIMEOUT_S))
            for _ in range(config.FEEDBACK_CONNECTIONS)
        ]
        started = time.monotonic()
        created = create_predictions(
            clients[0], server.url, config.FEEDBACK_MODEL, config.FEEDBACK_PREDICTIONS, config.FEEDBACK_PREDICT_ROWS
        )
        written = wait_written(clients[0], server.url, created, config.FEEDBACK_WRITE_TIMEOUT_S)
        write_wait_s = time.monotonic() - started
        source = bodies(written, truth(config.FEEDBACK_MODEL, config.FEEDBACK_PREDICT_ROWS), config.FEEDBACK_ITEMS)
        load(clients, source, WARMUP_S)
        server.check_alive()
        before = Usage.now(server, database_url)
        samples, elapsed = load(clients, source, duration_s)
        after = Usage.now(server, database_url)
    server.check_alive()
    return replace(
        summarize(database, samples, elapsed, before, after),
        predictions=sum(len(ids) for ids in written),
        write_wait_s=write_wait_s,
        rss_mb=rss_mb(server.tree()),
    )


@contextlib.contextmanager
def database_url(database: str) -> Iterator[str | None]:
    """None for SQLite (the server's own data folder), a throwaway cluster's URL (fsync on) for PostgreSQL."""
    if database == "sqlite":
        yield None
        return
    with throwaway_cluster(fsync=True) as url:
        yield url


def database_version(database: str) -> str:
    """SQLite's library version (the server's Python is this one), or the PostgreSQL server binaries' version."""
    if database == "sqlite":
        return sqlite3.sqlite_version
    done = subprocess.run([str(server_bin() / "postgres"), "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"\(PostgreSQL\) (\S+)", done.stdout)
    return found.group(1) if found else done.stdout.strip()


def describe(result: FeedbackResult) -> str:
    if not result.ok:
        return f"failed: {result.error or result.first_error}"
    return (
        f"{result.items_per_s or 0:,.0f} items/s, {result.req_per_s or 0:,.1f} req/s, p50 {result.p50_ms or 0:.1f} ms, "
        f"p99 {result.p99_ms or 0:.1f} ms, failed requests {result.failed_requests}, refused items "
        f"{result.item_errors}, fresh {result.fresh_items:,} / relabels {result.relabel_items:,}, server CPU "
        f"{result.server_cpu_ms_per_request or 0:.1f} ms/req"
    )


def run(databases: Sequence[str], store: Path, workdir: Path, source: Path, duration_s: float) -> list[FeedbackResult]:
    """One measured run per database, one after the other (alone on the machine); a failure becomes its error."""
    found = []
    for database in databases:
        logger.info(
            "feedback on %s: %d predictions first", config.FEEDBACK_DATABASES[database], config.FEEDBACK_PREDICTIONS
        )
        try:
            with database_url(database) as url, serving(
                variant(database), store, workdir / f"feedback_{database}", source,
                {"CLF_MODELS": config.FEEDBACK_MODEL, **({"CLF_DATABASE_URL": url} if url else {})},
            ) as server:  # fmt: skip
                result = replace(measure(server, database, url, duration_s), version=database_version(database))
        except (ServerError, FeedbackError, PostgresUnavailable) as exc:
            logger.error("feedback on %s failed: %s", config.FEEDBACK_DATABASES[database], exc)
            result = FeedbackResult(database, error=str(exc).splitlines()[0])
        logger.info("feedback on %s: %s", config.FEEDBACK_DATABASES[database], describe(result))
        found.append(result)
    return found
