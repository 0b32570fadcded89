"""Per-model monitoring: what each request and decision adds to the metrics and to the drift window."""

from __future__ import annotations

import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..card import ModelCard, ReconstructionFit
from ..observations import Observations
from ..settings import MonitoringConfig
from .drift import LabelFolder, psi
from .inputs import BELOW_FIRST_EDGE, InputProfile, edge_labels
from .metrics import Children, GaugeFamily, Metrics, label_set, render_gauges, render_samples
from .reconstruction import Reconstruction
from .window import TOTALS, SlidingCounts

logger = logging.getLogger(__name__)

BIN_LABELS = ("model", "version", "feature", "bin")
RECONSTRUCTION_BIN_LABELS = ("model", "version", "bin")
RECONSTRUCTION_TOTALS = "reconstruction"  # the files' prefix of the reconstruction bins' counts since the start


def window_directory() -> Path:
    """Where drift windows are shared between workers: BentoML's Prometheus multiprocess folder."""
    configured = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(configured) if configured else Path(tempfile.gettempdir()) / f"classifier-windows-{os.getpid()}"


class ModelMonitor:
    """Silent-failure signals of one served model."""

    def __init__(
        self,
        name: str,
        version: str,
        card: ModelCard,
        metrics: Metrics,
        config: MonitoringConfig,
        directory: Path,
    ) -> None:
        self.name = name
        self.version = version
        self.metrics = metrics
        self.config = config
        self.inputs = InputProfile(
            card.features.names,
            card.features.categorical,
            card.reference_profile,
            tracked=card.monitored[: config.monitored_features],
            text=card.features.text,
        )
        prior = card.class_prior or dict.fromkeys(card.classes, 1.0)
        self.drift_labels = LabelFolder(prior, config.monitored_labels)
        self.level_labels: dict[str, LabelFolder] = {"": self.drift_labels}
        for depth, shares in enumerate(card.level_distribution):
            self.level_labels[str(depth)] = LabelFolder(shares, config.monitored_labels)
        self.expected_labels = self.drift_labels.fold(card.prediction_distribution)
        self._open_windows(directory)
        self._bind_series(metrics)
        self._watch_reconstruction(card.reconstruction, directory)
        self._publish_reference(card)

    def _open_windows(self, directory: Path) -> None:
        """The drift window (columns: input bins, decided-label bins, then rows seen) and the drift bins' counts
        since the start, both summed over workers: the counts are exported as counters that the recording rules sum
        over replicas. Every bin has a series from the start (0 until a row falls in it), so the rules count the
        bins a window left empty too; label sets are rendered once, here."""
        key, config = f"{self.name}-{self.version}", self.config
        self._labels_at = self.inputs.width
        self._rows_at = self._labels_at + len(self.drift_labels.names)
        slot_seconds = config.drift_window_seconds / config.drift_slots
        self.window = SlidingCounts(directory, key, self._rows_at + 1, slot_seconds, config.drift_slots)
        self.bin_totals = SlidingCounts(directory, key, self.inputs.width, math.inf, 1, kind=TOTALS)
        bins = self.inputs.bins()
        self._bin_labels = [label_set(BIN_LABELS, (self.name, self.version, f, b)) for f, b, _ in bins]
        self._reference_shares = [share for _, _, share in bins]

    def _bind_series(self, m: Metrics) -> None:
        """The metric children each request and decision adds to."""
        name, version = self.name, self.version
        self._writes = m.writes
        self._predictions = Children(m.predictions)  # labels: model, version, label, level
        self._model_children: dict[int, Any] = {}
        self._input_issues = Children(m.input_issues)  # labels: model, version, feature, kind
        self._option_requests = Children(m.option_requests)  # labels: model, version, option
        self._option_predictions = Children(m.option_predictions)  # labels: model, version, label
        self._accepted_rows = m.rows.labels(name, version, "accepted")
        self._rejected_rows = m.rows.labels(name, version, "rejected")
        self._confidence = m.confidence.labels(name, version)
        self._estimated_correct = m.estimated_correct.labels(name, version)
        self._estimated_rows = m.estimated_rows.labels(name, version)
        # the labelled-predictions series exist at 0 before the first label, so that rate() counts the first labels
        # (a counter first seen at 3 reads as no increase): classifier:realized_accuracy:rate10m
        for result in ("correct", "wrong"):
            m.labelled_predictions.labels(name, version, result)
        self._inference = m.inference_duration.labels(name, version)
        self._batch_rows = m.batch_rows.labels(name, version)

    def _watch_reconstruction(self, fitted: ReconstructionFit | None, directory: Path) -> None:
        """Multivariate drift (a model registered with training rows): each accepted row's reconstruction-error
        bin, counted since the start like the drift bins, in files of their own."""
        self.reconstruction = None if fitted is None else Reconstruction(fitted)
        if self.reconstruction is None:
            return
        columns = [self.inputs.numeric_names.index(f) for f in self.reconstruction.features]
        # every numeric feature in column order (the usual case): the batch's numeric matrix as it is
        whole = columns == list(range(len(self.inputs.numeric_names)))
        self._reconstruction_columns = None if whole else np.array(columns, dtype=np.intp)
        self.reconstruction_totals = SlidingCounts(
            directory,
            f"{self.name}-{self.version}",
            len(self.reconstruction.shares),
            math.inf,
            1,
            kind=RECONSTRUCTION_TOTALS,
        )
        labels = [BELOW_FIRST_EDGE, *edge_labels(self.reconstruction.edges.tolist())]
        model = (self.name, self.version)
        self._reconstruction_labels = [label_set(RECONSTRUCTION_BIN_LABELS, (*model, b)) for b in labels]

    def _publish_reference(self, card: ModelCard) -> None:
        """The gauges that say what the model was at registration: validation figures and prediction shares, the
        rows they rest on, the model's info and when it was trained and loaded."""
        m, name, version = self.metrics, self.name, self.version
        m.validation_accuracy.labels(name, version).set(card.validation.accuracy)
        m.validation_mean_confidence.labels(name, version).set(card.validation.mean_confidence)
        m.validation_ece.labels(name, version).set(card.validation.ece)
        validation_shares = {"": card.prediction_distribution}
        validation_shares.update((str(depth), shares) for depth, shares in enumerate(card.level_distribution))
        for level, folder in self.level_labels.items():
            if level == "" and len(self.level_labels) > 1:
                continue  # hierarchical: shares are per level
            shares = folder.fold(validation_shares[level])
            shares = shares / max(shares.sum(), 1e-12)  # share of decided labels (multilabel stores label rates)
            for label, share in zip(folder.names, shares.tolist(), strict=True):
                m.validation_prediction_share.labels(name, version, label, level).set(share)
        # The alert thresholds' 1/m term. A model registered before its card kept these counts exports none, and
        # the rules that need them yield no threshold: its drift, collapse and accuracy alerts stay silent until it is
        # registered again (docs/monitoring.md: What each alert means).
        if card.reference_rows is not None:
            m.reference_rows.labels(name, version, "training").set(float(card.reference_rows.training))
            m.reference_rows.labels(name, version, "calibration").set(float(card.reference_rows.calibration))
        self._info = m.model_info.labels(name, version, card.task)
        self._info.set(1)
        m.trained_timestamp.labels(name, version).set(card.trained_at.timestamp())
        m.loaded_timestamp.labels(name, version).set(time.time())

    def retire(self) -> None:
        """This version is no longer served here: a promotion replaced it."""
        self._info.set(0)

    def observe_accepted(self, X: Any) -> None:
        """Rows that passed validation: drift bins into the window, faults into the counters."""
        report = self.inputs.observe(X)
        self.window.add(report.bins)
        self.window.add_one(self._rows_at, report.rows)
        self._writes.inc_vector(self.bin_totals, report.bins)
        if self.reconstruction is not None:
            columns = self._reconstruction_columns
            values = report.numeric if columns is None else report.numeric[:, columns]
            self._writes.inc_vector(self.reconstruction_totals, self.reconstruction.counts(values))
        self._writes.inc(self._accepted_rows, len(X))
        if report.issues:
            self._count_issues(report.issues)

    def observe_rejected(self, rows: int, issues: Mapping[tuple[str, str], int]) -> None:
        """Rows of a rejected request, and the faults validation found in them (by feature name and kind)."""
        self._writes.inc(self._rejected_rows, rows)
        folded: dict[tuple[str, str], int] = {}
        for (feature, kind), count in issues.items():
            key = (self.inputs.fold_feature(feature), kind)
            folded[key] = folded.get(key, 0) + count
        self._count_issues(folded)

    def observe_unscored(self, X: Any) -> None:
        """Validated rows of a request the model could not score: rejected, with the faults their inputs show
        (out of range, unseen categories); not in the drift window, which holds the inputs that were answered."""
        report = self.inputs.observe(X)
        self._writes.inc(self._rejected_rows, report.rows)
        if report.issues:
            self._count_issues(report.issues)

    def observe_inference(self, seconds: float, rows: int) -> None:
        self._writes.observe(self._inference, seconds)
        self._writes.observe(self._batch_rows, rows)

    def observe_prediction(self, summary: Observations) -> None:
        """The model's default decisions of one model call: decided labels, confidence, margin, labels per row, path
        depth, the label-free estimate's terms, and the label bins of the drift window. The defaults never abstain
        nor stop a path early: abstentions are the requests' (`observe_abstentions`)."""
        drift_tally = None
        for level, labels in summary.labels.items():
            folder = self.level_labels.get(level, self.drift_labels)
            tally = folder.tally(labels)
            if labels is summary.drift_labels:
                drift_tally = tally  # flat tasks: the same labels, counted once
            for code, count in tally.items():
                self._writes.inc(self._predictions(self.name, self.version, folder.names[code], level), count)
        self._writes.observe_many(self._confidence, summary.confidence)
        if summary.expected_correct is not None and len(summary.expected_correct):
            self._writes.inc(self._estimated_correct, float(summary.expected_correct.sum()))
            self._writes.inc(self._estimated_rows, len(summary.expected_correct))
        # task-specific histograms get a series only for the tasks that have the value
        if summary.margin is not None:
            self._writes.observe_many(self._per_model(self.metrics.margin), summary.margin)
        if summary.labels_per_instance is not None:
            self._writes.observe_many(self._per_model(self.metrics.labels_per_instance), summary.labels_per_instance)
        if summary.path_depth is not None:
            self._writes.observe_many(self._per_model(self.metrics.path_depth), summary.path_depth)
        if drift_tally is None:
            drift_tally = self.drift_labels.tally(summary.drift_labels)
        for code, count in drift_tally.items():
            self.window.add_one(self._labels_at + code, count)

    def observe_options(self, options: Iterable[str], labels: Sequence[str | None]) -> None:
        """A request that set decision options, and the labels it was answered: what clients ask for and get,
        apart from the model's own signals (nothing alerts on these)."""
        for option in options:
            self._writes.inc(self._option_requests(self.name, self.version, option))
        for code, count in self.drift_labels.tally(labels).items():
            self._writes.inc(self._option_predictions(self.name, self.version, self.drift_labels.names[code]), count)

    def observe_abstentions(self, answered: Observations) -> None:
        """What a request that set `min_confidence` was answered: its rows with no label and, hierarchical, its paths
        that stopped before a leaf. What clients got, like `observe_options` (nothing alerts on these); the series
        exist from the first such request, 0 until one abstains, so the dashboard's ratios show 0, not nothing."""
        self._writes.inc(self._per_model(self.metrics.abstentions), answered.abstentions)
        if answered.path_depth is not None:  # only answers with a path (hierarchical) can stop before a leaf
            self._writes.inc(self._per_model(self.metrics.incomplete_paths), answered.incomplete_paths)

    def _per_model(self, metric: Any) -> Any:
        """The metric's child for this model, created on first use."""
        child = self._model_children.get(id(metric))
        if child is None:
            child = self._model_children[id(metric)] = metric.labels(self.name, self.version)
        return child

    def drift(self) -> tuple[int, dict[str, float], float]:
        """(rows in the window, PSI per tracked feature, PSI of decided labels); NaN below the minimum rows."""
        total = self.window.total()
        rows = int(total[self._rows_at])
        enough = rows >= self.config.drift_min_rows
        features = {}
        for f, name in enumerate(self.inputs.feature_order):
            observed = total[self.inputs.offsets[f] : self.inputs.offsets[f + 1]]
            features[name] = psi(observed, self.inputs.expected[f]) if enough else float("nan")
        labels = total[self._labels_at : self._rows_at]
        prediction = psi(labels, self.expected_labels) if enough else float("nan")
        return rows, features, prediction

    def bin_samples(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """Per drift bin, (label set, rows since the start, summed over workers) and (label set, reference share)."""
        totals = self.bin_totals.total().tolist()
        return list(zip(self._bin_labels, totals, strict=True)), list(
            zip(self._bin_labels, self._reference_shares, strict=True)
        )

    def reconstruction_samples(self) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
        """Per reconstruction-error bin, (label set, rows since the start, summed over workers) and (label set,
        calibration share); none for a model without the signal."""
        if self.reconstruction is None:
            return [], []
        totals = self.reconstruction_totals.total().tolist()
        labels = self._reconstruction_labels
        return list(zip(labels, totals, strict=True)), list(zip(labels, self.reconstruction.shares, strict=True))

    def _count_issues(self, issues: Mapping[tuple[str, str], int]) -> None:
        for (feature, kind), count in issues.items():
            self._writes.inc(self._input_issues(self.name, self.version, feature, kind), count)


@dataclass
class _DriftSamples:
    """The scrape-time drift samples of every model, gathered before they are rendered family by family."""

    feature_psi: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    prediction_psi: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    window_rows: list[tuple[tuple[str, ...], float]] = field(default_factory=list)
    counts: list[tuple[str, float]] = field(default_factory=list)
    references: list[tuple[str, float]] = field(default_factory=list)
    reconstruction_counts: list[tuple[str, float]] = field(default_factory=list)
    reconstruction_references: list[tuple[str, float]] = field(default_factory=list)

    def add(self, monitor: ModelMonitor) -> None:
        rows_per_bin, shares = monitor.bin_samples()
        self.counts.extend(rows_per_bin)
        self.references.extend(shares)
        rows_per_bin, shares = monitor.reconstruction_samples()
        self.reconstruction_counts.extend(rows_per_bin)
        self.reconstruction_references.extend(shares)
        rows, features, prediction = monitor.drift()
        model = (monitor.name, monitor.version)
        self.window_rows.append((model, float(rows)))
        self.prediction_psi.append((model, prediction))
        self.feature_psi.extend(((*model, feature), value) for feature, value in features.items())


def render_drift(monitors: Iterable[ModelMonitor]) -> str:
    """The scrape-time drift series of every model, in exposition format: this instance's PSI gauges, and the drift
    bins' and reconstruction-error bins' counts and reference shares that the recording rules turn into PSI over
    every replica."""
    samples = _DriftSamples()
    for monitor in monitors:
        samples.add(monitor)
    return _render_psi(samples) + _render_bins(samples)


def _render_psi(samples: _DriftSamples) -> str:
    """This instance's PSI gauges and window sizes."""
    return render_gauges(
        [
            GaugeFamily(
                "classifier_feature_drift_psi",
                "PSI of this instance's drift window's inputs against the training profile.",
                ("model", "version", "feature"),
                samples.feature_psi,
            ),
            GaugeFamily(
                "classifier_prediction_drift_psi",
                "PSI of this instance's drift window's decided labels against the validation prediction distribution.",
                ("model", "version"),
                samples.prediction_psi,
            ),
            GaugeFamily(
                "classifier_drift_window_rows",
                "Rows in this instance's drift window.",
                ("model", "version"),
                samples.window_rows,
            ),
        ]
    )


def _render_bins(samples: _DriftSamples) -> str:
    """The drift bins' and reconstruction-error bins' counts since the start and their reference shares."""
    return (
        render_samples(
            "classifier_drift_bin_rows_total",
            "counter",
            "Accepted rows by drift bin of each monitored feature since the start"
            " (docs/monitoring.md: Drift across replicas).",
            samples.counts,
        )
        + render_samples(
            "classifier_drift_reference_share",
            "gauge",
            "Share of the training rows in each drift bin of each monitored feature: the PSI's reference.",
            samples.references,
        )
        + render_samples(
            "classifier_reconstruction_bin_rows_total",
            "counter",
            "Accepted rows by bin of their PCA reconstruction error since the start"
            " (docs/monitoring.md: Multivariate drift).",
            samples.reconstruction_counts,
        )
        + render_samples(
            "classifier_reconstruction_reference_share",
            "gauge",
            "Share of the calibration rows in each reconstruction-error bin: the multivariate drift PSI's reference.",
            samples.reconstruction_references,
        )
    )


class Heartbeat:
    """Sets the worker's heartbeat gauge every `interval` seconds from a daemon thread."""

    def __init__(self, metrics: Metrics, interval: float) -> None:
        self._gauge = metrics.heartbeat
        self._interval = interval
        self._gauge.set(time.time())
        self._thread = threading.Thread(target=self._run, name="classifier-heartbeat", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:  # a daemon thread: it ends with the worker
            time.sleep(self._interval)
            self._gauge.set(time.time())
