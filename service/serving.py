"""The served models of one worker: loading, name resolution, and the predict path."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from .batching import Batcher
from .classifiers import InvalidInputError, InvalidModelError
from .errors import ModelUnavailableError, UnknownModelError
from .monitoring.metrics import NO_MODEL, Metrics
from .monitoring.monitor import ModelMonitor, MonitoringConfig, render_drift, window_directory
from .schemas import PredictRequest
from .settings import Settings
from .store import LoadedModel, load_model

logger = logging.getLogger(__name__)

MAX_CLASS_NAMES_LISTED = 100


def prediction_ids(count: int) -> list[str]:
    """Unique ids for a request's predictions: one random request part, then the row index."""
    prefix = os.urandom(12).hex()
    return [f"{prefix}-{i}" for i in range(count)]


def monitoring_config(settings: Settings) -> MonitoringConfig:
    return MonitoringConfig(
        monitored_features=settings.monitored_features,
        monitored_labels=settings.monitored_labels,
        drift_window_seconds=settings.drift_window_seconds,
        drift_slots=settings.drift_slots,
        drift_min_rows=settings.drift_min_rows,
        drift_sample_rows=settings.drift_sample_rows,
    )


def _ignore(seconds: float, rows: int) -> None:
    """The model-call observer when monitoring is off."""


@dataclass
class ModelRegistry:
    """Models configured for this worker: the loaded ones with their monitors and batchers and, for the others,
    why they failed."""

    settings: Settings
    metrics: Metrics
    loaded: dict[str, LoadedModel] = field(default_factory=dict)
    monitors: dict[str, ModelMonitor] = field(default_factory=dict)
    batchers: dict[str, Batcher] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, settings: Settings, metrics: Metrics) -> ModelRegistry:
        registry = cls(settings, metrics)
        config = monitoring_config(settings)
        directory = window_directory()
        # one inference thread per worker: model calls overlap request parsing, not each other
        inference = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        for entry in settings.models:
            name, _, version = entry.partition(":")
            try:
                model = load_model(f"{name}:{version or 'latest'}", settings.trusted_types)
            except InvalidModelError as exc:
                logger.error("model %s failed to load: %s", entry, exc)
                registry.failed[name] = str(exc)
                continue
            registry.loaded[name] = model
            monitor = None
            if settings.monitoring:
                monitor = ModelMonitor(name, model.version, model.metadata, metrics, config, directory)
                registry.monitors[name] = monitor
            if settings.batching:
                registry.batchers[name] = Batcher(
                    model.task,
                    inference,
                    settings.batch_max_rows,
                    settings.batch_max_wait_ms / 1000,
                    monitor.observe_inference if monitor else _ignore,
                    monitor.observe_accepted if monitor else None,
                )
            logger.info("serving %s (%s)", model.tag, model.metadata["task"])
        return registry

    @property
    def ready(self) -> bool:
        return not self.failed

    def model_label(self, ref: str) -> str:
        """The `model` metric label for a requested name: the configured name, or `none` (label values stay bounded)."""
        name = ref.partition(":")[0]
        return name if name in self.loaded or name in self.failed else NO_MODEL

    def resolve(self, ref: str) -> LoadedModel:
        """The served model for `name` or `name:version`."""
        name, _, version = ref.partition(":")
        if name in self.failed:
            raise ModelUnavailableError(
                f"model '{name}' is configured but failed to load; the log says why", field="model"
            )
        model = self.loaded.get(name)
        if model is None or version not in ("", "latest", model.version):
            served = ", ".join(f"{m.name} ({m.version})" for m in self.loaded.values()) or "none"
            what = f"model '{ref}'" if model is None else f"version '{version}' of model '{name}'"
            raise UnknownModelError(f"{what} is not served; served models: {served}", field="model")
        return model

    async def predict(self, request: PredictRequest, booleans_possible: bool = True) -> dict[str, Any]:
        """Answer one predict request (CONTRACT.md's response body), monitoring inputs and decisions.

        `booleans_possible=False` tells validation that the body holds no JSON boolean.
        """
        model = self.resolve(request.model)
        monitor = self.monitors.get(model.name)
        task = model.task
        rows = len(request.instances)
        try:
            if rows > self.settings.max_batch_rows:
                raise InvalidInputError(
                    f"'instances' has {rows} rows; at most {self.settings.max_batch_rows} are accepted",
                    field="instances",
                )
            options = request.options.to_options()
            task.check_options(options)
            X = task.validate(request.instances, booleans_possible)
        except InvalidInputError as exc:
            if monitor:
                monitor.observe_rejected(rows, exc.issues)
            raise
        batcher = self.batchers.get(model.name)
        if batcher:
            scores = await batcher.score(X, rows)  # the batcher observes the accepted rows, once per batch
        else:
            if monitor:
                monitor.observe_accepted(X)
            started = time.perf_counter()
            scores = task.score(X)
            if monitor:
                monitor.observe_inference(time.perf_counter() - started, rows)
        prediction = task.decide(scores, options)
        if monitor:
            monitor.record_prediction(prediction.observations())
        predictions = []
        for prediction_id, record in zip(prediction_ids(len(prediction)), prediction.records(), strict=True):
            record["id"] = prediction_id
            predictions.append(record)
        return {
            "model": model.name,
            "version": model.version,
            "task": task.name,
            "request_id": request.request_id,
            "predictions": predictions,
        }

    def describe(self, name: str) -> dict[str, Any]:
        """One model's card for `GET /models/{name}`."""
        return describe_model(self.resolve(name), self.settings.monitored_features)

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in sorted(self.loaded)]

    def drift_exposition(self) -> str:
        """Scrape-time drift gauges of every served model."""
        return render_drift(self.monitors.values())


def describe_model(model: LoadedModel, monitored_features: int) -> dict[str, Any]:
    """The model card of `GET /models`: identity, classes, features, validation metrics, decision defaults."""
    meta = model.metadata
    classes = list(meta["classes"])
    features = meta["features"]
    return {
        "name": model.name,
        "version": model.version,
        "task": meta["task"],
        "classes": {"count": len(classes), "names": classes[:MAX_CLASS_NAMES_LISTED]},
        "features": {
            "count": len(features["names"]),
            "names": features["names"],
            "categorical": features["categorical"],
            "allows_missing": features["allows_missing"],
        },
        "trained_at": meta["trained_at"],
        "sklearn_version": meta["sklearn_version"],
        "metrics": meta["metrics"],
        "decision": meta["decision"],
        "options": sorted(model.task.options),
        "monitored_features": list(meta.get("monitored_features", features["names"]))[:monitored_features],
    }
