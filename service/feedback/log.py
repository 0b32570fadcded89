"""The worker's prediction log: it issues prediction ids, queues answered requests, and writes them in batches.

`/predict` encodes its request into the row the writer inserts, a plain tuple of strings, bytes and numbers
(`Queued`), and appends it to a bounded in-memory queue: the garbage collector stops tracking such a tuple
at its first collection, so no full collection walks a backlog. A background thread takes the whole queue and
hands it, in one transaction, every `log_flush_seconds` or sooner when half the queue is used, to the worker's log
writer process (`log_writer`), which inserts it: the insert runs under the child's interpreter lock, not beside the
event loop, and the thread waits for the child's answer without holding the worker's. The thread keeps the counts:
what the child wrote, what the database refused. A full queue drops the new request and counts it
(`result="dropped"`): a prediction never waits for the database. While the database is unreachable the thread puts
its batch back at the front of the queue and retries; what arrives meanwhile fills the queue and is dropped. A
request that cannot be encoded fails alone, on the loop; a batch the database refuses is retried in halves by the
child, and only the requests refused alone are counted `failed`. A child that dies is replaced and its unanswered
batch sent again, none written twice. A graceful stop writes what is queued. A crash of the worker (`kill -9`) loses
what is queued in it, not the batch it had handed to the child, which the child writes before it exits: at most
`log_flush_seconds` of traffic when the database keeps up, at most `log_queue_rows` predictions in any case. The
versions record, shadows' decisions and retention, rare work, are written by the thread itself.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import orjson

from ..classifiers import Options, Scored
from ..database.codecs import encode_floats, encode_inputs, encode_keys
from ..database.engine import create_database_engine, migrate
from ..monitoring.metrics import Children, Metrics
from ..rollout.rollout_store import RolloutStore, ShadowRecord
from ..rollout.versions import Versions
from ..settings import LogConfig
from .ids import first_key_at, new_key
from .log_writer import MODEL, ROWS, UNREACHABLE, VERSION, LogWriterProcess, Outcome, describe_error, record_of
from .stores import LogStores

logger = logging.getLogger(__name__)

RETENTION_CHECK_SECONDS = 3600.0
MAX_BACKOFF_SECONDS = 30.0
SHUTDOWN_FLUSH_SECONDS = 20.0  # a graceful stop tries this long to write what is queued


@dataclass(frozen=True)
class Entry:
    """An answered `/predict` request, handed to the log: `PredictionLog.submit` encodes it into the queue at once,
    and keeps none of it."""

    key: str
    created_at: float  # Unix seconds, the key's own timestamp
    model: str
    version: str
    request_id: str | None
    options: Options
    rows: int
    decisions: bytes  # JSON list: each row's answer as sent, without its id
    X: Any  # the validated rows
    scored: Scored  # the model's scores of those rows and its default decisions, which the log keeps
    caller: str | None = None  # the name of the API key that sent it; None without keys


Queued = tuple[str, str, str, float, str | None, int, bytes, bytes, str, str, bytes | None, str | None]
"""A queued request: the fields of its `RequestRecord` in a plain tuple, which the garbage collector stops tracking
at its first collection (it tracks a tuple subclass, a `NamedTuple`, for as long as it lives). Its time is Unix
seconds: made a datetime only by the writer process (`log_writer.record_of`), it costs the loop and the pipe less."""


class Request(Protocol):
    """What the log's counts and error lines name of a request: a queued `Entry` or a `RequestRecord` read back."""

    @property
    def key(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def rows(self) -> int: ...


@dataclass(frozen=True)
class Unencodable:
    """The requests that could not be encoded since the writer last said so: counted at once, told in one line."""

    requests: int
    rows: int
    first: str  # "KEY of model M version V: error"


class DatabaseUnavailableError(RuntimeError):
    """The log's database cannot be reached, or its schema could not be brought up to date."""


class PredictionLog:
    """Issues ids, queues answered requests and writes them from a daemon thread (one per worker)."""

    def __init__(self, config: LogConfig, metrics: Metrics) -> None:
        self.config = config
        self.versions = Versions()
        self._metrics = metrics
        self._rows = Children(metrics.log_rows)  # model, version, result
        self._queue: deque[Queued] = deque()
        self._queued_rows = 0
        self._unencodable: Unencodable | None = None
        self._shadows: deque[ShadowRecord] = deque()  # the shadow thread's; bounded by `log_queue_rows` like the queue
        self._condition = threading.Condition()
        self._closing = False
        self._stores: LogStores | None = None
        self._problem = "the prediction log's database has not been opened yet"
        self._engine = create_database_engine(config.log_database_url)
        self._writer = LogWriterProcess(config.log_database_url)
        self._resend = False  # the last batch did not finish: some of what is queued may be committed already
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    def start(self) -> None:
        """Open (and migrate) the database, then start the writer process and thread; a database that is down is
        retried."""
        self._connect()
        self._writer.start()
        self._thread.start()

    # --- the request path (event loop) -------------------------------------------------------------------------

    def issue(self, model: str, version: str, rows: int, now: float) -> tuple[str, bool]:
        """A new request key and whether the request is sampled into the log."""
        logged = self.config.log_sample_rate >= 1.0 or random.random() < self.config.log_sample_rate
        if not logged:
            self._metrics.writes.inc(self._rows(model, version, "unsampled"), rows)  # per request: summed in memory
        return new_key(logged, now), logged

    def submit(self, entry: Entry) -> None:
        """Queue an answered request, encoded; drops and counts it when the queue is full, counts it `failed` when
        it cannot be encoded. Never blocks on the database."""
        if self._queued_rows + entry.rows > self.config.log_queue_rows or self._closing:  # checked again below
            self._rows(entry.model, entry.version, "dropped").inc(entry.rows)
            return
        try:
            record = self.encode(entry)
        except Exception as exc:  # noqa: BLE001 -- whatever the request's fault, it is that request's alone
            self._rows(entry.model, entry.version, "failed").inc(entry.rows)
            with self._condition:
                self._unencodable = _one_more(self._unencodable, entry, exc)
            return
        with self._condition:
            # close() may have begun while the request was encoded
            dropped = self._queued_rows + entry.rows > self.config.log_queue_rows or self._closing
            if not dropped:
                self._queue.append(record)
                self._queued_rows += entry.rows
                if self._queued_rows * 2 >= self.config.log_queue_rows:
                    self._condition.notify()
            queued = self._queued_rows
        # set on every change: a writer backing off from a database that is down may not set it for a minute
        self._metrics.log_queue_rows.set(queued)
        if dropped:
            self._rows(entry.model, entry.version, "dropped").inc(entry.rows)

    def encode(self, entry: Entry) -> Queued:
        """A request's row of the log, as queued (`RequestRecord`'s fields). The model's own decisions and
        confidences come computed, once per model call (`Task.default_decisions`): the entry's are its rows' part of
        its call's."""
        return (
            entry.key, entry.model, entry.version, entry.created_at, entry.request_id,
            entry.rows, encode_keys(entry.scored.decision_keys), encode_floats(entry.scored.expected_correct),
            _options_json(entry.options), entry.decisions.decode(),
            encode_inputs(entry.X) if self.config.log_inputs else None, entry.caller,
        )  # fmt: skip

    def submit_shadow(self, record: ShadowRecord) -> bool:
        """Queue a shadow version's decisions on a logged request (the shadow thread); False when dropped."""
        with self._condition:
            if len(self._shadows) >= self.config.log_queue_rows or self._closing:
                return False
            self._shadows.append(record)
        return True

    # --- state -------------------------------------------------------------------------------------------------

    @property
    def stores(self) -> LogStores:
        """The database's stores; raises `DatabaseUnavailableError` while it is unreachable."""
        if self._stores is None:
            raise DatabaseUnavailableError(self._problem)
        return self._stores

    def close(self, timeout: float = SHUTDOWN_FLUSH_SECONDS) -> None:
        """Stop accepting entries, write what is queued (for up to `timeout`), and stop the thread and the writer
        process."""
        with self._condition:
            self._closing = True
            self._condition.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._writer.close()
        self._report_unencodable()
        with self._condition:
            lost, self._queue = list(self._queue), deque()
            self._queued_rows = 0
        self._count(lost, "failed", queued=False)
        if lost:
            logger.error(
                "prediction log: %d queued predictions were not written before the stop", sum(map(_rows_of, lost))
            )
        self._engine.dispose()

    # --- the writer thread -------------------------------------------------------------------------------------

    def _connect(self) -> bool:
        """Open and migrate the database; whether it is available."""
        try:
            migrate(self._engine)
            stores = LogStores.over(self._engine)
        except Exception as exc:  # noqa: BLE001 -- any failure leaves the log unavailable until a retry succeeds
            self._stores = None
            self._problem = f"the prediction log's database is unavailable: {describe_error(exc)}"
            logger.error("prediction log: %s", self._problem)
            return False
        self._stores = stores
        return True

    def _run(self) -> None:
        backoff = self.config.log_flush_seconds
        next_retention = time.monotonic() + random.uniform(60.0, 120.0)  # replicas do not all delete at once
        while True:
            with self._condition:
                if not self._closing and self._queued_rows * 2 < self.config.log_queue_rows:
                    self._condition.wait(self.config.log_flush_seconds)
                closing = self._closing
            self._metrics.log_queue_rows.set(self._queued_rows)
            self._report_unencodable()
            if self._stores is None:
                self._connect()
            written = self._stores is not None and self._write_queued()
            if closing and (not written or not self._queue):
                return  # close() counts what is left as failed
            if written:
                backoff = self.config.log_flush_seconds
            else:
                with self._condition:  # close() wakes the wait
                    if not self._closing:
                        self._condition.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_SECONDS)
                continue
            if time.monotonic() >= next_retention:
                self.apply_retention()
                next_retention = time.monotonic() + RETENTION_CHECK_SECONDS

    def _write_queued(self) -> bool:
        """Write everything queued, in one transaction when all goes well; False when the database was unreachable
        or the writer process died (what was not written is put back for a retry).

        One request never takes another with it: the writer process retries a batch the database refuses in halves,
        down to the requests it refuses alone, which are counted `failed` and named in one log line.
        """
        stores = self._stores
        if stores is None:
            return False
        with self._condition:
            taken, self._queue = self._queue, deque()
        queued = list(taken)  # indexed by the child's answer
        started = time.perf_counter()
        try:
            self._save_versions(stores.rollout)
        except UNREACHABLE as exc:
            self._unreachable(queued, set(), describe_error(exc))
            return False
        outcome = self._write(queued)
        if outcome is None:
            self._put_back(queued, set())
            return False
        written = [queued[position] for position in outcome.written]
        if outcome.unreachable is not None:
            self._count(written, "written")
            self._unreachable(queued, set(outcome.written), outcome.unreachable)
            return False
        self._resend = False
        if written:
            self._metrics.log_write_duration.observe(time.perf_counter() - started)
        self._lost([(queued[p], error) for p, error in outcome.refused], "were refused by the database")
        self._count(written, "written")
        self._write_shadows(stores.rollout)
        return True

    def _write(self, queued: list[Queued]) -> Outcome | None:
        """The writer process's outcome of `queued`; a process that died is replaced, and the batch sent to the new
        one, once; None if that one died too."""
        if not queued:
            return Outcome([], [], None)
        for _ in range(2):
            outcome = self._writer.write(queued, resent=self._resend)
            if outcome is not None:
                return outcome
            self._resend = True  # it may have committed the batch before it died
            logger.error("prediction log: the log writer process exited; a new one writes its %d requests", len(queued))
        return None

    def _put_back(self, queued: list[Queued], done: set[int]) -> None:
        """Back to the front, in order; the queue's bound holds new arrivals off."""
        with self._condition:
            self._queue.extendleft(reversed([fields for p, fields in enumerate(queued) if p not in done]))

    def _unreachable(self, queued: list[Queued], done: set[int], error: str) -> None:
        self._put_back(queued, done)
        self._resend = True  # a connection lost during a commit may have committed it
        self._stores = None
        self._problem = f"the prediction log's database is unavailable: {error}"
        logger.error("prediction log: writing %d requests failed, will retry: %s", len(queued) - len(done), error)

    def _save_versions(self, store: RolloutStore) -> None:
        """Record the served versions before their predictions; a version the database refuses is logged, and
        does not keep the predictions from being written."""
        try:
            self.versions.save(store, datetime.now(UTC))
        except UNREACHABLE:
            raise
        except Exception as exc:  # noqa: BLE001 -- retried before the next batch
            logger.error("prediction log: recording the served model versions failed: %s", describe_error(exc))

    def _lost(self, failures: Sequence[tuple[Queued, str]], why: str) -> None:
        """Count requests that cannot be written as failed, and say so in one line (no traceback per request)."""
        if not failures:
            return
        self._count([fields for fields, _ in failures], "failed")
        first, error = failures[0]
        logger.error(
            "prediction log: %d requests (%d predictions) %s and are lost; the first, %s",
            len(failures), sum(_rows_of(fields) for fields, _ in failures), why,
            _describe_failure(record_of(first), error),
        )  # fmt: skip

    def _report_unencodable(self) -> None:
        """Say in one line which requests could not be encoded since the last time (they were counted then)."""
        with self._condition:
            found, self._unencodable = self._unencodable, None
        if found is not None:
            logger.error(
                "prediction log: %d requests (%d predictions) could not be encoded and are lost; the first, %s",
                found.requests, found.rows, found.first,
            )  # fmt: skip

    def _write_shadows(self, store: RolloutStore) -> None:
        with self._condition:
            shadows = list(self._shadows)
            self._shadows.clear()
        if not shadows:
            return
        try:
            store.write_shadows(shadows)
        except Exception:  # noqa: BLE001 -- a shadow's record is evidence, not an answer: lost, and said so
            logger.exception("prediction log: %d shadow records could not be written; they are lost", len(shadows))

    def _count(self, requests: Sequence[Queued], result: str, queued: bool = True) -> None:
        """Requests taken off the queue for good (`queued`: still counted in it), counted by what became of them."""
        if not requests:
            return
        if queued:
            with self._condition:
                self._queued_rows -= sum(map(_rows_of, requests))
                left = self._queued_rows
            self._metrics.log_queue_rows.set(left)
        by_version: dict[tuple[str, str], int] = {}
        for fields in requests:
            key = cast(str, fields[MODEL]), cast(str, fields[VERSION])
            by_version[key] = by_version.get(key, 0) + _rows_of(fields)
        for (model, version), rows in by_version.items():
            self._rows(model, version, result).inc(rows)

    def apply_retention(self) -> None:
        """Delete the predictions older than the retention period (the writer thread does it every hour)."""
        cutoff = time.time() - self.config.log_retention_days * 86400
        stores = self._stores
        if stores is None:
            return
        try:
            deleted = stores.predictions.delete_before(first_key_at(cutoff))
        except Exception as exc:  # noqa: BLE001 -- retried at the next check
            logger.error("prediction log: deleting predictions past retention failed: %s", describe_error(exc))
            return
        if deleted:
            self._metrics.log_deleted_rows.inc(deleted)
            logger.info(
                "prediction log: deleted %d predictions older than %g days", deleted, self.config.log_retention_days
            )


def _describe_failure(request: Request, error: BaseException | str) -> str:
    detail = error if isinstance(error, str) else describe_error(error)
    return f"{request.key} of model {request.model} version {request.version}: {detail}"


def _one_more(found: Unencodable | None, entry: Entry, error: Exception) -> Unencodable:
    if found is None:
        return Unencodable(1, entry.rows, _describe_failure(entry, error))
    return Unencodable(found.requests + 1, found.rows + entry.rows, found.first)


def _rows_of(fields: Queued) -> int:
    return cast(int, fields[ROWS])


def _options_json(options: Options) -> str:
    given = options.given()
    return orjson.dumps({name: getattr(options, name) for name in sorted(given)}).decode() if given else "{}"
