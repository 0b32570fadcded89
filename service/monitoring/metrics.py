"""The Prometheus metrics of the service: one place that names them, and with `prometheus_fast` (its door to
prometheus_client's private value cells) the only importer of prometheus_client.

Workers write to `PROMETHEUS_MULTIPROC_DIR` and BentoML's `/metrics` sums their files, so counters and histograms
add up across workers; each gauge says how workers combine (`multiprocess_mode`).
"""

from __future__ import annotations

import bisect
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

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

from .prometheus_fast import Cell, HistogramCells, histogram_cells, value_cell

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
# from a prediction to its first label: seconds (a client labelling at once) to a month (a delayed outcome)
LABEL_DELAY_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 12 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)

FEW_VALUES = 4
NO_MODEL = "none"  # the `model` label of requests that name no served model
CONTENT_TYPE = CONTENT_TYPE_LATEST
MODEL = ("model", "version")  # the labels of the version that answered: a promotion starts new series


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
    estimated_correct: Counter
    estimated_rows: Counter
    option_requests: Counter
    option_predictions: Counter
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
    reference_rows: Gauge
    model_info: Gauge
    trained_timestamp: Gauge
    loaded_timestamp: Gauge
    heartbeat: Gauge
    feedback_items: Counter
    labelled_predictions: Counter
    label_delay: Histogram
    outcomes: Counter
    outcome_value: Counter
    log_rows: Counter
    log_queue_rows: Gauge
    log_write_duration: Histogram
    log_deleted_rows: Counter
    shadow_rows: Counter
    shadow_info: Gauge
    writes: PendingWrites  # how the hot paths write the metrics above

    @classmethod
    def create(cls, registry: CollectorRegistry = REGISTRY, buffered: bool = False) -> Metrics:
        """Create the metrics in `registry` (a fresh `CollectorRegistry()` in unit tests); `buffered`: the hot
        paths' writes wait in memory for `writes.flush()` (see `PendingWrites`)."""
        return cls(
            writes=PendingWrites(buffered),
            **_request_metrics(registry),
            **_decision_metrics(registry),
            **_answer_metrics(registry),
            **_reference_metrics(registry),
            **_model_metrics(registry),
            **_feedback_metrics(registry),
            **_log_metrics(registry),
            **_shadow_metrics(registry),
        )


def _request_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """Requests, their latency, the model calls and the rows they carry."""
    return dict(
        requests=Counter("classifier_requests", "Requests answered.", [*MODEL, "endpoint", "code"], registry=registry),
        request_duration=Histogram(
            "classifier_request_duration_seconds",
            "End-to-end latency inside the service.",
            [*MODEL, "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        in_flight=Gauge(
            "classifier_requests_in_flight",
            "Requests being handled.",
            ["endpoint"],
            multiprocess_mode="livesum",
            registry=registry,
        ),
        inference_duration=Histogram(
            "classifier_inference_duration_seconds",
            "Time inside the model for one model call.",
            MODEL,
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        batch_rows=Histogram(
            "classifier_batch_rows", "Rows per model call.", MODEL, buckets=ROW_BUCKETS, registry=registry
        ),
        rows=Counter("classifier_rows", "Rows received in predict requests.", [*MODEL, "outcome"], registry=registry),
    )


def _decision_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """The model's own default decisions, their confidence and the label-free accuracy estimate; what requests that
    set a decision option asked and got."""
    return dict(
        predictions=Counter(
            "classifier_predictions",
            "The model's own default decisions, whatever options requests sent (the most frequent training "
            "classes, the rest as other).",
            [*MODEL, "label", "level"],
            registry=registry,
        ),
        confidence=Histogram(
            "classifier_prediction_confidence",
            "Top-1 probability of each default decision (binary: of the decided class; multilabel: per decided "
            "label; hierarchical: of the full greedy path).",
            MODEL,
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        ),
        estimated_correct=Counter(
            "classifier_estimated_correct",
            "Sum over rows of the calibrated probability that the model's default decision is right; over "
            "classifier_estimated_rows_total, the label-free accuracy estimate.",
            MODEL,
            registry=registry,
        ),
        estimated_rows=Counter(
            "classifier_estimated_rows", "Rows in classifier_estimated_correct_total.", MODEL, registry=registry
        ),
        option_requests=Counter(
            "classifier_option_requests",
            "Predict requests that set a decision option, by option (what clients ask; pages nobody).",
            [*MODEL, "option"],
            registry=registry,
        ),
        option_predictions=Counter(
            "classifier_option_predictions",
            "Labels answered to requests that set a decision option (what clients got; pages nobody).",
            [*MODEL, "label"],
            registry=registry,
        ),
    )


def _answer_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """What the answers looked like per task kind (margin, abstentions, labels, path depth), and the faults of the
    rows they answered."""
    return dict(
        margin=Histogram(
            "classifier_prediction_margin",
            "Top-1 minus top-2 probability.",
            MODEL,
            buckets=MARGIN_BUCKETS,
            registry=registry,
        ),
        abstentions=Counter(
            "classifier_abstentions",
            "Answers with no label because the request's min_confidence was above the model's confidence (what "
            "clients got; the model's defaults never abstain).",
            MODEL,
            registry=registry,
        ),
        labels_per_instance=Histogram(
            "classifier_labels_per_instance",
            "Labels decided per row (multilabel).",
            MODEL,
            buckets=COUNT_BUCKETS,
            registry=registry,
        ),
        path_depth=Histogram(
            "classifier_path_depth",
            "Levels decided per row (hierarchical).",
            MODEL,
            buckets=COUNT_BUCKETS,
            registry=registry,
        ),
        incomplete_paths=Counter(
            "classifier_incomplete_paths",
            "Hierarchical answers whose path the request's min_confidence stopped before a leaf, empty paths "
            "included (what clients got; the model's default path always reaches a leaf).",
            MODEL,
            registry=registry,
        ),
        input_issues=Counter(
            "classifier_input_issues",
            "Data-quality faults in request rows, accepted or rejected.",
            [*MODEL, "feature", "kind"],
            registry=registry,
        ),
    )


def _reference_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """The figures of the served version at registration that the quality and drift alerts compare with."""
    return dict(
        validation_accuracy=Gauge(
            "classifier_validation_accuracy",
            "Accuracy on the validation set at registration.",
            MODEL,
            multiprocess_mode="max",
            registry=registry,
        ),
        validation_mean_confidence=Gauge(
            "classifier_validation_mean_confidence",
            "Mean top-1 confidence on the validation set.",
            MODEL,
            multiprocess_mode="max",
            registry=registry,
        ),
        validation_ece=Gauge(
            "classifier_validation_ece",
            "Expected calibration error on the validation set.",
            MODEL,
            multiprocess_mode="max",
            registry=registry,
        ),
        validation_prediction_share=Gauge(
            "classifier_validation_prediction_share",
            "Share of each decided label on the validation set.",
            [*MODEL, "label", "level"],
            multiprocess_mode="max",
            registry=registry,
        ),
        reference_rows=Gauge(
            "classifier_reference_rows",
            "Rows behind the references the drift and accuracy alerts compare with: sample=training (the feature "
            "profile), sample=calibration (the validation figures and prediction shares).",
            [*MODEL, "sample"],
            multiprocess_mode="max",
            registry=registry,
        ),
    )


def _model_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """Which version serves, when it was trained and loaded, and whether each worker is alive."""
    return dict(
        model_info=Gauge(
            "classifier_model_info",
            "The served model version and task: 1 while served, 0 once a promotion replaced it.",
            [*MODEL, "task"],
            multiprocess_mode="max",
            registry=registry,
        ),
        trained_timestamp=Gauge(
            "classifier_model_trained_timestamp_seconds",
            "When the served version was trained.",
            MODEL,
            multiprocess_mode="max",
            registry=registry,
        ),
        loaded_timestamp=Gauge(
            "classifier_model_loaded_timestamp_seconds",
            "When the workers loaded the model.",
            MODEL,
            multiprocess_mode="max",
            registry=registry,
        ),
        heartbeat=Gauge(
            "classifier_worker_heartbeat_timestamp_seconds",
            "Set to the current time by each worker every few seconds; a dead worker's series stops.",
            multiprocess_mode="all",
            registry=registry,
        ),
    )


def _feedback_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """Feedback received: labels, their delay and correctness, business outcomes."""
    return dict(
        feedback_items=Counter(
            "classifier_feedback_items",
            "Feedback items received, by kind (label, outcome) and result (accepted or an error code).",
            [*MODEL, "kind", "result"],
            registry=registry,
        ),
        labelled_predictions=Counter(
            "classifier_labelled_predictions",
            "Predictions at their first label, by whether the model's default decision was right: result=correct "
            "or wrong (counted when the label arrives).",
            [*MODEL, "result"],
            registry=registry,
        ),
        label_delay=Histogram(
            "classifier_label_delay_seconds",
            "From a prediction to its first label.",
            MODEL,
            buckets=LABEL_DELAY_BUCKETS,
            registry=registry,
        ),
        outcomes=Counter(
            "classifier_outcomes",
            "Business outcomes reported, each (prediction, outcome) once.",
            [*MODEL, "outcome"],
            registry=registry,
        ),
        outcome_value=Counter(
            "classifier_outcome_value",
            "Sum of the business outcomes' values, each (prediction, outcome) once.",
            [*MODEL, "outcome"],
            registry=registry,
        ),
    )


def _log_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """The prediction log: what became of each prediction, the queue, the writes and retention."""
    return dict(
        log_rows=Counter(
            "classifier_prediction_log_rows",
            "Predictions by what became of them in the log: written, dropped (queue full), failed, unsampled.",
            [*MODEL, "result"],
            registry=registry,
        ),
        log_queue_rows=Gauge(
            "classifier_prediction_log_queue_rows",
            "Predictions waiting in the workers' log queues.",
            multiprocess_mode="livesum",
            registry=registry,
        ),
        log_write_duration=Histogram(
            "classifier_prediction_log_write_duration_seconds",
            "Time to write one batch of predictions to the log's database.",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        ),
        log_deleted_rows=Counter(
            "classifier_prediction_log_deleted_rows",
            "Predictions deleted from the log past the retention period.",
            registry=registry,
        ),
    )


def _shadow_metrics(registry: CollectorRegistry) -> dict[str, Any]:
    """Shadow versions: which are carried, and how their decisions compared with the served one."""
    return dict(
        shadow_info=Gauge(
            "classifier_shadow_info",
            "Workers carrying this shadow version of the model (each worker sets 1, or 0 once it stopped).",
            ["model", "version"],  # the shadow version
            multiprocess_mode="livesum",
            registry=registry,
        ),
        shadow_rows=Counter(
            "classifier_shadow_rows",
            "Rows a shadow version scored beside the served one, by whether its default decision agreed "
            "(result: agree, disagree), or rows it left unscored (skipped: it fell behind; failed: it raised).",
            ["model", "version", "result"],  # the shadow version
            registry=registry,
        ),
    )


class VectorSink(Protocol):
    """Counts kept as one vector outside prometheus_client (a model's drift bins: `SlidingCounts`)."""

    def add(self, counts: np.ndarray) -> None: ...


class PendingWrites:
    """The hot paths' counter, histogram and gauge increments of one worker, summed in memory and written to the
    metric values in one pass by `flush()`.

    In multiprocess mode every value write takes a lock, checks the pid and writes an mmapped file (about 2.4 µs);
    a 1-row request made some twenty. Buffered, a request adds to a dict under one uncontended lock, and each
    value is written once per flush whatever the traffic. The cost is staleness: the service flushes every
    `CLF_METRICS_FLUSH_SECONDS` (1 s) and before it renders `/metrics`, so a scrape sees the answering worker's
    increments at once and another worker's at most that late. Unbuffered (unit tests), every write goes through.
    The cells are prometheus_client's own, reached through `prometheus_fast`, which checks them.
    """

    def __init__(self, buffered: bool) -> None:
        self.buffered = buffered
        self._lock = threading.Lock()
        self._amounts: dict[Cell, float] = {}  # a metric's value cell -> amount to add
        self._histograms: dict[Any, HistogramCells] = {}  # a histogram child -> its cells, checked at first use
        self._vectors: dict[VectorSink, np.ndarray] = {}  # a vector of counts -> amounts to add
        self._stopped = threading.Event()

    def inc(self, child: Any, amount: float = 1.0) -> None:
        """`child.inc(amount)` (a counter or gauge child)."""
        self._add(value_cell(child), amount)

    def dec(self, child: Any, amount: float = 1.0) -> None:
        """`child.dec(amount)` (a gauge child)."""
        self._add(value_cell(child), -amount)

    def inc_vector(self, sink: VectorSink, amounts: np.ndarray) -> None:
        """`sink.add(amounts)`: amounts summed in memory by one vector addition, added to the sink at the flush."""
        if not self.buffered:
            sink.add(amounts)
            return
        with self._lock:
            pending = self._vectors.get(sink)
            if pending is None:
                self._vectors[sink] = np.array(amounts, dtype=np.float64)  # a copy: the caller's array is its own
            else:
                pending += amounts

    def _cells(self, histogram: Any) -> HistogramCells:
        cells = self._histograms.get(histogram)
        if cells is None:
            cells = self._histograms[histogram] = histogram_cells(histogram)
        return cells

    def observe(self, histogram: Any, value: float) -> None:
        """`histogram.observe(value)`: the first bucket whose bound is at least the value, and the sum."""
        cells = self._cells(histogram)
        if value == value:  # like observe(): NaN joins the sum, no bucket
            index = bisect.bisect_left(cells.bounds, value)
            if index < len(cells.buckets):
                self._add(cells.buckets[index], 1.0)
        self._add(cells.sum, value)

    def observe_many(self, histogram: Any, values: np.ndarray) -> None:
        """`histogram.observe(v)` for every v, vectorised: one bucket update per bucket, not per value."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size <= FEW_VALUES:  # a few observe() calls cost less than the vectorised path's set-up
            for value in values.tolist():
                self.observe(histogram, value)
            return
        cells = self._cells(histogram)
        bounds = np.asarray(cells.bounds)
        observed = values[~np.isnan(values)]  # like observe(): NaN joins the sum, no bucket
        counts = np.bincount(np.searchsorted(bounds, observed, side="left"), minlength=len(bounds))
        for i in np.flatnonzero(counts).tolist():
            self._add(cells.buckets[i], float(counts[i]))
        self._add(cells.sum, float(values.sum()))

    def _add(self, value: Cell, amount: float) -> None:
        if not self.buffered:
            value.inc(amount)
            return
        with self._lock:
            self._amounts[value] = self._amounts.get(value, 0.0) + amount

    def flush(self) -> None:
        """Write what is pending."""
        with self._lock:
            amounts, self._amounts = self._amounts, {}
            vectors, self._vectors = self._vectors, {}
        for value, amount in amounts.items():
            value.inc(amount)
        for sink, pending in vectors.items():
            sink.add(pending)

    def start(self, interval: float) -> None:
        """Flush every `interval` seconds from a daemon thread until `stop()`."""
        threading.Thread(target=self._run, args=(interval,), name="metrics-flush", daemon=True).start()

    def _run(self, interval: float) -> None:
        while not self._stopped.wait(interval):
            self.flush()

    def stop(self) -> None:
        """Stop the flushing thread and write what is pending."""
        self._stopped.set()
        self.flush()


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
        _shared = Metrics.create(buffered=True)
    return _shared


@dataclass(frozen=True)
class GaugeFamily:
    """A gauge computed at scrape time, rendered into the exposition text by `render_gauges`."""

    name: str
    documentation: str
    labelnames: tuple[str, ...]
    samples: Sequence[tuple[tuple[str, ...], float]]


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


def label_set(names: Sequence[str], values: Sequence[str]) -> str:
    """`{name="value",...}` as the exposition format writes it."""
    return "{" + ",".join(f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)) + "}"


def _escape(text: str) -> str:
    return text.replace("\\", r"\\").replace('"', r"\"").replace("\n", r"\n")


def render_samples(name: str, kind: str, documentation: str, samples: Iterable[tuple[str, float]]) -> str:
    """Exposition text of one family from label sets rendered beforehand (`label_set`): families of thousands of
    samples rendered at every scrape, at a small fraction of prometheus_client's cost per sample."""
    lines = [f"# HELP {name} {documentation}", f"# TYPE {name} {kind}"]
    lines.extend(f"{name}{labels} {_sample_value(value)}" for labels, value in samples)
    return "\n".join(lines) + "\n"


def _sample_value(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (math.inf, -math.inf):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


# A dead process's gauge files that go with it: its own series (`all`) and its say in a max, a min or the most recent
# value (its replacement sets its own); prometheus_client's `mark_process_dead` removes the `live*` ones. Counters,
# histograms and `sum` gauges stay: the sums they export include the dead process's counts.
_PER_PROCESS_GAUGE_MODES = ("all", "max", "min", "mostrecent")
_LIVE_GAUGE_MODES = ("liveall", "livesum", "livemax", "livemin", "livemostrecent")


def gauge_process_ids(directory: Path) -> set[int]:
    """The processes with gauge files in the multiprocess folder `directory` that `forget_process` would remove:
    every process that created the service's metrics (`classifier_prediction_log_queue_rows` is one), until then."""
    pids: set[int] = set()
    for mode in _PER_PROCESS_GAUGE_MODES + _LIVE_GAUGE_MODES:
        suffixes = (path.stem.rpartition("_")[2] for path in directory.glob(f"gauge_{mode}_*.db"))
        pids.update(int(suffix) for suffix in suffixes if suffix.isdigit())
    return pids


def forget_process(pid: int, directory: Path) -> None:
    """Remove the gauge files of a dead process from the multiprocess folder `directory`: its series stop being
    exported, and its files do not pile up across restarts."""
    multiprocess.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]
    for mode in _PER_PROCESS_GAUGE_MODES:
        (directory / f"gauge_{mode}_{pid}.db").unlink(missing_ok=True)


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
