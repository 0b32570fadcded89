"""The prediction log's queue and writer thread: bounded, never blocking, flushed on a graceful stop."""

from __future__ import annotations

import gc
import logging
import os
import signal
import time
import weakref
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import sqlalchemy as sa
from prometheus_client import CollectorRegistry

from service.classifiers import Options, Scored, get_task
from service.database.codecs import decode_inputs
from service.database.engine import create_database_engine
from service.feedback import log as log_module
from service.feedback.ids import new_key
from service.feedback.log import DatabaseUnavailableError, Entry, PredictionLog
from service.feedback.log_writer import Outcome, write_batch
from service.feedback.prediction_store import PredictionStore
from service.monitoring.metrics import Metrics
from service.rollout.rollout_store import RolloutStore
from service.rollout.versions import version_info
from service.settings import LogConfig
from tests.classifiers.fakes import card_of, features, fixed_proba
from tests.monitoring.test_metrics import unique

CLASSES = ["a", "b", "c"]
METADATA = {"classes": CLASSES, "features": features(3), "metrics": {"accuracy": 0.9, "mean_confidence": 0.8}}
TASK = get_task("multiclass")({"model": fixed_proba(CLASSES)}, card_of(METADATA))
WAIT_S = 120.0  # generous: a loaded machine is slow, and the condition is polled, not slept on


def entry(model: str, rows: int = 2, X: Any = None) -> Entry:
    X = np.tile([[0.5, 0.25, 0.25]], (rows, 1)) if X is None else X
    scores = TASK.score(np.asarray(X, dtype=float) if not hasattr(X, "iloc") else X.iloc[:, :3].to_numpy(float))
    records = list(TASK.decide(scores, Options(top_k=2)).records())
    now = time.time()
    decisions = orjson.dumps(records)
    scored = Scored(scores, TASK.default_decisions(scores), 0, len(records))
    return Entry(new_key(True, now), now, model, "v1", "req", Options(top_k=2), len(records), decisions, X, scored)


def rows(registry: CollectorRegistry, result: str, model: str) -> float:
    """A counter of `model` (0 before its first increment). Metric values live in per-process files shared by every
    registry, so each test logs for a model name of its own."""
    labels = {"model": model, "version": "v1", "result": result}
    return registry.get_sample_value("classifier_prediction_log_rows_total", labels) or 0.0


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {WAIT_S}s waiting for {what}")
        time.sleep(0.01)


class InProcessWriter:
    """The writer process's work (`write_batch`) run in the test's process, where a test can patch the store."""

    def __init__(self, database_url: str) -> None:
        self.engine = create_database_engine(database_url)

    def start(self) -> None:
        pass

    def write(self, batch: Any, resent: bool) -> Outcome:
        return write_batch(PredictionStore(self.engine), batch, resent)

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture
def in_process_writer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "LogWriterProcess", InProcessWriter)


@pytest.fixture
def model() -> str:
    return unique("log")


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> Metrics:
    return Metrics.create(registry)


@pytest.fixture
def make_log(tmp_path: Path, metrics: Metrics) -> Iterator[Callable[..., PredictionLog]]:
    created: list[PredictionLog] = []

    def make(**overrides: Any) -> PredictionLog:
        config = LogConfig(database_url=f"sqlite:///{tmp_path / 'log.db'}", log_flush_seconds=0.05)
        # unvalidated: a flush interval beyond CLF_LOG_FLUSH_SECONDS's bound leaves the writing to the stop
        config = config.model_copy(update=overrides)
        log = PredictionLog(config, metrics)
        log.versions.serve(version_info("m", "v1", "multiclass", card_of(METADATA).logged))
        created.append(log)
        return log

    yield make
    for log in created:
        log.close(timeout=10)


def test_a_full_queue_drops_and_counts_and_never_blocks(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry
) -> None:
    log = make_log(log_queue_rows=5)  # not started: nothing drains the queue
    started = time.perf_counter()
    for _ in range(4):
        log.submit(entry(model, rows=2))
    assert time.perf_counter() - started < 5  # four appends: no wait for a database that nobody writes to
    assert rows(registry, "dropped", model) == 4
    log.start()
    wait_for(lambda: rows(registry, "written", model) == 4, "the queued rows to be written")
    for _ in range(2):  # the written rows left the queue: room again
        log.submit(entry(model, rows=2))
    assert rows(registry, "dropped", model) == 4
    wait_for(lambda: rows(registry, "written", model) == 8, "the later rows to be written")


def test_a_graceful_stop_writes_what_is_queued(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry
) -> None:
    log = make_log(log_flush_seconds=3600.0, log_queue_rows=1000)  # only the stop would write these
    log.start()
    queued = [entry(model, rows=3) for _ in range(5)]
    for item in queued:
        log.submit(item)
    log.close()
    assert rows(registry, "written", model) == 15
    store = PredictionStore(create_database_engine(log.config.log_database_url))
    found = store.find_predictions([(item.key, row) for item in queued for row in range(3)])
    assert len(found) == 15
    first = [found[(queued[0].key, row)] for row in range(3)]
    assert [p.decision_key for p in first] == ["a", "a", "a"]  # the model's own decision, not top_k's
    # calibrated (Task.expected_correct): metadata without a map shifts by accuracy - mean confidence, 0.9 - 0.8
    assert [p.confidence for p in first] == pytest.approx([0.6, 0.6, 0.6])
    log.submit(entry(model))  # after the stop: refused, counted
    assert rows(registry, "dropped", model) == 2
    store.engine.dispose()


def test_what_is_logged_of_a_request(model: str, make_log: Callable[..., PredictionLog]) -> None:
    log = make_log()
    log.start()
    X = pd.DataFrame(
        {"f0": [0.5, 0.0], "f1": [0.25, 0.5], "f2": [0.25, 0.5], "size": [1.5, np.nan], "color": ["red", "blue"]}
    )
    item = entry(model, X=X)
    log.submit(item)
    store = PredictionStore(create_database_engine(log.config.log_database_url))
    wait_for(lambda: bool(store.find_predictions([(item.key, 0)])), "the request to be written")
    logged = store.prediction(item.key, 1)
    assert logged is not None
    request = logged["request"]
    assert decode_inputs(request["inputs"], 2) == [[0.5, 0.25, 0.25, 1.5, "red"], [0.0, 0.5, 0.5, None, "blue"]]
    assert orjson.loads(request["options"]) == {"top_k": 2}
    assert request["decisions"] == item.decisions.decode()
    assert (request["model"], request["version"], request["request_id"], request["rows"]) == (model, "v1", "req", 2)
    assert RolloutStore(store.engine).version("m", "v1") is not None  # recorded before its predictions
    store.engine.dispose()


def test_inputs_can_be_left_out(model: str, make_log: Callable[..., PredictionLog]) -> None:
    log = make_log(log_inputs=False)
    log.start()
    item = entry(model)
    log.submit(item)
    store = PredictionStore(create_database_engine(log.config.log_database_url))
    wait_for(lambda: bool(store.find_predictions([(item.key, 0)])), "the request to be written")
    assert store.prediction(item.key, 0)["request"]["inputs"] is None  # type: ignore[index]
    store.engine.dispose()


def test_sampling_issues_ids_that_say_they_were_not_logged(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry
) -> None:
    log = make_log(log_sample_rate=0.0)
    key, logged = log.issue(model, "v1", 7, time.time())
    assert not logged and int(key[13], 16) < 8
    assert rows(registry, "unsampled", model) == 7
    assert make_log(log_sample_rate=1.0).issue(model, "v1", 1, time.time())[1]


def test_an_unreachable_database_keeps_predictions_queued_then_counts_them_failed(
    model: str, metrics: Metrics, registry: CollectorRegistry
) -> None:
    config = LogConfig(
        database_url="postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2", log_flush_seconds=0.05
    )
    log = PredictionLog(config, metrics)
    log.start()
    with pytest.raises(DatabaseUnavailableError, match="unavailable"):
        log.stores  # noqa: B018 -- the property raises
    log.submit(entry(model, rows=3))
    log.close(timeout=10)
    assert (rows(registry, "written", model), rows(registry, "failed", model)) == (0, 3)


def test_the_writer_reconnects_when_the_database_comes_back(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real_migrate = log_module.migrate

    def flaky_migrate(engine: sa.Engine) -> None:
        calls.append(engine)
        if len(calls) < 3:
            raise sa.exc.OperationalError("connect", {}, Exception("connection refused"))
        real_migrate(engine)

    monkeypatch.setattr(log_module, "migrate", flaky_migrate)
    log = make_log()
    log.start()
    log.submit(entry(model, rows=2))
    wait_for(lambda: rows(registry, "written", model) == 2, "the write after the database came back")
    assert len(calls) == 3


def writer_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == log_module.__name__ and r.levelno >= logging.ERROR]


def test_an_entry_that_cannot_be_encoded_loses_only_itself(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry, caplog: pytest.LogCaptureFixture
) -> None:
    """A request whose options do not encode (a `top_k` of 401 digits, before the schema bounded it) failed the
    batch of every request of its model version (issue 17): now it fails alone, counted, in one log line."""
    log = make_log(log_flush_seconds=3600.0)  # only the stop writes: the three are one batch
    log.start()
    good = [entry(model, rows=2) for _ in range(4)]
    bad = replace(entry(model, rows=3), options=Options(top_k=10**400))
    for item in [*good[:2], bad, *good[2:]]:
        log.submit(item)
    log.close()
    assert (rows(registry, "written", model), rows(registry, "failed", model)) == (8, 3)
    store = PredictionStore(create_database_engine(log.config.log_database_url))
    found = store.find_predictions([(item.key, 0) for item in [*good, bad]])
    assert found.keys() == {(item.key, 0) for item in good}
    (error,) = writer_errors(caplog)
    assert bad.key in error.getMessage() and "64-bit" in error.getMessage()
    assert error.exc_info is None  # one line: no traceback
    store.engine.dispose()


def test_an_entry_the_database_refuses_loses_only_itself(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry, database_url: str,
    caplog: pytest.LogCaptureFixture,
) -> None:  # fmt: skip
    """A request the database will not store (a lone surrogate in its request id, which neither database
    encodes) used to lose its whole batch: the batch is retried in halves, down to the one entry refused."""
    log = make_log(database_url=database_url, log_flush_seconds=3600.0)
    log.start()
    good = [entry(model, rows=1) for _ in range(7)]
    refused = replace(entry(model, rows=2), request_id="\ud800")
    for item in [*good[:5], refused, *good[5:]]:
        log.submit(item)
    log.close()
    assert (rows(registry, "written", model), rows(registry, "failed", model)) == (7, 2)
    store = PredictionStore(create_database_engine(database_url))
    assert store.find_predictions([(item.key, 0) for item in [*good, refused]]).keys() == {
        (item.key, 0) for item in good
    }
    (error,) = writer_errors(caplog)
    assert refused.key in error.getMessage() and error.exc_info is None
    store.engine.dispose()


@pytest.mark.usefixtures("in_process_writer")
def test_a_refused_write_is_retried_before_it_is_counted_failed(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch the database refuses once (a transient refusal that is not a lost connection) is written in
    halves: nothing is lost."""
    real_write = PredictionStore.write_requests
    refusals = []

    def refuse_once(self: PredictionStore, records: Any, skip_written: bool = False) -> None:
        if not refusals:
            refusals.append(records)
            raise sa.exc.IntegrityError("INSERT", {}, Exception("duplicate key"))
        real_write(self, records, skip_written)

    monkeypatch.setattr(PredictionStore, "write_requests", refuse_once)
    log = make_log(log_flush_seconds=3600.0)
    log.start()
    log.submit(entry(model, rows=2))
    log.submit(entry(model, rows=1))
    log.close()
    assert (rows(registry, "failed", model), rows(registry, "written", model)) == (0, 3)
    assert len(refusals) == 1


def test_retention_deletes_what_is_older_and_counts_it(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry
) -> None:
    log = make_log(log_retention_days=1.0)
    log.start()
    two_days_ago = time.time() - 2 * 86400
    old = replace(entry(model, rows=2), key=new_key(True, two_days_ago), created_at=two_days_ago)
    new = entry(model, rows=1)
    for item in (old, new):
        log.submit(item)
    wait_for(lambda: rows(registry, "written", model) == 3, "both requests to be written")
    deleted = registry.get_sample_value("classifier_prediction_log_deleted_rows_total")
    log.apply_retention()
    assert registry.get_sample_value("classifier_prediction_log_deleted_rows_total") == deleted + 2
    assert log.stores.predictions.find_predictions([(old.key, 0), (new.key, 0)]).keys() == {(new.key, 0)}


def test_the_queue_holds_nothing_the_garbage_collector_walks(
    model: str, make_log: Callable[..., PredictionLog]
) -> None:
    """A queued request is a tuple of its encoded fields, untracked at the first collection: neither the request's
    objects (rows, scores) stay alive nor anything per request that a full collection would walk."""
    log = make_log(log_queue_rows=100_000)  # not started: everything stays queued
    entries = [entry(model, rows=2) for _ in range(500)]
    alive = [weakref.ref(item) for item in entries] + [weakref.ref(item.scored) for item in entries]
    gc.collect()
    tracked = len(gc.get_objects())
    for item in entries:
        log.submit(item)
    del entries, item
    gc.collect()
    assert [ref for ref in alive if ref() is not None] == []
    assert len(gc.get_objects()) < tracked - 500  # the entries went, and nothing took their place per request


def test_the_writer_catches_up_after_a_burst(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry
) -> None:
    log = make_log(log_queue_rows=100_000)
    burst = [entry(model, rows=4) for _ in range(5000)]
    for item in burst:
        log.submit(item)
    assert registry.get_sample_value("classifier_prediction_log_queue_rows") == 20_000
    log.start()
    wait_for(lambda: rows(registry, "written", model) == 20_000, "the burst to be written")
    wait_for(lambda: registry.get_sample_value("classifier_prediction_log_queue_rows") == 0, "an empty queue")
    found = log.stores.predictions.find_predictions([(item.key, 3) for item in burst[::50]])
    assert len(found) == 100 and rows(registry, "dropped", model) == 0


@pytest.mark.usefixtures("in_process_writer")
def test_a_write_the_connection_broke_is_kept_and_written_in_order_later(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = make_log()
    first = [entry(model, rows=2) for _ in range(3)]
    later = entry(model, rows=1)
    real_write = PredictionStore.write_requests
    batches: list[list[str]] = []

    def lose_the_connection_once(self: PredictionStore, records: Any, skip_written: bool = False) -> None:
        batches.append([record.key for record in records])
        if len(batches) == 1:
            log.submit(later)  # arrives while the first write fails
            raise sa.exc.OperationalError("INSERT", {}, Exception("server closed the connection"))
        assert skip_written  # the retry of a write whose commit may have happened skips what is written
        real_write(self, records, skip_written)

    monkeypatch.setattr(PredictionStore, "write_requests", lose_the_connection_once)
    for item in first:
        log.submit(item)
    log.start()
    wait_for(lambda: rows(registry, "written", model) == 7, "the requests to be written once reconnected")
    assert rows(registry, "failed", model) == 0
    assert batches == [[item.key for item in first], [item.key for item in [*first, later]]]  # put back in front


def test_a_killed_writer_process_is_replaced_and_close_stops_the_new_one(
    model: str, make_log: Callable[..., PredictionLog], registry: CollectorRegistry
) -> None:
    log = make_log()
    log.start()
    before = [entry(model, rows=2) for _ in range(3)]
    for item in before:
        log.submit(item)
    wait_for(lambda: rows(registry, "written", model) == 6, "the first requests to be written")
    killed = log._writer.pid
    assert killed is not None
    os.kill(killed, signal.SIGKILL)
    after = [entry(model, rows=1) for _ in range(4)]
    for item in after:
        log.submit(item)
    wait_for(lambda: rows(registry, "written", model) == 10, "the later requests to be written by a new process")
    replacement = log._writer.pid
    assert replacement not in (None, killed)
    found = log.stores.predictions.find_predictions([(item.key, 0) for item in before + after])
    assert len(found) == 7 and rows(registry, "failed", model) == 0
    log.close()
    assert log._writer.pid is None
    with pytest.raises(ChildProcessError):  # reaped: close() waited for it
        os.waitpid(replacement, os.WNOHANG)  # type: ignore[arg-type]
