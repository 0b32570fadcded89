"""Feedback on logged predictions: labels and outcomes in, a logged prediction and realized figures out.

The event loop never waits on the database: every query runs on this worker's database threads. Feedback that
arrives for an id issued a moment ago, whose request the writer (of any worker or replica) has not written yet,
waits for it, up to `pending_seconds`; an id the log cannot have (malformed, not sampled, past retention) is
answered at once from the id itself.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

import numpy as np
import orjson
import sqlalchemy.exc

from ..classifiers import GivenLabel, InvalidInputError, Truth
from ..database.codecs import decode_inputs
from ..errors import DependencyUnavailableError, UnknownPredictionError
from ..monitoring.metrics import NO_MODEL, Children, Metrics, PendingWrites
from ..rollout.rollout_store import RolloutStore
from ..rollout.versions import VersionInfo
from ..schemas import FeedbackItem
from .feedback_store import LabelWrite, OutcomeWrite, Stored
from .ids import PredictionRef, issued_at, parse_id
from .log import DatabaseUnavailableError, PredictionLog
from .performance import Performance
from .prediction_store import LoggedDecision, PredictionKey
from .stores import LogStores

logger = logging.getLogger(__name__)

T = TypeVar("T")
POLL_SECONDS = 0.05
CLOCK_SKEW_SECONDS = 60.0  # an id from a replica whose clock runs ahead is still accepted
OTHER_OUTCOME = "other"


class ItemError(Exception):
    """Why one feedback item was refused."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.field = field


class FeedbackLoop:
    """Feedback, logged predictions and realized figures of one worker, over its prediction log."""

    def __init__(
        self,
        log: PredictionLog,
        metrics: Metrics,
        outcomes: Sequence[str],
        window_seconds: float,
        min_predictions: int,
    ) -> None:
        """`min_predictions`: `/performance` withholds figures over fewer (`CLF_PERFORMANCE_MIN_PREDICTIONS`)."""
        self.log = log
        self.versions = log.versions
        self.pending_seconds = 2 * log.config.log_flush_seconds + 5.0
        # labels: the model and version of the prediction an item is about, then the family's own
        self._items = Children(metrics.feedback_items)  # model, version, kind, result
        self._outcomes = Children(metrics.outcomes)  # model, version, outcome
        self._outcome_values = Children(metrics.outcome_value)  # model, version, outcome
        self._delays = Children(metrics.label_delay)  # model, version
        self._labelled = Children(metrics.labelled_predictions)  # model, version, result
        # feedback is not a hot path: its figures are written at once, so the next scrape of any worker shows them
        self._writes = PendingWrites(buffered=False)
        self._outcome_names = frozenset(outcomes)
        self._database = ThreadPoolExecutor(max_workers=4, thread_name_prefix="log-db")
        self._commits = GroupCommit(
            lambda groups: self._query(self._stores().feedback.store_feedback_groups, groups, _now())
        )
        self.realized_figures = Performance(log, window_seconds, min_predictions, self._query, self._stores)

    async def _query(self, function: Callable[..., T], *args: Any) -> T:
        """Run a blocking database call on a database thread; `unavailable` when the database is down."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._database, function, *args)
        except DatabaseUnavailableError as exc:
            raise DependencyUnavailableError(str(exc)) from None
        except Exception as exc:
            if _is_database_error(exc):
                logger.error("prediction log: a query failed: %s", exc)
                raise DependencyUnavailableError("the prediction log's database failed to answer; retry later") from exc
            raise

    # --- POST /feedback ----------------------------------------------------------------------------------------

    async def submit(self, items: Sequence[FeedbackItem], caller: str | None = None) -> dict[str, Any]:
        """Store every valid item (durably, before returning) and say why the others were refused. `caller`: the
        name of the API key that sent them (None without keys), stored with each label and outcome."""
        stores = self._stores()
        now = time.time()
        errors: dict[int, ItemError] = {}
        refs: dict[int, PredictionRef] = {}
        for index, item in enumerate(items):
            try:
                refs[index] = self._plausible(item.prediction_id, now, f"feedback[{index}].prediction_id")
            except ItemError as exc:
                errors[index] = exc
        predictions = await self._predictions({(ref.key, ref.row) for ref in refs.values()}, now)
        versions = await self._query(self._versions_of, stores.rollout, predictions.values())
        label_writes: list[LabelWrite] = []
        outcome_writes: list[OutcomeWrite] = []
        models: dict[int, tuple[str, str]] = {}
        for index, ref in refs.items():
            item = items[index]
            try:
                prediction = self._logged(ref, predictions, f"feedback[{index}].prediction_id")
                models[index] = (prediction.model, prediction.version)
                if _has_label(item):
                    truth_key = self._truth_key(versions[(prediction.model, prediction.version)], item, index)
                    label_writes.append(LabelWrite(truth_key, prediction, caller))
                if item.outcome is not None:
                    outcome_writes.append(OutcomeWrite(item.outcome, item.value, prediction, caller))
            except ItemError as exc:
                errors[index] = exc
        stored = await self._commits.store(label_writes, outcome_writes)

        self._count(items, errors, models, label_writes, outcome_writes, stored, now)
        return {
            "accepted": len(items) - len(errors),
            "errors": [
                {"index": index, "code": e.code, "message": e.message, "field": e.field}
                for index, e in sorted(errors.items())
            ],
        }

    def _count(
        self,
        items: Sequence[FeedbackItem],
        errors: dict[int, ItemError],
        models: dict[int, tuple[str, str]],
        label_writes: Sequence[LabelWrite],
        outcome_writes: Sequence[OutcomeWrite],
        stored: Stored,
        now: float,
    ) -> None:
        """The feedback counters, one update per series, not per item (each update writes a shared file)."""
        results: Counter[tuple[str, str, str, str]] = Counter()
        for index, item in enumerate(items):
            error = errors.get(index)
            model, version = models.get(index, (NO_MODEL, ""))
            for kind in _kinds(item):
                results[(model, version, kind, "accepted" if error is None else error.code)] += 1
        for labels, count in results.items():
            self._items(*labels).inc(count)
        delays: dict[tuple[str, str], list[float]] = {}
        labelled: Counter[tuple[str, str, str]] = Counter()
        for write in label_writes:
            prediction = write.prediction
            if (prediction.key, prediction.row) in stored.first_labels:
                seconds = now - prediction.created_at.timestamp()
                delays.setdefault((prediction.model, prediction.version), []).append(seconds)
                right = Truth.right(prediction.decision_key, write.truth_key)
                labelled[(prediction.model, prediction.version, "correct" if right else "wrong")] += 1
        for (model, version), all_seconds in delays.items():
            self._writes.observe_many(self._delays(model, version), np.maximum(np.asarray(all_seconds), 0.0))
        for (model, version, result), count in labelled.items():
            self._labelled(model, version, result).inc(count)
        reported: dict[tuple[str, str, str], list[float]] = {}
        for outcome in outcome_writes:
            prediction = outcome.prediction
            if (prediction.key, prediction.row, outcome.name) in stored.new_outcomes:
                name = outcome.name if outcome.name in self._outcome_names else OTHER_OUTCOME
                reported.setdefault((prediction.model, prediction.version, name), []).append(outcome.value)
        for (model, version, name), values in reported.items():
            self._outcomes(model, version, name).inc(len(values))
            self._outcome_values(model, version, name).inc(sum(values))

    def _truth_key(self, version: VersionInfo, item: FeedbackItem, index: int) -> str:
        given = GivenLabel(item.label, item.labels, item.path)
        try:
            return version.truth.key(given)
        except InvalidInputError as exc:
            where = f"feedback[{index}]" + (f".{exc.field}" if exc.field else "")
            raise ItemError("invalid_input", f"{exc.message} (model '{version.model}')", where) from None

    # --- GET /predictions/{id} ---------------------------------------------------------------------------------

    async def prediction(self, prediction_id: str) -> dict[str, Any]:
        """A logged prediction with its current label, label history and outcomes."""
        stores = self._stores()
        now = time.time()
        try:
            ref = self._plausible(prediction_id, now, "id")
            self._logged(ref, await self._predictions({(ref.key, ref.row)}, now), "id")
        except ItemError as exc:
            raise UnknownPredictionError(exc.message, field="id") from None
        found = await self._query(stores.predictions.prediction, ref.key, ref.row)
        if found is None:  # deleted by retention between the two reads
            raise UnknownPredictionError(f"prediction '{prediction_id}' is past the log's retention", field="id")
        request = found["request"]
        version = await self._query(self.versions.get, stores.rollout, request["model"], request["version"])
        inputs = None if request["inputs"] is None else decode_inputs(request["inputs"], request["rows"])[ref.row]
        label = found["label"]
        return {
            "id": ref.id,
            "model": request["model"],
            "version": request["version"],
            "task": None if version is None else version.task,
            "predicted_at": request["created_at"].isoformat(),
            "request_id": request["request_id"],
            "options": orjson.loads(request["options"]),
            "inputs": None
            if inputs is None or version is None
            else dict(zip(version.feature_names, inputs, strict=True)),
            "prediction": {**orjson.loads(request["decisions"])[ref.row], "id": ref.id},
            "label": None if label is None else self._render(version, label["truth_key"]),
            "labelled_at": None if label is None else label["labelled_at"].isoformat(),
            "label_history": [
                {
                    **self._render(version, h["truth_key"]),
                    "received_at": h["received_at"].isoformat(),
                    # a voided label (`python -m service.feedback void`) is no longer the current one
                    "voided_at": None if h["voided_at"] is None else h["voided_at"].isoformat(),
                }
                for h in found["history"]
            ],
            "outcomes": [
                {"outcome": o["name"], "value": o["value"], "received_at": o["received_at"].isoformat()}
                for o in found["outcomes"]
            ],
        }

    @staticmethod
    def _render(version: VersionInfo | None, truth_key: str) -> dict[str, Any]:
        return {"label": truth_key} if version is None else version.truth.render(truth_key)

    # --- realized figures (service/feedback/performance.py) ------------------------------------------------------

    def realized_exposition(self) -> str:
        """The `classifier_realized_*` gauges over the feedback window, for `/metrics`. Blocking (database)."""
        return self.realized_figures.exposition()

    async def performance(self, model: str, since_text: str | None, until_text: str | None) -> dict[str, Any]:
        """`GET /models/{name}/performance` (`Performance.answer`)."""
        return await self.realized_figures.answer(model, since_text, until_text)

    # --- shared ------------------------------------------------------------------------------------------------

    def _stores(self) -> LogStores:
        try:
            return self.log.stores
        except DatabaseUnavailableError as exc:
            raise DependencyUnavailableError(str(exc)) from None

    def _plausible(self, prediction_id: str, now: float, field: str) -> PredictionRef:
        """The parsed id, or an `unknown_prediction` saying why the log cannot hold it."""
        ref = parse_id(prediction_id)
        shown = prediction_id[:80]
        if ref is None:
            raise ItemError("unknown_prediction", f"'{shown}' is not a prediction id this service issued", field)
        if not ref.logged:
            raise ItemError(
                "unknown_prediction",
                f"prediction '{shown}' was not sampled into the log "
                f"(CLF_LOG_SAMPLE_RATE={self.log.config.log_sample_rate:g})",
                field,
            )
        if ref.issued_at > now + CLOCK_SKEW_SECONDS:
            raise ItemError("unknown_prediction", f"prediction '{shown}' was never issued (its time is ahead)", field)
        if ref.issued_at < now - self.log.config.log_retention_days * 86400:
            raise ItemError(
                "unknown_prediction",
                f"prediction '{shown}' is past the log's retention ({self.log.config.log_retention_days:g} days)",
                field,
            )
        return ref

    def _logged(self, ref: PredictionRef, found: dict[PredictionKey, LoggedDecision], field: str) -> LoggedDecision:
        prediction = found.get((ref.key, ref.row))
        if prediction is None:
            raise ItemError(
                "unknown_prediction",
                f"prediction '{ref.id}' is not in the log: never issued, or lost before it was written "
                "(see classifier_prediction_log_rows_total)",
                field,
            )
        if ref.row >= prediction.rows:
            raise ItemError("unknown_prediction", f"prediction '{ref.id}' was never issued", field)
        return prediction

    async def _predictions(self, wanted: set[PredictionKey], now: float) -> dict[PredictionKey, LoggedDecision]:
        """The logged predictions among `wanted`, waiting for those issued too recently to be written yet."""
        store = self._stores().predictions
        found = await self._query(store.find_predictions, wanted)
        deadline = time.monotonic() + self.pending_seconds
        while True:
            pending = {p for p in wanted - found.keys() if issued_at(p[0]) > now - self.pending_seconds}
            if not pending or time.monotonic() >= deadline:
                return found
            await asyncio.sleep(POLL_SECONDS)
            found.update(await self._query(store.find_predictions, pending))

    def _versions_of(
        self, store: RolloutStore, predictions: Iterable[LoggedDecision]
    ) -> dict[tuple[str, str], VersionInfo]:
        found = {}
        for model, version in {(p.model, p.version) for p in predictions}:
            info = self.versions.get(store, model, version)
            if info is None:
                raise DependencyUnavailableError(f"the log does not know version {version} of model {model}")
            found[(model, version)] = info
        return found

    def close(self) -> None:
        self._database.shutdown(wait=False, cancel_futures=True)


class GroupCommit:
    """Feedback requests that arrive while one is being written share the next transaction.

    A commit waits for the disk (SQLite's `synchronous=FULL`, PostgreSQL's WAL flush); with one transaction per
    request the writes queued behind one another, each paying its own. Like a database's group commit, the
    requests waiting are written together, and each answers once their common transaction has committed.
    """

    def __init__(self, write: Callable[[list[tuple[Any, Any]]], Awaitable[list[Stored]]]) -> None:
        self._write = write
        self._waiting: list[tuple[Any, Any, asyncio.Future[Stored]]] = []
        self._writing = False

    async def store(self, label_writes: Sequence[LabelWrite], outcome_writes: Sequence[OutcomeWrite]) -> Stored:
        future: asyncio.Future[Stored] = asyncio.get_running_loop().create_future()
        self._waiting.append((label_writes, outcome_writes, future))
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._waiting:
                group, self._waiting = self._waiting, []
                try:
                    results = await self._write([(labels, outcomes) for labels, outcomes, _ in group])
                except Exception as exc:  # noqa: BLE001 -- every request of the group gets the failure
                    for _, _, future in group:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, _, future), stored in zip(group, results, strict=True):
                    if not future.done():
                        future.set_result(stored)
        finally:
            self._writing = False


def _now() -> datetime:
    return datetime.now(UTC)


def _has_label(item: FeedbackItem) -> bool:
    return item.label is not None or item.labels is not None or item.path is not None


def _kinds(item: FeedbackItem) -> list[str]:
    """The `kind` labels of an item's `classifier_feedback_items_total` counts."""
    return [kind for kind, present in (("label", _has_label(item)), ("outcome", item.outcome is not None)) if present]


def _is_database_error(exc: Exception) -> bool:
    return isinstance(exc, sqlalchemy.exc.DBAPIError)
