"""The metric catalogue of `Metrics.create`, the vectorised histogram update, and scrape-time gauge rendering."""

from __future__ import annotations

import math
import time
from dataclasses import fields
from uuid import uuid4

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

from service.monitoring.metrics import (
    CONFIDENCE_BUCKETS,
    COUNT_BUCKETS,
    LATENCY_BUCKETS,
    MARGIN_BUCKETS,
    ROW_BUCKETS,
    GaugeFamily,
    Metrics,
    PendingWrites,
    label_set,
    render_gauges,
    render_samples,
)

# /tmp/spec/metrics.md's table: exposition name -> (type, label names). `pid` of the heartbeat is added by the
# gauge's multiprocess mode, not declared.
SPEC: dict[str, tuple[str, tuple[str, ...]]] = {
    "classifier_requests_total": ("counter", ("model", "version", "endpoint", "code")),
    "classifier_request_duration_seconds": ("histogram", ("model", "version", "endpoint")),
    "classifier_requests_in_flight": ("gauge", ("endpoint",)),
    "classifier_inference_duration_seconds": ("histogram", ("model", "version")),
    "classifier_batch_rows": ("histogram", ("model", "version")),
    "classifier_rows_total": ("counter", ("model", "version", "outcome")),
    "classifier_predictions_total": ("counter", ("model", "version", "label", "level")),
    "classifier_prediction_confidence": ("histogram", ("model", "version")),
    "classifier_estimated_correct_total": ("counter", ("model", "version")),
    "classifier_estimated_rows_total": ("counter", ("model", "version")),
    "classifier_option_requests_total": ("counter", ("model", "version", "option")),
    "classifier_option_predictions_total": ("counter", ("model", "version", "label")),
    "classifier_prediction_margin": ("histogram", ("model", "version")),
    "classifier_abstentions_total": ("counter", ("model", "version")),
    "classifier_labels_per_instance": ("histogram", ("model", "version")),
    "classifier_path_depth": ("histogram", ("model", "version")),
    "classifier_incomplete_paths_total": ("counter", ("model", "version")),
    "classifier_input_issues_total": ("counter", ("model", "version", "feature", "kind")),
    "classifier_validation_accuracy": ("gauge", ("model", "version")),
    "classifier_validation_mean_confidence": ("gauge", ("model", "version")),
    "classifier_validation_ece": ("gauge", ("model", "version")),
    "classifier_validation_prediction_share": ("gauge", ("model", "version", "label", "level")),
    "classifier_reference_rows": ("gauge", ("model", "version", "sample")),
    "classifier_model_info": ("gauge", ("model", "version", "task")),
    "classifier_model_trained_timestamp_seconds": ("gauge", ("model", "version")),
    "classifier_model_loaded_timestamp_seconds": ("gauge", ("model", "version")),
    "classifier_worker_heartbeat_timestamp_seconds": ("gauge", ()),
    "classifier_feedback_items_total": ("counter", ("model", "version", "kind", "result")),
    "classifier_labelled_predictions_total": ("counter", ("model", "version", "result")),
    "classifier_label_delay_seconds": ("histogram", ("model", "version")),
    "classifier_outcomes_total": ("counter", ("model", "version", "outcome")),
    "classifier_outcome_value_total": ("counter", ("model", "version", "outcome")),
    "classifier_prediction_log_rows_total": ("counter", ("model", "version", "result")),
    "classifier_prediction_log_queue_rows": ("gauge", ()),
    "classifier_prediction_log_write_duration_seconds": ("histogram", ()),
    "classifier_prediction_log_deleted_rows_total": ("counter", ()),
    "classifier_shadow_rows_total": ("counter", ("model", "version", "result")),
    "classifier_shadow_info": ("gauge", ("model", "version")),
}
SCRAPE_TIME = (
    "classifier_feature_drift_psi",
    "classifier_prediction_drift_psi",
    "classifier_drift_window_rows",
    "classifier_drift_bin_rows",
    "classifier_drift_reference_share",
)


def unique(prefix: str = "unit") -> str:
    """A name no other test (nor the in-process service) uses: metric values share per-process files."""
    return f"{prefix}_{uuid4().hex[:8]}"


def family_name(exposed: str, kind: str) -> str:
    """prometheus_client names a counter family without its `_total` suffix."""
    return exposed.removesuffix("_total") if kind == "counter" else exposed


def histogram_samples(registry: CollectorRegistry, name: str) -> dict[tuple[str, str], float]:
    """(sample suffix, le) -> value of one histogram, `_created` left out (a timestamp)."""
    samples = {}
    for family in registry.collect():
        if family.name != name:
            continue
        for sample in family.samples:
            suffix = sample.name.removeprefix(name)
            if suffix != "_created":
                samples[(suffix, sample.labels.get("le", ""))] = sample.value
    return samples


def per_value_and_vectorised(buckets: tuple[float, ...], values: list[float]) -> tuple[dict, dict]:  # type: ignore[type-arg]
    """The samples of `.observe(v)` for each v, and of `PendingWrites.observe_many(values)` (buffered, then
    flushed), on two fresh histograms; `PendingWrites.observe` of each value must give the first's too."""
    registry = CollectorRegistry()
    prefix = unique()
    one_by_one = Histogram(f"{prefix}_per_value", "per value", buckets=buckets, registry=registry)
    vectorised = Histogram(f"{prefix}_vectorised", "vectorised", buckets=buckets, registry=registry)
    pending = Histogram(f"{prefix}_pending", "pending per value", buckets=buckets, registry=registry)
    writes = PendingWrites(buffered=True)
    for value in values:
        one_by_one.observe(value)
        writes.observe(pending, value)
    writes.observe_many(vectorised, np.asarray(values, dtype=np.float64))
    writes.flush()
    per_value = histogram_samples(registry, f"{prefix}_per_value")
    pending_samples = histogram_samples(registry, f"{prefix}_pending")
    assert pending_samples.keys() == per_value.keys()
    for key, expected in per_value.items():
        assert pending_samples[key] == pytest.approx(expected, nan_ok=True)
    return per_value, histogram_samples(registry, f"{prefix}_vectorised")


@pytest.mark.parametrize(
    "buckets",
    [LATENCY_BUCKETS, ROW_BUCKETS, CONFIDENCE_BUCKETS, MARGIN_BUCKETS, COUNT_BUCKETS],
    ids=["latency", "rows", "confidence", "margin", "count"],
)
def test_observe_many_matches_observe_per_value(buckets: tuple[float, ...]) -> None:
    """Every boundary, values below the first and above the last bucket, and between: same buckets and sum."""
    bounds = [float(b) for b in buckets]
    between = [(a + b) / 2 for a, b in zip(bounds, bounds[1:], strict=False)]
    values = [
        *bounds,
        *bounds[:3],
        bounds[0] - 1.0,
        bounds[0] - 1e-9,
        -5.0,
        bounds[-1] + 1e-9,
        bounds[-1] * 7,
        *between,
    ]
    per_value, vectorised = per_value_and_vectorised(buckets, values)
    assert vectorised == per_value
    # and the expectation holds on its own: each boundary value lands in its own bucket (cumulative le)
    assert per_value[("_count", "")] == len(values)
    assert per_value[("_bucket", "+Inf")] == len(values)
    assert per_value[("_sum", "")] == pytest.approx(sum(values))


def test_observe_many_hand_counted() -> None:
    """A small case counted by hand: le is inclusive, above the last bucket counts only in +Inf."""
    per_value, vectorised = per_value_and_vectorised((1.0, 2.0), [0.5, 1.0, 1.5, 2.0, 3.0, -1.0])
    expected = {
        ("_bucket", "1.0"): 3.0,  # 0.5, 1.0, -1.0
        ("_bucket", "2.0"): 5.0,  # + 1.5, 2.0
        ("_bucket", "+Inf"): 6.0,  # + 3.0
        ("_count", ""): 6.0,
        ("_sum", ""): 7.0,
    }
    assert per_value == expected
    assert vectorised == expected


def test_observe_many_of_an_empty_array_changes_nothing() -> None:
    """No value: zero in every bucket, count and sum, as with no `.observe` call."""
    per_value, vectorised = per_value_and_vectorised((0.1, 1.0), [])
    assert vectorised == per_value
    assert set(vectorised.values()) == {0.0}


def test_observe_many_nan_matches_observe() -> None:
    """`.observe(nan)` adds NaN to the sum and to no bucket; the vectorised path must do the same, not raise.

    BUG (service/monitoring/metrics.py, observe_many): `np.searchsorted` puts NaN after +Inf, at index
    len(bounds), so `histogram._buckets[len(bounds)]` raises IndexError (after nothing was added to the sum).
    """
    per_value, vectorised = per_value_and_vectorised((0.5, 1.0), [0.2, float("nan"), 0.7])
    assert per_value[("_count", "")] == 2.0 and math.isnan(per_value[("_sum", "")])
    assert vectorised.keys() == per_value.keys()
    assert {k: v for k, v in vectorised.items() if k != ("_sum", "")} == {
        k: v for k, v in per_value.items() if k != ("_sum", "")
    }
    assert math.isnan(vectorised[("_sum", "")])


def test_buffered_writes_wait_for_a_flush_and_add_up() -> None:
    """Counter and gauge increments are invisible until `flush()`, then written once with their sum."""
    registry = CollectorRegistry()
    prefix = unique()
    counter = Counter(f"{prefix}_hits", "hits", ["kind"], registry=registry)
    gauge = Gauge(f"{prefix}_busy", "busy", registry=registry)
    writes = PendingWrites(buffered=True)
    for _ in range(3):
        writes.inc(counter.labels("a"), 2.0)
        writes.inc(gauge)
    writes.dec(gauge)
    assert registry.get_sample_value(f"{prefix}_hits_total", {"kind": "a"}) == 0.0
    writes.flush()
    assert registry.get_sample_value(f"{prefix}_hits_total", {"kind": "a"}) == 6.0
    assert registry.get_sample_value(f"{prefix}_busy") == 2.0
    writes.flush()  # nothing pending: nothing written twice
    assert registry.get_sample_value(f"{prefix}_hits_total", {"kind": "a"}) == 6.0


def test_the_flushing_thread_writes_and_stop_flushes_the_rest() -> None:
    registry = CollectorRegistry()
    base = f"{unique()}_hits"
    counter = Counter(base, "hits", registry=registry)
    name = f"{base}_total"
    writes = PendingWrites(buffered=True)
    writes.start(0.01)
    writes.inc(counter, 5.0)
    deadline = time.monotonic() + 120
    while registry.get_sample_value(name) != 5.0:
        assert time.monotonic() < deadline, "the flushing thread did not write within 2 minutes"
        time.sleep(0.01)
    writes.stop()
    writes.inc(counter, 1.0)  # after the thread stopped: stop() flushed, a later write waits for an explicit flush
    writes.stop()
    assert registry.get_sample_value(name) == 6.0


def test_unbuffered_writes_go_through_at_once() -> None:
    registry = CollectorRegistry()
    name = f"{unique()}_hits"
    PendingWrites(buffered=False).inc(Counter(name, "hits", registry=registry), 4.0)
    assert registry.get_sample_value(f"{name}_total") == 4.0


class Tally:
    """A `VectorSink` that keeps what it was given."""

    def __init__(self) -> None:
        self.added: list[list[float]] = []

    def add(self, counts: np.ndarray) -> None:
        self.added.append(counts.tolist())


def test_buffered_vectors_add_up_until_the_flush() -> None:
    """Vectors of counts are summed in memory and added once at the flush; the caller's array, reused as a drift
    report's is not, must not leak into the pending sum."""
    tally, writes = Tally(), PendingWrites(buffered=True)
    amounts = np.array([1.0, 0.0, 3.0])
    writes.inc_vector(tally, amounts)
    amounts[:] = [2.0, 0.0, 1.0]
    writes.inc_vector(tally, amounts)
    assert tally.added == []
    writes.flush()
    writes.flush()  # nothing pending: nothing added twice
    assert tally.added == [[3.0, 0.0, 4.0]]


def test_unbuffered_vectors_go_through_at_once() -> None:
    tally = Tally()
    PendingWrites(buffered=False).inc_vector(tally, np.array([1.0, 2.0]))
    assert tally.added == [[1.0, 2.0]]


def test_render_samples_round_trips_through_the_parser_with_escaped_labels() -> None:
    """A counter family of label sets rendered beforehand: values, NaN and label values with quotes, backslashes
    and newlines read back as written."""
    names = ("model", "feature", "bin")
    odd = 'a "quoted" \\ back\nslash'
    samples = [(label_set(names, ("m", odd, "-Inf")), 3.0), (label_set(names, ("m", "f", "missing")), math.nan)]
    text = render_samples("unit_bin_rows_total", "counter", "Rows per bin.", samples)
    (family,) = text_string_to_metric_families(text)
    assert family.type == "counter" and family.documentation == "Rows per bin."
    read = [(s.name, s.labels, s.value) for s in family.samples]
    assert read[0] == ("unit_bin_rows_total", {"model": "m", "feature": odd, "bin": "-Inf"}, 3.0)
    assert read[1][:2] == ("unit_bin_rows_total", {"model": "m", "feature": "f", "bin": "missing"})
    assert math.isnan(read[1][2])


def test_create_names_every_spec_metric_but_the_scrape_time_gauges() -> None:
    """The families of a fresh registry are exactly the spec's table, with its types, less the three drift gauges."""
    registry = CollectorRegistry()
    Metrics.create(registry)
    created = {family.name: family.type for family in registry.collect()}
    expected = {family_name(name, kind): kind for name, (kind, _) in SPEC.items()}
    assert created == expected
    assert not set(SCRAPE_TIME) & set(created)


def test_create_uses_the_spec_label_names() -> None:
    """Each metric takes exactly the spec's labels and exposes the spec's sample name."""
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    seen = set()
    for field in fields(Metrics):
        if field.name == "writes":  # not a metric: the buffer of their pending increments
            continue
        metric = getattr(metrics, field.name)
        family = metric.describe()[0]
        exposed = next(n for n, (kind, _) in SPEC.items() if family_name(n, kind) == family.name)
        kind, labelnames = SPEC[exposed]
        seen.add(exposed)
        if not labelnames:  # worker-wide: no labels (touching it would move the in-process service's value)
            sample = f"{exposed}_count" if kind == "histogram" else exposed
            assert registry.get_sample_value(sample) is not None
            continue
        labels = {name: unique() for name in labelnames}
        child = metric.labels(**labels)  # ValueError if the label names differ from the spec's
        if kind == "histogram":
            child.observe(0.5)
            assert registry.get_sample_value(f"{exposed}_count", labels) == 1.0
        else:
            child.inc(2) if kind == "counter" else child.set(2)
            assert registry.get_sample_value(exposed, labels) == 2.0
    assert seen == set(SPEC)


def test_gauges_combine_workers_as_the_spec_says() -> None:
    """In-flight requests are summed over live workers; the heartbeat keeps one series per worker (pid)."""
    metrics = Metrics.create(CollectorRegistry())
    assert metrics.in_flight._multiprocess_mode == "livesum"
    assert metrics.heartbeat._multiprocess_mode == "all"
    assert metrics.log_queue_rows._multiprocess_mode == "livesum"  # a dead worker's queue is gone


def test_latency_and_confidence_buckets_span_the_spec_range() -> None:
    """Request latency buckets run 0.0001 … 10 s, confidence buckets 0.1 … 1.0."""
    assert (LATENCY_BUCKETS[0], LATENCY_BUCKETS[-1]) == (0.0001, 10.0)
    assert (CONFIDENCE_BUCKETS[0], CONFIDENCE_BUCKETS[-1]) == (0.1, 1.0)
    registry = CollectorRegistry()
    metrics = Metrics.create(registry)
    model = unique()
    metrics.confidence.labels(model=model, version="1").observe(0.1)
    metrics.request_duration.labels(model=model, version="1", endpoint="/predict").observe(10.0)
    confidence = {"model": model, "version": "1", "le": "0.1"}
    assert registry.get_sample_value("classifier_prediction_confidence_bucket", confidence) == 1
    duration = {"model": model, "version": "1", "endpoint": "/predict", "le": "10.0"}
    assert registry.get_sample_value("classifier_request_duration_seconds_bucket", duration) == 1


def test_render_gauges_round_trips_through_the_parser() -> None:
    """The text parses back to the same families, values and label values, awkward characters included."""
    awkward = 'quote " backslash \\ newline \n end'
    text = render_gauges(
        [
            GaugeFamily("unit_psi", "A PSI.", ("model", "feature"), [(("m", awkward), 0.25), (("m", "plain"), 1.5)]),
            GaugeFamily("unit_rows", "Rows.", ("model",), [(("m",), 42.0)]),
        ]
    )
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert set(families) == {"unit_psi", "unit_rows"}
    assert families["unit_psi"].type == "gauge"
    assert families["unit_psi"].documentation == "A PSI."
    psi = {sample.labels["feature"]: sample.value for sample in families["unit_psi"].samples}
    assert psi == {awkward: 0.25, "plain": 1.5}
    assert [(s.labels, s.value) for s in families["unit_rows"].samples] == [({"model": "m"}, 42.0)]
    # the escaping itself: \" \\ and \n inside the quoted label value, one sample per line
    assert 'feature="quote \\" backslash \\\\ newline \\n end"' in text
    assert len([line for line in text.splitlines() if line.startswith("unit_psi{")]) == 2


def test_render_gauges_writes_nan_as_nan() -> None:
    """A NaN gauge (too few rows for a PSI) is exposed as `NaN` and parses back to NaN."""
    text = render_gauges([GaugeFamily("unit_nan", "NaN.", ("model",), [(("m",), float("nan"))])])
    assert 'unit_nan{model="m"} NaN' in text.splitlines()
    (family,) = text_string_to_metric_families(text)
    (sample,) = family.samples
    assert math.isnan(sample.value)


def test_render_gauges_of_a_family_without_samples() -> None:
    """No model served: the family is still declared (HELP and TYPE) with no sample line."""
    text = render_gauges([GaugeFamily("unit_empty", "Empty.", ("model",), [])])
    assert "# TYPE unit_empty gauge" in text
    assert not [line for line in text.splitlines() if line.startswith("unit_empty")]
