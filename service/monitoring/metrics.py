"""The Prometheus metrics of the service: one place that names them, and the only importer of prometheus_client.

Workers write to `PROMETHEUS_MULTIPROC_DIR` and BentoML's `/metrics` sums their files, so counters and histograms
add up across workers; each gauge says how workers combine (`multiprocess_mode`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

LATENCY_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
ROW_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)
CONFIDENCE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
MARGIN_BUCKETS = (0.01, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 1.0)
COUNT_BUCKETS = (0, 1, 2, 3, 4, 5, 6, 8, 10, 20, 50)

FEW_VALUES = 4
NO_MODEL = "none"  # the `model` label of requests that name no served model
CONTENT_TYPE = CONTENT_TYPE_LATEST


@dataclass(frozen=True)
class Metrics:
    """Every metric object of one worker."""

    requests: Counter
    request_duration: Histogram
    in_flight: Gauge
    inference_duration: Histogram
    batch_rows: Histogram
    rows: Counter
    predictions: Counter
    confidence: Histogram
    margin: Histogram
    abstentions: Counter
    labels_per_instance: Histogram
    path_depth: Histogram
    incomplete_paths: Counter
    input_issues: Counter
    validation_accuracy: Gauge
    validation_mean_confidence: Gauge
    validation_ece: Gauge
    validation_prediction_share: Gauge
    model_info: Gauge
    trained_timestamp: Gauge
    loaded_timestamp: Gauge
    heartbeat: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY) -> Metrics:
        """Create the metrics in `registry` (a fresh `CollectorRegistry()` in unit tests)."""
        r = registry
        model = ("model",)
        return cls(
            requests=Counter("classifier_requests", "Requests answered.", [*model, "endpoint", "code"], registry=r),
            request_duration=Histogram(
                "classifier_request_duration_seconds",
                "End-to-end latency inside the service.",
                [*model, "endpoint"],
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            in_flight=Gauge(
                "classifier_requests_in_flight",
                "Requests being handled.",
                ["endpoint"],
                multiprocess_mode="livesum",
                registry=r,
            ),
            inference_duration=Histogram(
                "classifier_inference_duration_seconds",
                "Time inside the model for one model call.",
                model,
                buckets=LATENCY_BUCKETS,
                registry=r,
            ),
            batch_rows=Histogram(
                "classifier_batch_rows", "Rows per model call.", model, buckets=ROW_BUCKETS, registry=r
            ),
            rows=Counter("classifier_rows", "Rows received in predict requests.", [*model, "outcome"], registry=r),
            predictions=Counter(
                "classifier_predictions",
                "Decided labels (the most frequent training classes, the rest as other).",
                [*model, "label", "level"],
                registry=r,
            ),
            confidence=Histogram(
                "classifier_prediction_confidence",
                "Top-1 probability of each decision.",
                model,
                buckets=CONFIDENCE_BUCKETS,
                registry=r,
            ),
            margin=Histogram(
                "classifier_prediction_margin",
                "Top-1 minus top-2 probability.",
                model,
                buckets=MARGIN_BUCKETS,
                registry=r,
            ),
            abstentions=Counter("classifier_abstentions", "Predictions with no label.", model, registry=r),
            labels_per_instance=Histogram(
                "classifier_labels_per_instance",
                "Labels decided per row (multilabel).",
                model,
                buckets=COUNT_BUCKETS,
                registry=r,
            ),
            path_depth=Histogram(
                "classifier_path_depth",
                "Levels decided per row (hierarchical).",
                model,
                buckets=COUNT_BUCKETS,
                registry=r,
            ),
            incomplete_paths=Counter(
                "classifier_incomplete_paths", "Hierarchical paths that stopped before a leaf.", model, registry=r
            ),
            input_issues=Counter(
                "classifier_input_issues",
                "Data-quality faults in request rows, accepted or rejected.",
                [*model, "feature", "kind"],
                registry=r,
            ),
            validation_accuracy=Gauge(
                "classifier_validation_accuracy",
                "Accuracy on the validation set at registration.",
                model,
                multiprocess_mode="max",
                registry=r,
            ),
            validation_mean_confidence=Gauge(
                "classifier_validation_mean_confidence",
                "Mean top-1 confidence on the validation set.",
                model,
                multiprocess_mode="max",
                registry=r,
            ),
            validation_ece=Gauge(
                "classifier_validation_ece",
                "Expected calibration error on the validation set.",
                model,
                multiprocess_mode="max",
                registry=r,
            ),
            validation_prediction_share=Gauge(
                "classifier_validation_prediction_share",
                "Share of each decided label on the validation set.",
                [*model, "label", "level"],
                multiprocess_mode="max",
                registry=r,
            ),
            model_info=Gauge(
                "classifier_model_info",
                "The served model version and task (always 1).",
                [*model, "version", "task"],
                multiprocess_mode="max",
                registry=r,
            ),
            trained_timestamp=Gauge(
                "classifier_model_trained_timestamp_seconds",
                "When the served version was trained.",
                model,
                multiprocess_mode="max",
                registry=r,
            ),
            loaded_timestamp=Gauge(
                "classifier_model_loaded_timestamp_seconds",
                "When the workers loaded the model.",
                model,
                multiprocess_mode="max",
                registry=r,
            ),
            heartbeat=Gauge(
                "classifier_worker_heartbeat_timestamp_seconds",
                "Set to the current time by each worker every few seconds; a dead worker's series stops.",
                multiprocess_mode="all",
                registry=r,
            ),
        )


class Children:
    """A metric's children by label values, kept: `labels()` takes a lock and builds its key on every call."""

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child


_shared: Metrics | None = None


def shared_metrics() -> Metrics:
    """The worker's metrics in the default registry, created on first use (never at import)."""
    global _shared
    if _shared is None:
        _shared = Metrics.create()
    return _shared


def observe_many(histogram: Any, values: np.ndarray) -> None:
    """`histogram.observe(v)` for every v, vectorised: one bucket update per bucket, not per value.

    Uses the child's bucket and sum values, as `Histogram.observe` does; a test pins the equivalence.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size <= FEW_VALUES:  # a few observe() calls cost less than the vectorised path's set-up
        for value in values.tolist():
            histogram.observe(value)
        return
    bounds = np.asarray(histogram._upper_bounds)
    observed = values[~np.isnan(values)]  # like observe(): NaN joins the sum, no bucket
    counts = np.bincount(np.searchsorted(bounds, observed, side="left"), minlength=len(bounds))
    for i in np.flatnonzero(counts).tolist():
        histogram._buckets[i].inc(float(counts[i]))
    histogram._sum.inc(float(values.sum()))


@dataclass(frozen=True)
class GaugeFamily:
    """A gauge computed at scrape time, rendered into the exposition text by `render_gauges`."""

    name: str
    documentation: str
    labelnames: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]]


def render_gauges(families: Sequence[GaugeFamily]) -> str:
    """Prometheus text exposition of scrape-time gauges."""

    class _Collector:
        def collect(self) -> Iterable[GaugeMetricFamily]:
            for family in families:
                metric = GaugeMetricFamily(family.name, family.documentation, labels=list(family.labelnames))
                for label_values, value in family.samples:
                    metric.add_metric(list(label_values), value)
                yield metric

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector())
    return generate_latest(registry).decode("utf-8")


def exposition() -> bytes:
    """The text exposition of every worker's metrics, summed from the multiprocess folder."""
    registry = CollectorRegistry(auto_describe=False)
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(_HistogramOrder(registry))


class _HistogramOrder:
    """Histogram samples as the exposition format orders them: buckets by `le`, then `_count` and `_sum`.

    MultiProcessCollector emits `_sum` and `_count` before the buckets.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self._registry = registry

    def collect(self) -> Iterable[Any]:
        for metric in self._registry.collect():
            if metric.type == "histogram":
                metric.samples.sort(key=_histogram_sample_order)
            yield metric


def _histogram_sample_order(sample: Any) -> tuple[tuple[tuple[str, str], ...], int, float]:
    labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "le"))
    if sample.name.endswith("_bucket"):
        return labels, 0, float(sample.labels["le"])
    return labels, 1 if sample.name.endswith("_count") else 2, 0.0
