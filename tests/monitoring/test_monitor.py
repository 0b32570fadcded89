"""A `ModelMonitor` built from the card of a model registered through the project's own store."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import uuid4

import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from service.card import ModelCard
from service.monitoring.metrics import Metrics
from service.monitoring.monitor import RECONSTRUCTION_TOTALS, ModelMonitor, render_drift
from service.monitoring.reconstruction import Reconstruction, fit_reconstruction
from service.monitoring.window import TOTALS, SlidingCounts, remove_windows, window_owners
from service.observations import Observations
from service.settings import MonitoringConfig
from service.store import load_model, register_model

TRAINED_AT = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
TRAINED_AT_UNIX = 1_704_164_645.0  # 2024-01-01T00:00Z is 1704067200, + 1 d 3 h 4 min 5 s
MIN_ROWS = 50
TRACKED = 5


@dataclass(frozen=True)
class Registered:
    """The registered model's name, version and card, and its training rows."""

    name: str
    version: str
    card: ModelCard
    X_train: np.ndarray
    feature_names: list[str]


@pytest.fixture(scope="module")
def registered() -> Registered:
    """A scaled LogisticRegression on breast cancer, registered under a name unique to this module."""
    data = load_breast_cancer()
    y = data.target_names[data.target]
    X_train, X_val, y_train, y_val = data.data[:400], data.data[400:], y[:400], y[400:]
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000)).fit(X_train, y_train)
    name = f"unit-{uuid4().hex[:8]}"
    tag = register_model(
        name,
        "binary",
        model,
        X_val,
        y_val,
        X_train=X_train,
        y_train=y_train,
        feature_names=list(data.feature_names),
        trained_at=TRAINED_AT,
        positive_class="malignant",
    )
    loaded = load_model(tag)
    return Registered(loaded.name, loaded.version, loaded.card, X_train, list(data.feature_names))


@dataclass(frozen=True)
class Built:
    monitor: ModelMonitor
    registry: CollectorRegistry
    name: str
    version: str


def build(registered: Registered, tmp_path: Path, **config: Any) -> Built:
    """A monitor in a fresh registry, under a model label unique to the test, with its window in `tmp_path`."""
    registry = CollectorRegistry()
    name = f"unit-{uuid4().hex[:8]}"
    settings = {"monitored_features": TRACKED, "drift_min_rows": MIN_ROWS, **config}
    monitor = ModelMonitor(
        name, registered.version, registered.card, Metrics.create(registry), MonitoringConfig(**settings), tmp_path
    )
    return Built(monitor, registry, name, registered.version)


@pytest.fixture
def built(registered: Registered, tmp_path: Path) -> Built:
    return build(registered, tmp_path)


def value(built: Built, name: str, **labels: str) -> float | None:
    """A sample of the built monitor's model and version."""
    return built.registry.get_sample_value(name, {"model": built.name, "version": built.version, **labels})


def test_construction_sets_the_model_gauges(registered: Registered, built: Built) -> None:
    """Validation metrics, model info (=1 with version and task) and the training time, from the card."""
    figures = registered.card.validation.figures
    assert value(built, "classifier_validation_accuracy") == figures["accuracy"]
    assert value(built, "classifier_validation_mean_confidence") == figures["mean_confidence"]
    assert value(built, "classifier_validation_ece") == figures["ece"]
    assert value(built, "classifier_model_info", task="binary") == 1.0
    assert value(built, "classifier_model_trained_timestamp_seconds") == TRAINED_AT_UNIX
    loaded = value(built, "classifier_model_loaded_timestamp_seconds")
    assert loaded is not None and loaded > TRAINED_AT_UNIX


def test_construction_sets_the_reference_rows_and_the_labelled_series(registered: Registered, tmp_path: Path) -> None:
    """The rows behind the references (the thresholds' 1/m; none for a model registered before they were kept), and
    the labelled-predictions series at 0, before any label."""
    built = build(registered, tmp_path)
    assert value(built, "classifier_reference_rows", sample="training") == 400  # the module's X_train
    assert value(built, "classifier_reference_rows", sample="calibration") == 169  # its X_val
    assert value(built, "classifier_labelled_predictions_total", result="wrong") == 0  # exists before any label
    older = replace(registered.card, reference_rows=None)
    built = build(replace(registered, card=older), tmp_path)
    assert value(built, "classifier_reference_rows", sample="training") is None


def test_construction_sets_the_validation_prediction_shares(registered: Registered, tmp_path: Path) -> None:
    """One share per class (flat task: level ""), folded into `other` beyond monitored_labels."""
    shares = registered.card.prediction_distribution
    full = build(registered, tmp_path / "full")
    for label in ("benign", "malignant"):
        assert value(full, "classifier_validation_prediction_share", label=label, level="") == pytest.approx(
            shares[label]
        )
    top = max(shares, key=lambda label: shares[label])
    folded = build(registered, tmp_path / "folded", monitored_labels=1)
    assert value(folded, "classifier_validation_prediction_share", label=top, level="") == pytest.approx(shares[top])
    rest = sum(share for label, share in shares.items() if label != top)
    assert value(folded, "classifier_validation_prediction_share", label="other", level="") == pytest.approx(rest)


def test_tracked_features_follow_the_sensitivity_ranking(registered: Registered, built: Built) -> None:
    """The monitored features are the registration's ranking cut at monitored_features."""
    assert built.monitor.inputs.tracked == list(registered.card.monitored_features[:TRACKED])
    assert built.monitor.inputs.feature_order == built.monitor.inputs.tracked  # all numeric


def test_observe_accepted_counts_rows_and_fills_the_window(registered: Registered, built: Built) -> None:
    """Accepted rows add to rows_total{outcome=accepted} and to the window's row count."""
    built.monitor.observe_accepted(registered.X_train[:7])
    built.monitor.observe_accepted(registered.X_train[7:10])
    assert value(built, "classifier_rows_total", outcome="accepted") == 10.0
    assert (
        value(built, "classifier_rows_total", outcome="rejected") == 0.0
    )  # exported from the start, so a rate over it is 0, not absent
    assert built.monitor.drift()[0] == 10


def test_observe_accepted_counts_out_of_range_faults(registered: Registered, built: Built) -> None:
    """A tracked feature above its training max counts under its name; an untracked one under `other`."""
    tracked = built.monitor.inputs.tracked[0]
    untracked = next(n for n in registered.feature_names if n not in built.monitor.inputs.tracked)
    X = registered.X_train[:4].copy()
    X[:2, registered.feature_names.index(tracked)] = 1e9
    X[:3, registered.feature_names.index(untracked)] = -1e9
    built.monitor.observe_accepted(X)
    assert value(built, "classifier_input_issues_total", feature=tracked, kind="out_of_range") == 2.0
    assert value(built, "classifier_input_issues_total", feature="other", kind="out_of_range") == 3.0


def test_observe_rejected_counts_rows_and_folds_issues(registered: Registered, built: Built) -> None:
    """Rejected rows count with outcome=rejected (not in the window); faults of untracked features become `other`."""
    tracked = built.monitor.inputs.tracked
    untracked = [n for n in registered.feature_names if n not in tracked]
    built.monitor.observe_rejected(
        3,
        {
            (tracked[0], "missing"): 2,
            (untracked[0], "non_finite"): 4,
            (tracked[1], "non_finite"): 1,
        },
    )
    assert value(built, "classifier_rows_total", outcome="rejected") == 3.0
    assert value(built, "classifier_rows_total", outcome="accepted") == 0.0  # created with the monitor
    assert value(built, "classifier_input_issues_total", feature=tracked[0], kind="missing") == 2.0
    assert value(built, "classifier_input_issues_total", feature=tracked[1], kind="non_finite") == 1.0
    assert value(built, "classifier_input_issues_total", feature="other", kind="non_finite") == 4.0
    assert value(built, "classifier_input_issues_total", feature=untracked[0], kind="non_finite") is None
    assert built.monitor.drift()[0] == 0


def test_observe_unscored_counts_rejected_rows_with_their_faults_outside_the_window(
    registered: Registered, built: Built
) -> None:
    """Validated rows the model could not score: rejected, with the faults the profile finds in them (here a tracked
    feature far above its training max), and not in the drift window."""
    tracked = built.monitor.inputs.tracked[0]
    X = registered.X_train[:4].copy()
    X[:3, registered.feature_names.index(tracked)] = 1e308
    built.monitor.observe_unscored(X)
    assert value(built, "classifier_rows_total", outcome="rejected") == 4.0
    assert value(built, "classifier_rows_total", outcome="accepted") == 0.0
    assert value(built, "classifier_input_issues_total", feature=tracked, kind="out_of_range") == 3.0
    assert built.monitor.drift()[0] == 0


def test_observe_rejected_sums_the_faults_folded_into_other(registered: Registered, built: Built) -> None:
    """Two untracked features with faults of one kind: `other` gets the sum of both counts.

    BUG (service/monitoring/monitor.py:141, `observe_rejected`): the dict comprehension
    `{(self.inputs.fold_feature(f), kind): n for (f, kind), n in issues.items()}` maps both features to the key
    ("other", kind), so the later count overwrites the earlier one instead of adding to it (4 instead of 5).
    """
    tracked = built.monitor.inputs.tracked
    untracked = [n for n in registered.feature_names if n not in tracked]
    built.monitor.observe_rejected(
        2, {(untracked[0], "non_finite"): 1, (untracked[1], "non_finite"): 4, ("no-such-feature", "missing"): 1}
    )
    assert value(built, "classifier_input_issues_total", feature="other", kind="non_finite") == 5.0
    assert value(built, "classifier_input_issues_total", feature="other", kind="missing") == 1.0


def test_observe_prediction_counts_labels_confidence_and_margin(registered: Registered, tmp_path: Path) -> None:
    """Decided labels per (folded) label, confidence and margin histograms; None is no decision, and no abstention:
    the model's defaults never abstain, so abstentions are counted from what requests were answered."""
    shares = registered.card.prediction_distribution
    top = max(shares, key=lambda label: shares[label])
    rest = next(label for label in shares if label != top)
    built = build(registered, tmp_path, monitored_labels=1)
    decided = [top, rest, top, None, top]
    built.monitor.observe_prediction(
        Observations(
            labels={"": decided},
            drift_labels=decided,
            confidence=np.array([0.95, 0.6, 0.99, 0.5, 0.8]),
            margin=np.array([0.9, 0.2, 0.98, 0.0, 0.6]),
            abstentions=1,
            expected_correct=np.array([1.0, 0.5, 1.0, 0.25, 0.75]),
        )
    )
    assert value(built, "classifier_estimated_correct_total") == pytest.approx(3.5)
    assert value(built, "classifier_estimated_rows_total") == 5.0
    assert value(built, "classifier_predictions_total", label=top, level="") == 3.0
    assert value(built, "classifier_predictions_total", label="other", level="") == 1.0
    assert value(built, "classifier_predictions_total", label=rest, level="") is None
    assert value(built, "classifier_prediction_confidence_count") == 5.0
    assert value(built, "classifier_prediction_confidence_sum") == pytest.approx(3.84)
    assert value(built, "classifier_prediction_confidence_bucket", le="0.5") == 1.0
    assert value(built, "classifier_prediction_confidence_bucket", le="0.8") == 3.0  # 0.5, 0.6, 0.8
    assert value(built, "classifier_prediction_margin_count") == 5.0
    assert value(built, "classifier_prediction_margin_sum") == pytest.approx(2.68)
    assert value(built, "classifier_abstentions_total") is None
    assert value(built, "classifier_labels_per_instance_count") is None  # no series for a task without the value
    assert value(built, "classifier_option_requests_total", option="threshold") is None
    assert value(built, "classifier_incomplete_paths_total") is None


def test_observe_prediction_without_folding_and_optional_fields(registered: Registered, built: Built) -> None:
    """Enough label slots: every class by name; per-instance counts and path depths when given."""
    built.monitor.observe_prediction(
        Observations(
            labels={"": ["malignant", "benign", "benign"]},
            drift_labels=["malignant", "benign", "benign"],
            confidence=np.array([0.7, 0.8, 0.9]),
            labels_per_instance=np.array([0, 1, 3]),
            path_depth=np.array([1, 2, 2]),
            incomplete_paths=2,
        )
    )
    assert value(built, "classifier_predictions_total", label="benign", level="") == 2.0
    assert value(built, "classifier_predictions_total", label="malignant", level="") == 1.0
    assert value(built, "classifier_predictions_total", label="other", level="") is None
    assert value(built, "classifier_prediction_margin_count") is None  # no series for a task without the value
    assert value(built, "classifier_labels_per_instance_count") == 3.0
    assert value(built, "classifier_labels_per_instance_sum") == 4.0
    assert value(built, "classifier_labels_per_instance_bucket", le="0.0") == 1.0
    assert value(built, "classifier_path_depth_sum") == 5.0
    assert value(built, "classifier_incomplete_paths_total") is None
    assert value(built, "classifier_abstentions_total") is None


def test_observe_abstentions_counts_the_answers_without_a_label_or_a_full_path(built: Built) -> None:
    """A request's answers: rows with no label, and paths stopped before a leaf where answers have paths; series
    at 0 from the first such request, so that a ratio over them is 0, not absent."""
    built.monitor.observe_abstentions(
        Observations(labels={"": ["benign"]}, drift_labels=["benign"], confidence=np.array([0.9]))
    )
    assert value(built, "classifier_abstentions_total") == 0.0
    assert value(built, "classifier_incomplete_paths_total") is None  # flat answers have no path

    flat = ["benign", None, None]
    built.monitor.observe_abstentions(
        Observations(labels={"": flat}, drift_labels=flat, confidence=np.array([0.9, 0.4, 0.3]), abstentions=2)
    )
    assert value(built, "classifier_abstentions_total") == 2.0

    paths = {"0": ["round", "round", None], "1": ["0", None, None]}
    built.monitor.observe_abstentions(
        Observations(
            labels=paths,
            drift_labels=["0", None, None],
            confidence=np.array([0.9, 0.6, 0.0]),
            abstentions=1,
            path_depth=np.array([2, 1, 0]),
            incomplete_paths=2,
        )
    )
    assert value(built, "classifier_abstentions_total") == 3.0
    assert value(built, "classifier_incomplete_paths_total") == 2.0
    assert value(built, "classifier_path_depth_count") is None  # the model's own signal, not the answers'
    assert value(built, "classifier_predictions_total", label="benign", level="") is None


def test_drift_is_nan_below_the_minimum_rows(registered: Registered, built: Built) -> None:
    """MIN_ROWS - 1 rows: every PSI NaN; one more row: all finite."""
    built.monitor.observe_accepted(registered.X_train[: MIN_ROWS - 1])
    rows, features, prediction = built.monitor.drift()
    assert rows == MIN_ROWS - 1
    assert set(features) == set(built.monitor.inputs.tracked)
    assert all(math.isnan(v) for v in features.values()) and math.isnan(prediction)

    built.monitor.observe_accepted(registered.X_train[MIN_ROWS - 1 : MIN_ROWS])
    built.monitor.observe_prediction(
        Observations(labels={"": ["benign"] * 5}, drift_labels=["benign"] * 5, confidence=np.full(5, 0.9))
    )
    rows, features, prediction = built.monitor.drift()
    assert rows == MIN_ROWS
    assert all(math.isfinite(v) for v in features.values()) and math.isfinite(prediction)


def observe_in_calls(monitor: ModelMonitor, X: np.ndarray, rows_per_call: int = 50) -> None:
    """Rows as model calls of a few requests see them: in chunks, each small enough to be binned whole."""
    for start in range(0, len(X), rows_per_call):
        monitor.observe_accepted(X[start : start + rows_per_call])


def test_replaying_training_rows_shows_no_feature_drift(registered: Registered, built: Built) -> None:
    """The reference rows themselves: every tracked feature's PSI stays small."""
    observe_in_calls(built.monitor, registered.X_train)
    rows, features, _ = built.monitor.drift()
    assert rows == len(registered.X_train)
    assert max(features.values()) < 0.1, features


def test_shifting_one_feature_drifts_only_that_feature(registered: Registered, built: Built) -> None:
    """+5 standard deviations on one tracked feature: its PSI > 0.25, the others stay small."""
    shifted = built.monitor.inputs.tracked[1]
    column = registered.feature_names.index(shifted)
    X = registered.X_train.copy()
    X[:, column] += 5 * X[:, column].std()
    observe_in_calls(built.monitor, X)
    _, features, _ = built.monitor.drift()
    assert features[shifted] > 0.25
    assert max(v for name, v in features.items() if name != shifted) < 0.1, features


def test_a_shifted_sample_drifts_alike_in_one_request_or_row_by_row(registered: Registered, tmp_path: Path) -> None:
    """1,000 rows with the first tracked feature x1.5, as 1,000 one-row calls or one 1,000-row call: the window
    counts 1,000 rows both ways, and the PSIs are the same."""
    X = registered.X_train[np.arange(1000) % len(registered.X_train)].copy()
    row_by_row = build(registered, tmp_path / "rows")
    shifted = row_by_row.monitor.inputs.tracked[0]
    X[:, registered.feature_names.index(shifted)] *= 1.5
    one_call = build(registered, tmp_path / "call")
    for row in X:
        row_by_row.monitor.observe_accepted(row[None, :])
    one_call.monitor.observe_accepted(X)
    rows_a, psi_a, _ = row_by_row.monitor.drift()
    rows_b, psi_b, _ = one_call.monitor.drift()
    assert rows_a == rows_b == 1000
    assert psi_a[shifted] > 0.25 and psi_b[shifted] > 0.25
    assert psi_b == pytest.approx(psi_a, rel=1e-12)


def test_one_label_only_gives_a_large_prediction_drift(registered: Registered, built: Built) -> None:
    """Class collapse: 200 decisions of the rarer validation class against the validation shares."""
    shares = registered.card.prediction_distribution
    rare = min(shares, key=lambda label: shares[label])
    built.monitor.observe_accepted(registered.X_train[:200])
    built.monitor.observe_prediction(
        Observations(labels={"": [rare] * 200}, drift_labels=[rare] * 200, confidence=np.full(200, 0.9))
    )
    _, _, prediction = built.monitor.drift()
    assert prediction > 0.25


def test_decisions_in_validation_proportions_give_a_small_prediction_drift(
    registered: Registered, built: Built
) -> None:
    """Decisions in the validation shares (the counterpart of class collapse): prediction PSI small."""
    shares = registered.card.prediction_distribution
    labels = [label for label, share in shares.items() for _ in range(round(share * 1000))]
    built.monitor.observe_accepted(registered.X_train[:MIN_ROWS])
    built.monitor.observe_prediction(
        Observations(labels={"": labels}, drift_labels=labels, confidence=np.full(len(labels), 0.9))
    )
    _, _, prediction = built.monitor.drift()
    assert prediction < 0.01


def test_render_drift_exposes_one_feature_sample_per_tracked_feature(registered: Registered, built: Built) -> None:
    """The scrape-time text parses; one feature PSI per tracked feature, one prediction PSI, the window rows."""
    built.monitor.observe_accepted(registered.X_train[:60])
    families = {f.name: f for f in text_string_to_metric_families(render_drift([built.monitor]))}
    features = {s.labels["feature"]: s.value for s in families["classifier_feature_drift_psi"].samples}
    assert sorted(features) == sorted(built.monitor.inputs.tracked)
    model = {"model": built.name, "version": built.version}
    assert all(
        s.labels == {**model, "feature": s.labels["feature"]} for s in families["classifier_feature_drift_psi"].samples
    )
    _, expected, _ = built.monitor.drift()
    assert features == pytest.approx(expected)
    (prediction,) = families["classifier_prediction_drift_psi"].samples
    assert prediction.labels == model
    (rows,) = families["classifier_drift_window_rows"].samples
    assert (rows.labels, rows.value) == (model, 60.0)


def test_render_drift_of_no_monitor_declares_the_families() -> None:
    """No served model: the seven families are declared, with no sample."""
    families = list(text_string_to_metric_families(render_drift([])))
    assert sorted(f.name for f in families) == [
        "classifier_drift_bin_rows",
        "classifier_drift_reference_share",
        "classifier_drift_window_rows",
        "classifier_feature_drift_psi",
        "classifier_prediction_drift_psi",
        "classifier_reconstruction_bin_rows",
        "classifier_reconstruction_reference_share",
    ]
    assert all(not f.samples for f in families)


def test_drift_bin_counters_hold_the_windows_input_bins_and_the_reference_shares(
    registered: Registered, built: Built
) -> None:
    """What the recording rules sum over replicas, rendered at scrape time: every bin's accepted rows since the start
    (0 for a bin no row fell in, so the rules count it) and its training share, per tracked feature."""
    monitor = built.monitor

    def rendered(name: str) -> dict[tuple[str, str], float]:
        families = text_string_to_metric_families(render_drift([monitor]))
        samples = [s for f in families for s in f.samples if s.name == name]
        assert all(s.labels["model"] == built.name and s.labels["version"] == built.version for s in samples)
        return {(s.labels["feature"], s.labels["bin"]): s.value for s in samples}

    bins = monitor.inputs.bins()
    assert rendered("classifier_drift_bin_rows_total") == {(f, b): 0.0 for f, b, _ in bins}
    assert rendered("classifier_drift_reference_share") == {(f, b): share for f, b, share in bins}
    observe_in_calls(monitor, registered.X_train[:120], rows_per_call=7)
    observe_in_calls(monitor, registered.X_train[120:150], rows_per_call=30)
    inputs = monitor.window.total()[: monitor.inputs.width]  # the window's input columns
    totals = rendered("classifier_drift_bin_rows_total")
    assert [totals[(f, b)] for f, b, _ in bins] == inputs.tolist()
    first = monitor.inputs.feature_order[0]
    assert sum(v for (f, _), v in totals.items() if f == first) == 150


def test_drift_bin_counters_outlive_the_window_and_sum_every_workers_files(
    registered: Registered, built: Built, tmp_path: Path
) -> None:
    """Counts since the start, not over the window: rows of an hour ago stay; a second worker's (another writer of
    the same key in the same folder) add to them."""
    monitor = built.monitor
    hour_ago = time.time() - 3600
    monitor.bin_totals.add(np.ones(monitor.inputs.width), now=hour_ago)
    monitor.window.add(np.ones(monitor.inputs.width), now=hour_ago)
    other = SlidingCounts(tmp_path, f"{built.name}-{built.version}", monitor.inputs.width, math.inf, 1, "other", TOTALS)
    other.add(np.full(monitor.inputs.width, 2.0))
    assert monitor.window.total().sum() == 0
    counts, _ = monitor.bin_samples()
    assert [v for _, v in counts] == [3.0] * monitor.inputs.width
    # a dead worker's window files are cleaned up; its totals stay in the sum, as a Prometheus counter's file does
    assert "other" not in window_owners(tmp_path)
    remove_windows(tmp_path, "other")
    assert [v for _, v in monitor.bin_samples()[0]] == [3.0] * monitor.inputs.width


def test_a_version_monitored_again_continues_its_drift_bin_counters(
    registered: Registered, built: Built, tmp_path: Path
) -> None:
    """A rollback builds a second monitor for a version this worker served before: its drift-bin counters and its
    window go on from where they were (Prometheus reads a drop as a counter reset and counts the rows again)."""
    first = built.monitor
    observe_in_calls(first, registered.X_train[:60], rows_per_call=20)
    before = [v for _, v in first.bin_samples()[0]]
    window_before = first.window.total()
    again = ModelMonitor(built.name, built.version, registered.card, first.metrics, first.config, tmp_path)
    assert [v for _, v in again.bin_samples()[0]] == before
    assert again.window.total().tolist() == window_before.tolist()
    observe_in_calls(again, registered.X_train[60:80], rows_per_call=20)
    first_feature = again.inputs.feature_order[0]
    counts = dict(again.bin_samples()[0])
    assert sum(v for labels, v in counts.items() if f'feature="{first_feature}"' in labels) == 80


def rendered_reconstruction(built: Built, name: str) -> dict[str, float]:
    """The reconstruction-error bins' samples of `name` in the scrape-time text, by bin."""
    families = text_string_to_metric_families(render_drift([built.monitor]))
    samples = [s for f in families for s in f.samples if s.name == name]
    assert all(s.labels["model"] == built.name and s.labels["version"] == built.version for s in samples)
    return {s.labels["bin"]: s.value for s in samples}


def test_reconstruction_bins_count_every_accepted_row_against_the_calibration_shares(
    registered: Registered, built: Built, tmp_path: Path
) -> None:
    """Every bin is exported from the start (at 0) with its calibration share; each accepted row adds one to its
    error's bin, summed over every worker's file like the drift bins; rows with their columns permuted (every
    marginal kept) crowd into the top bins."""
    fitted = registered.card.reconstruction
    shares = rendered_reconstruction(built, "classifier_reconstruction_reference_share")
    assert fitted is not None and tuple(shares.values()) == fitted.proportions and next(iter(shares)) == "-Inf"
    assert rendered_reconstruction(built, "classifier_reconstruction_bin_rows_total") == dict.fromkeys(shares, 0.0)

    observe_in_calls(built.monitor, registered.X_train[:120], rows_per_call=7)
    counts = rendered_reconstruction(built, "classifier_reconstruction_bin_rows_total")
    assert sum(counts.values()) == 120 and list(counts) == list(shares)
    key = f"{built.name}-{built.version}"
    other = SlidingCounts(tmp_path, key, len(shares), math.inf, 1, "other", RECONSTRUCTION_TOTALS)
    other.add(np.ones(len(shares)))
    assert sum(rendered_reconstruction(built, "classifier_reconstruction_bin_rows_total").values()) == 120 + len(shares)

    fresh = build(registered, tmp_path)
    shuffled = registered.X_train[:200].copy()
    rng = np.random.default_rng(0)
    for j in range(shuffled.shape[1]):
        shuffled[:, j] = rng.permutation(shuffled[:, j])
    fresh.monitor.observe_accepted(shuffled)
    top = list(rendered_reconstruction(fresh, "classifier_reconstruction_bin_rows_total").values())[-2:]
    assert sum(top) > 0.8 * len(shuffled)


def test_a_model_without_a_reconstruction_has_no_such_series(registered: Registered, tmp_path: Path) -> None:
    """Metadata from before the signal (or a model registered without training rows): no reconstruction series,
    and accepted rows are monitored as ever."""
    card = replace(registered.card, reconstruction=None)
    built = build(Registered(registered.name, registered.version, card, registered.X_train, []), tmp_path)
    assert built.monitor.reconstruction is None
    built.monitor.observe_accepted(registered.X_train[:10])
    assert rendered_reconstruction(built, "classifier_reconstruction_bin_rows_total") == {}
    assert rendered_reconstruction(built, "classifier_reconstruction_reference_share") == {}
    assert value(built, "classifier_rows_total", outcome="accepted") == 10


def test_a_reconstruction_of_some_numeric_features_reads_those_columns(registered: Registered, tmp_path: Path) -> None:
    """A PCA of fewer features than the model's numeric ones (a model wider than the cap) gets its own columns."""
    names = registered.feature_names
    X_val = registered.X_train[300:]  # rows the PCA below is not fitted on
    fitted = fit_reconstruction(registered.X_train[:300], X_val, names, names[10:2:-1])
    assert fitted is not None and fitted.features == tuple(names[3:11])
    card = replace(registered.card, reconstruction=fitted)
    built = build(Registered(registered.name, registered.version, card, registered.X_train, names), tmp_path)
    rows = registered.X_train[300:340]
    built.monitor.observe_accepted(rows)
    counts = list(rendered_reconstruction(built, "classifier_reconstruction_bin_rows_total").values())
    assert counts == Reconstruction(fitted).counts(rows[:, 3:11]).tolist()
