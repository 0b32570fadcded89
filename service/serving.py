"""The served models of one worker: loading, name resolution, and the predict path."""

from __future__ import annotations

import functools
import logging
import os
import time
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import orjson
from threadpoolctl import threadpool_limits

from .batching import Batcher
from .classifiers import (
    InvalidInputError,
    InvalidModelError,
    NonFiniteScoreError,
    Options,
    Prediction,
    Scored,
    Task,
    unscored_rows,
)
from .errors import ModelUnavailableError, UnknownModelError
from .feedback.ids import prediction_ids
from .feedback.log import Entry, PredictionLog
from .monitoring.metrics import NO_MODEL, Metrics
from .monitoring.monitor import ModelMonitor, render_drift, window_directory
from .monitoring.window import SlidingCounts
from .rollout.promotion import Promotions
from .rollout.shadow import ShadowRunner
from .schemas import PredictRequest
from .settings import Settings
from .store import LoadedModel

logger = logging.getLogger(__name__)

MAX_CLASS_NAMES_LISTED = 100


def _ignore(seconds: float, rows: int) -> None:
    """The model-call observer when monitoring is off."""


@dataclass(frozen=True)
class Served:
    """One served model version with its monitor and batcher: replaced whole on a promotion, so that a request,
    which reads it once, never mixes two versions."""

    model: LoadedModel
    description: dict[str, Any]  # `GET /models/{name}`, without the shadow
    monitor: ModelMonitor | None
    batcher: Batcher | None
    shadow: LoadedModel | None = None  # scores the same rows after the answers (`rollout.shadow`)


@dataclass(frozen=True)
class Answered:
    """A predict request's answer (CONTRACT.md's body) and the decisions it was built from."""

    body: dict[str, Any]
    prediction: Prediction[Any]


@dataclass
class ModelRegistry:
    """Models configured for this worker: the served ones and, for the others, why they failed."""

    settings: Settings
    metrics: Metrics
    log: PredictionLog
    inference: Executor
    shadows: ShadowRunner
    rollout: Promotions  # says which versions to serve, here and as other workers promote them
    served: dict[str, Served] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics, log: PredictionLog) -> ModelRegistry:
        """The configured models, in the versions their rollout says (`rollout.plan`), which tells this registry
        what to serve from then on."""
        # one inference thread per worker: model calls overlap request parsing, not each other
        inference = ThreadPoolExecutor(
            max_workers=1,
            thread_name_prefix="inference",
            initializer=limit_native_threads,  # OpenMP's limit is per thread, OpenBLAS's per process
            initargs=(settings,),
        )
        shadows = ShadowRunner(
            metrics, log, settings.shadow_max_pending_rows, functools.partial(limit_native_threads, settings)
        )
        rollout = Promotions.configured(settings, log)
        registry = cls(settings, metrics, log, inference, shadows, rollout)
        for name, version, shadow in rollout.starting_versions():
            try:
                model = rollout.load_served(name, version)
                served = registry.serving(model, rollout.load_shadow(model, shadow))
                rollout.known(model)
            except Exception as exc:  # noqa: BLE001 -- one model's broken artifact must not take the others down
                registry.failed[name] = load_failure(exc)
                logger.error(
                    "model %s:%s failed to load: %s", name, version, registry.failed[name],
                    exc_info=unexpected_failure(exc),
                )  # fmt: skip
                continue
            registry.swap(served)
            logger.info("serving %s (%s)", model.tag, model.task.name)
        rollout.attach(registry)
        return registry

    def serving(self, model: LoadedModel, shadow: LoadedModel | None = None) -> Served:
        """`model` with its card, a monitor and a batcher of its own (and `shadow`), ready to be served."""
        settings = self.settings
        description = describe_model(model, settings.monitored_features)
        monitor = None
        if settings.monitoring:
            monitor = ModelMonitor(model.name, model.version, model.card, self.metrics, settings, window_directory())
        batcher = None
        if settings.batching:
            batcher = Batcher(
                model.task,
                self.inference,
                settings.batch_max_rows,
                settings.batch_max_wait_ms / 1000,
                monitor.observe_inference if monitor else _ignore,
                monitor.observe_accepted if monitor else None,
                monitor.observe_prediction if monitor else None,
            )
        return Served(model, description, monitor, batcher, shadow)

    def serve(self, model: LoadedModel, shadow: LoadedModel | None) -> str | None:
        """Serve `model` (with `shadow`) in place of its model's current version, which it returns (None: none);
        `rollout.Promotions` calls it on a thread: the new monitor creates its window files."""
        replaced = self.swap(self.serving(model, shadow))
        return None if replaced is None else replaced.model.version

    def reshadow(self, name: str, shadow: LoadedModel | None) -> None:
        """Keep serving `name`'s version, with `shadow` (None: none)."""
        self.swap(replace(self.served[name], shadow=shadow))

    def swap(self, served: Served) -> Served | None:
        """Serve `served` in place of its model's current version (one assignment: requests already under way
        finish with the version they started with); returns what it replaced."""
        name = served.model.name
        previous = self.served.get(name)
        self.served[name] = served
        self.failed.pop(name, None)
        if previous is not None and previous.monitor is not None and previous.model.version != served.model.version:
            previous.monitor.retire()
        before = None if previous is None or previous.shadow is None else previous.shadow.version
        after = None if served.shadow is None else served.shadow.version
        if before != after:  # summed over workers: how many carry each shadow
            if before is not None:
                self.metrics.shadow_info.labels(model=name, version=before).set(0)
            if after is not None:
                self.metrics.shadow_info.labels(model=name, version=after).set(1)
        return previous

    @property
    def ready(self) -> bool:
        return not self.failed

    def unready_reason(self) -> str:
        """Why `/readyz` is 503: each configured model that failed to load, and why."""
        failures = "; ".join(f"model '{name}' failed to load: {why}" for name, why in sorted(self.failed.items()))
        configured = len(self.failed) + len(self.served)
        return f"{len(self.failed)} of {configured} configured models are not served: {failures}"

    def model_label(self, ref: str) -> tuple[str, str]:
        """The (model, version) metric labels for a requested name: the configured name and its served version
        (empty while it failed to load), or `none` (label values stay bounded)."""
        name = ref.partition(":")[0]
        served = self.served.get(name)
        if served is not None:
            return name, served.model.version
        return (name, "") if name in self.failed else (NO_MODEL, "")

    def resolve(self, ref: str) -> Served:
        """The served model for `name` or `name:version`."""
        name, _, version = ref.partition(":")
        if name in self.failed:
            raise ModelUnavailableError(
                f"model '{name}' is configured but failed to load; GET /readyz says why", field="model"
            )
        served = self.served.get(name)
        if served is None or version not in ("", "latest", served.model.version):
            listed = ", ".join(f"{s.model.name} ({s.model.version})" for s in self.served.values()) or "none"
            what = f"model '{ref}'" if served is None else f"version '{version}' of model '{name}'"
            raise UnknownModelError(f"{what} is not served; served models: {listed}", field="model")
        return served

    async def predict(
        self, request: PredictRequest, booleans_possible: bool = True, caller: str | None = None
    ) -> dict[str, Any]:
        """Answer one predict request (CONTRACT.md's response body), monitoring inputs and decisions.

        `booleans_possible=False` tells validation that the body holds no JSON boolean; `caller` is the name of the
        API key that sent it (None without keys), logged with the request.
        """
        return (await self.answer(request, booleans_possible, caller)).body

    async def answer(
        self,
        request: PredictRequest,
        booleans_possible: bool = True,
        caller: str | None = None,
        served: Served | None = None,
    ) -> Answered:
        """`predict`, with the decisions the answer was built from (the V2 routes encode them as tensors);
        `served`: the model `request.model` resolved to already (the V2 routes read its classes before)."""
        # read once: a promotion meanwhile does not change this request's model
        served = self.resolve(request.model) if served is None else served
        model, monitor, batcher = served.model, served.monitor, served.batcher
        task = model.task
        rows = len(request.instances)
        options, X = self.validated(served, request, booleans_possible)
        started = time.perf_counter()
        try:
            if batcher:
                scored = await batcher.score(X, rows)  # the batcher observes rows and decisions, once per model call
            else:
                scored = score_alone(task, X, rows)
        except Exception as exc:  # noqa: BLE001 -- whatever the model raised on these rows is this request's 400
            raise self.unscored(served, X, rows, exc) from exc
        if monitor and not batcher:
            monitor.observe_accepted(X)
            monitor.observe_inference(time.perf_counter() - started, rows)
            monitor.observe_prediction(task.observe(scored.scores, scored.defaults.expected_correct))
        prediction = task.decide(scored.scores, options)
        given = options.given()
        if monitor and given:
            monitor.observe_options(given, prediction.decided_labels)
            if options.min_confidence is not None:  # the one option that can leave a row without a label
                monitor.observe_abstentions(prediction.observations())
        now = time.time()
        key, logged = self.log.issue(model.name, model.version, rows, now)
        predictions = list(prediction.records())
        if logged:
            decisions = orjson.dumps(predictions, option=orjson.OPT_SERIALIZE_NUMPY)  # the log's copy, without ids
            entry = Entry(key, now, model.name, model.version, request.request_id, options, rows, decisions, X, scored,
                          caller)  # fmt: skip
            self.log.submit(entry)
        if served.shadow is not None:  # after the answer is built: the shadow never changes it
            self.shadows.submit(task, served.shadow, key if logged else None, X, scored)
        for record, prediction_id in zip(predictions, prediction_ids(key, rows), strict=True):
            record["id"] = prediction_id
        body = {
            "model": model.name,
            "version": model.version,
            "task": task.name,
            "request_id": request.request_id,
            "predictions": predictions,
        }
        return Answered(body, prediction)

    def validated(self, served: Served, request: PredictRequest, booleans_possible: bool) -> tuple[Options, Any]:
        """The request's options and its rows as the estimator's input; or `InvalidInputError`, whose rows
        monitoring counts as rejected with the faults they show."""
        rows = len(request.instances)
        try:
            if rows > self.settings.max_batch_rows:
                raise InvalidInputError(
                    f"'instances' has {rows} rows; at most {self.settings.max_batch_rows} are accepted",
                    field="instances",
                )
            options = request.options.to_options()
            served.model.task.check_options(options)
            return options, served.model.task.validate(request.instances, booleans_possible)
        except InvalidInputError as exc:
            if served.monitor:
                served.monitor.observe_rejected(rows, exc.issues)
            raise

    def unscored(self, served: Served, X: Any, rows: int, exc: Exception) -> InvalidInputError:
        """The 400 of a request whose validated rows the model could not score, logged once; monitoring counts the
        rows as rejected, with the faults their inputs show (values far out of the training range, typically)."""
        if isinstance(exc, NonFiniteScoreError):
            logger.warning("%s gave row %d of a request a NaN or infinite score", served.model.tag, exc.row)
        else:
            logger.warning("%s could not score the %d rows of a request", served.model.tag, rows, exc_info=exc)
        if served.monitor is not None:
            served.monitor.observe_unscored(X)
        return unscored_rows(served.model.name, exc)

    def describe(self, name: str) -> dict[str, Any]:
        """One model's card for `GET /models/{name}`."""
        served = self.resolve(name)
        shadow = None if served.shadow is None else served.shadow.version
        return {**served.description, "shadow": shadow}

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in sorted(self.served)]

    def flush_observations(self) -> None:
        """Hand monitoring the model calls still waiting for it (on the event loop)."""
        for served in list(self.served.values()):
            if served.batcher is not None:
                served.batcher.to_observe.flush()

    def drift_windows(self) -> list[SlidingCounts]:
        """The drift windows of the served models (this worker's files)."""
        return [served.monitor.window for served in self.served.values() if served.monitor is not None]

    def drift_exposition(self) -> str:
        """Scrape-time drift gauges of every served model."""
        return render_drift([served.monitor for served in self.served.values() if served.monitor is not None])


def load_failure(exc: Exception) -> str:
    """Why a configured model is not served, as `/readyz` and the log say it."""
    return str(exc) if isinstance(exc, InvalidModelError) else f"{type(exc).__name__}: {exc}"


def unexpected_failure(exc: Exception) -> bool:
    """Whether a load failure is worth a traceback in the log: not one of the faults the store names."""
    return not isinstance(exc, InvalidModelError)


def limit_native_threads(settings: Settings) -> int:
    """Caps this worker's BLAS and OpenMP threads so that workers x threads fits the CPUs it may use.

    Each worker batches rows into wide matrices already; N workers each starting one native thread per CPU
    oversubscribe the cores (`flat_1000` at 64 rows ran 2.8x slower with 2 workers than with 1 on 2 CPUs).
    A container limited by a CPU quota, not by CPU affinity, should set `CLF_NATIVE_THREADS`.
    """
    threads = settings.native_threads or max(1, len(os.sched_getaffinity(0)) // settings.workers)
    threadpool_limits(limits=threads)
    return threads


def score_alone(task: Task, X: Any, rows: int) -> Scored:
    """One request's own model call (batching off), with the model's default decisions on its scores."""
    scores = task.score(X)
    task.check_finite(scores)
    return Scored(scores, task.default_decisions(scores), 0, rows)


def describe_model(model: LoadedModel, monitored_features: int) -> dict[str, Any]:
    """The model card of `GET /models`: identity, classes, features (and the columns object rows may hold besides
    them), validation metrics, decision defaults."""
    card = model.card
    classes = model.task.classes
    features = model.task.features
    # as ranked at registration: none when every feature is text; a card without the field, every feature
    ranked = features.names if card.monitored_features is None else card.monitored_features
    return {
        "name": model.name,
        "version": model.version,
        "task": model.task.name,
        "classes": {"count": len(classes), "names": classes[:MAX_CLASS_NAMES_LISTED]},
        "features": {
            "count": len(features.names),
            "names": list(features.names),
            "categorical": sorted(features.categorical),
            "text": sorted(features.text),
            "allows_missing": features.allows_missing,
        },
        "ignored_columns": list(features.ignored),
        "trained_at": card.trained_at.isoformat(),
        "sklearn_version": card.sklearn_version,
        "metrics": dict(card.validation.figures),
        "decision": card.decision.to_metadata(),
        "options": sorted(model.task.options),
        "monitored_features": list(ranked)[:monitored_features],
    }
