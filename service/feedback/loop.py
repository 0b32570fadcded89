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
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, TypeVar

import numpy as np
import orjson
import sqlalchemy.exc

from ..classifiers import GivenLabel, InvalidInputError, Truth
from ..database.codecs import decode_inputs
from ..errors import DependencyUnavailableError, UnknownModelError, UnknownPredictionError
from ..monitoring.metrics import NO_MODEL, Children, Metrics, PendingWrites, render_gauges
from ..rollout.rollout_store import RolloutStore
from ..rollout.versions import VersionInfo
from .feedback_store import LabelWrite, OutcomeWrite, Stored
from .ids import PredictionRef, issued_at, parse_id
from .log import DatabaseUnavailableError, PredictionLog
from .prediction_store import LoggedDecision, PredictionKey
from .realized import VersionFigures, realized_families
from .realized_store import OutcomeTotal
from .stores import LogStores
from .timerange import parse_time

logger = logging.getLogger(__name__)

T = TypeVar("T")
POLL_SECONDS = 0.05
CLOCK_SKEW_SECONDS = 60.0  # an id from a replica whose clock runs ahead is still accepted
OTHER_OUTCOME = "other"
EARLIEST = datetime.min.replace(tzinfo=UTC)


class FeedbackItem(Protocol):
    """One item of a `/feedback` body (`service.schemas.FeedbackItem`)."""

    @property
    def prediction_id(self) -> str: ...
    @property
    def label(self) -> str | None: ...
    @property
    def labels(self) -> list[str] | None: ...
    @property
    def path(self) -> list[str] | None: ...
    @property
    def outcome(self) -> str | None: ...
    @property
    def value(self) -> float: ...


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
        self.window_seconds = window_seconds
        self.min_predictions = min_predictions
        self.pending_seconds = 2 * log.config.flush_seconds + 5.0
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

    # --- realized figures --------------------------------------------------------------------------------------

    def figures(self, since: datetime, until: datetime, model: str | None = None) -> list[VersionFigures]:
        """Realized figures per model version over predictions made in [since, until). Blocking (database)."""
        stores = self.log.stores
        pairs: dict[tuple[str, str], list[tuple[str | None, str, int]]] = {}
        expected: dict[tuple[str, str], float] = {}
        for count in stores.realized.pair_counts(since, until, model):
            version = (count.model, count.version)
            pairs.setdefault(version, []).append((count.decision_key, count.truth_key, count.count))
            expected[version] = expected.get(version, 0.0) + count.confidence_sum
        logged = stores.realized.logged_predictions(since, until, model)
        figures = []
        for model_name, version_name in sorted(set(pairs) | set(logged)):
            info = self.versions.get(stores.rollout, model_name, version_name)
            if info is None:
                continue  # a version the log never recorded: nothing to measure it against
            realized = info.truth.realized(pairs.get((model_name, version_name), []))
            figures.append(
                VersionFigures(
                    model=model_name,
                    version=version_name,
                    predictions=logged.get((model_name, version_name), 0),
                    labelled=realized.labelled,
                    accuracy=realized.accuracy,
                    f1=realized.f1,
                    level_accuracy=realized.level_accuracy,
                    # the log keeps each row's calibrated confidence (`Task.expected_correct`): its mean is the estimate
                    estimated_accuracy=(
                        expected.get((model_name, version_name), 0.0) / realized.labelled
                        if realized.labelled
                        else float("nan")
                    ),
                    classes=realized.classes,
                )
            )
        return figures

    def realized_exposition(self) -> str:
        """The `classifier_realized_*` gauges over the feedback window, for `/metrics`. Blocking (database)."""
        until = datetime.now(UTC)
        since = until - timedelta(seconds=self.window_seconds)
        try:
            figures = self.figures(since, until)
        except Exception as exc:  # noqa: BLE001 -- /metrics answers without these rather than not at all
            logger.warning("prediction log: realized metrics unavailable: %s", exc)
            return ""
        return render_gauges(realized_families(figures))

    async def performance(self, model: str, since_text: str | None, until_text: str | None) -> dict[str, Any]:
        """`GET /models/{name}/performance`: realized figures, per class and outcomes, per version, over predictions
        made in [since, until) (times or ages, `parse_time`; default: the feedback window up to now)."""
        now = datetime.now(UTC)
        until = now if until_text is None else _query_time(until_text, now, "until")
        if since_text is not None:
            since = _query_time(since_text, now, "since")
        elif until - EARLIEST > timedelta(seconds=self.window_seconds):
            since = until - timedelta(seconds=self.window_seconds)
        else:  # an `until` in the first days of year 1
            since = EARLIEST
        stores = self._stores()
        if since >= until:
            raise InvalidInputError(
                f"'since' ({since.isoformat()}) is not before 'until' ({until.isoformat()})", field="since"
            )
        if model not in self.versions.models() and model not in await self._query(stores.rollout.models):
            raise UnknownModelError(f"model '{model}' has never been served with this prediction log", field="name")
        figures = await self._query(self.figures, since, until, model)
        totals = await self._query(stores.realized.outcome_totals, since, until, model)
        versions = []
        for figure in figures:
            outcomes = [t for t in totals if t.version == figure.version]
            few_labelled, few_predictions = (
                figure.labelled < self.min_predictions,
                figure.predictions < self.min_predictions,
            )
            withheld = self._withheld(figure, few_labelled, few_predictions)
            if few_labelled:
                figure = _without_label_figures(figure)
            if few_predictions:
                outcomes = []
            versions.append(_version_json(figure, outcomes, withheld))
        return {"model": model, "since": since.isoformat(), "until": until.isoformat(), "versions": versions}

    def _withheld(self, figure: VersionFigures, few_labelled: bool, few_predictions: bool) -> str | None:
        """Why some of a version's figures are withheld, or None. A figure over a few predictions tells of each one
        (`since=t&until=t+1s` isolates one prediction's decision, label and outcome): figures of the labelled
        predictions need `min_predictions` labelled ones, outcomes `min_predictions` predictions. Decided on the
        counts the answer shows anyway, so the reason itself tells nothing more."""
        least = self.min_predictions
        parts = []
        if few_labelled and figure.labelled > 0:  # with none labelled, there is nothing to withhold
            parts.append(f"accuracy, F1 and per-class figures ({figure.labelled} labelled predictions)")
        if few_predictions:
            parts.append(f"outcomes ({figure.predictions} predictions)")
        if not parts:
            return None
        return (
            f"withheld: {' and '.join(parts)}; figures are given over at least {least} predictions "
            f"(CLF_PERFORMANCE_MIN_PREDICTIONS), so that none tells of a single prediction: widen since/until"
        )

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
                f"(CLF_LOG_SAMPLE_RATE={self.log.config.sample_rate:g})",
                field,
            )
        if ref.issued_at > now + CLOCK_SKEW_SECONDS:
            raise ItemError("unknown_prediction", f"prediction '{shown}' was never issued (its time is ahead)", field)
        if ref.issued_at < now - self.log.config.retention_days * 86400:
            raise ItemError(
                "unknown_prediction",
                f"prediction '{shown}' is past the log's retention ({self.log.config.retention_days:g} days)",
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


def _query_time(text: str, now: datetime, field: str) -> datetime:
    try:
        return parse_time(text, now)
    except ValueError as exc:
        raise InvalidInputError(f"'{field}': {exc}", field=field) from None


def _has_label(item: FeedbackItem) -> bool:
    return item.label is not None or item.labels is not None or item.path is not None


def _kinds(item: FeedbackItem) -> list[str]:
    """The `kind` labels of an item's `classifier_feedback_items_total` counts."""
    return [kind for kind, present in (("label", _has_label(item)), ("outcome", item.outcome is not None)) if present]


def _version_json(figure: VersionFigures, outcomes: Sequence[OutcomeTotal], withheld: str | None) -> dict[str, Any]:
    """One version's part of `GET /models/{name}/performance`."""
    return {
        "version": figure.version,
        "predictions": figure.predictions,
        "labelled": figure.labelled,
        "accuracy": _number(figure.accuracy),
        "f1": {average: _number(value) for average, value in figure.f1.items()},
        "level_accuracy": [_number(v) for v in figure.level_accuracy],
        "estimated_accuracy": _number(figure.estimated_accuracy),
        "classes": [
            {
                "class": c.name,
                "support": c.support,
                "predicted": c.predicted,
                "precision": _number(c.precision),
                "recall": _number(c.recall),
                "f1": _number(c.f1),
            }
            for c in figure.classes
        ],
        "outcomes": [
            {
                "outcome": t.name,
                "count": t.count,
                "value": t.value_sum,
                "take_rate": t.count / figure.predictions if figure.predictions else None,
            }
            for t in outcomes
        ],
        "withheld": withheld,
    }


def _without_label_figures(figure: VersionFigures) -> VersionFigures:
    """The figure with what its labelled predictions say left undefined (null in JSON), its counts kept."""
    undefined = float("nan")
    return replace(
        figure,
        accuracy=undefined,
        f1=dict.fromkeys(figure.f1, undefined),
        level_accuracy=[undefined] * len(figure.level_accuracy),
        estimated_accuracy=undefined,
        classes=[],
    )


def _number(value: float) -> float | None:
    """JSON has no NaN: an undefined figure (nothing labelled, no support) is null."""
    return None if value != value else value


def _is_database_error(exc: Exception) -> bool:
    return isinstance(exc, sqlalchemy.exc.DBAPIError)
