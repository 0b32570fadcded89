"""Validation measurements taken at registration: tuned thresholds, metrics, calibration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_recall_curve

if TYPE_CHECKING:
    from .base import Task

CALIBRATION_BINS = 10
LOG_LOSS_EPS = 1e-15


def tune_threshold(y_true: np.ndarray, p_positive: np.ndarray) -> float:
    """The decision threshold on P(positive) that maximises F1 on validation (positive iff p >= threshold)."""
    y = np.asarray(y_true, dtype=bool)
    if y.all() or not y.any():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p_positive)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    return float(thresholds[int(np.argmax(f1[:-1]))])


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """ECE of top-1 confidence: the bin-weighted gap between mean confidence and accuracy."""
    bins = np.minimum((np.asarray(confidence) * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    np.bincount(bins, minlength=CALIBRATION_BINS)
    conf_sum = np.bincount(bins, weights=confidence, minlength=CALIBRATION_BINS)
    correct_sum = np.bincount(bins, weights=np.asarray(correct, dtype=float), minlength=CALIBRATION_BINS)
    return float(np.abs(conf_sum - correct_sum).sum() / max(len(confidence), 1))


def single_label_metrics(
    y_true: Sequence[str] | np.ndarray, y_pred: Sequence[str] | np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Accuracy, macro-F1, log-loss and calibration of a single-label classifier."""
    y_true_arr = np.asarray(y_true, dtype=object)
    y_pred_arr = np.asarray(y_pred, dtype=object)
    confidence = proba.max(axis=1)
    correct = y_true_arr == np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
    column = {name: j for j, name in enumerate(classes)}
    # by column index: scikit-learn's log_loss assumes columns in sorted label order, and "10" sorts before "2"
    p_true = proba[np.arange(len(proba)), [column[label] for label in y_true_arr.tolist()]]
    return {
        "accuracy": float(accuracy_score(y_true_arr, y_pred_arr)),
        "macro_f1": float(f1_score(y_true_arr, y_pred_arr, average="macro", labels=list(classes), zero_division=0)),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, LOG_LOSS_EPS, 1.0)))),
        "mean_confidence": float(confidence.mean()),
        "ece": expected_calibration_error(confidence, correct),
    }


def feature_sensitivity(task: Task, X: Any, seed: int = 0) -> np.ndarray:
    """Per feature, the mean absolute change of the model's scores when that column is shuffled.

    A label-free, task-agnostic importance: it ranks the features that drift monitoring tracks first.
    """
    rng = np.random.default_rng(seed)
    base = task.score_matrix(X)
    n_rows, n_features = np.shape(X)
    order = rng.permutation(n_rows)
    sensitivity = np.zeros(n_features)
    for j in range(n_features):
        shuffled = X.copy()
        if hasattr(shuffled, "iloc"):  # a DataFrame
            shuffled.iloc[:, j] = X.iloc[order, j].to_numpy()
        else:
            shuffled[:, j] = X[order, j]
        sensitivity[j] = np.abs(task.score_matrix(shuffled) - base).mean()
    return sensitivity


def shares(labels: Sequence[str | None], names: Sequence[str]) -> dict[str, float]:
    """Share of each name among `labels` (None and unknown labels counted in the total only)."""
    index = {name: i for i, name in enumerate(names)}
    codes = np.fromiter((index.get(label, -1) for label in labels if label is not None), dtype=int)
    total = max(len(labels), 1)
    counts = np.bincount(codes[codes >= 0], minlength=len(names))
    return {name: float(counts[i] / total) for i, name in enumerate(names)}
