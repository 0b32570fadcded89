"""Validation measurements taken at registration: tuned thresholds, metrics, calibration."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from ..card import CalibrationMap, ModelCard
from .truth import DecisionKeys

CALIBRATION_BINS = 10
LOG_LOSS_EPS = 1e-15
# parts of the training rows a cross-fitted calibration scores, each by a model refitted without it
CALIBRATION_FOLDS = 5
CALIBRATION_SEED = 0


@dataclass(frozen=True)
class Objective:
    """What a tuned threshold maximises on validation: `f1`, `precision-at-recall=R` (the best precision among
    thresholds whose recall is at least R) or `recall-at-precision=P`. When no threshold reaches the floor, the
    one closest to it is taken."""

    metric: str = "f1"
    floor: float = 0.0

    KINDS = ("f1", "precision-at-recall", "recall-at-precision")

    @classmethod
    def parse(cls, text: str) -> Objective:
        metric, _, floor = text.strip().partition("=")
        if metric not in cls.KINDS or (metric == "f1") != (floor == ""):
            raise ValueError(f"unknown objective '{text}'; f1, precision-at-recall=R or recall-at-precision=P")
        try:
            value = float(floor) if floor else 0.0
        except ValueError:
            raise ValueError(f"objective '{text}': '{floor}' is not a number") from None
        if not 0.0 < value < 1.0 and metric != "f1":
            raise ValueError(f"objective '{text}': the floor must lie between 0 and 1")
        return cls(metric, value)

    def __str__(self) -> str:
        return self.metric if self.metric == "f1" else f"{self.metric}={self.floor:g}"

    def best(self, precision: np.ndarray, recall: np.ndarray) -> int:
        """The index of the best threshold given each threshold's precision and recall."""
        if self.metric == "f1":
            with np.errstate(divide="ignore", invalid="ignore"):
                f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
            return int(np.argmax(f1))
        floored, maximised = (recall, precision) if self.metric == "precision-at-recall" else (precision, recall)
        reaching = floored >= self.floor
        if not reaching.any():
            return int(np.argmax(floored))
        return int(np.argmax(np.where(reaching, maximised, -1.0)))


F1 = Objective()


def tune_threshold(y_true: np.ndarray, p_positive: np.ndarray, objective: Objective = F1) -> float:
    """The decision threshold on P(positive) that maximises `objective` on validation (positive iff p >= threshold).

    It lies midway between the lowest validation score decided positive and the next lower one, not on a score:
    on a score, that row's decision would flip with the last bit of its probability (a batch summed in another
    order, a pipeline evaluated as one product), and live decisions would not be validation's."""
    from sklearn.metrics import precision_recall_curve

    y = np.asarray(y_true, dtype=bool)
    if y.all() or not y.any():
        return 0.5
    precision, recall, thresholds = precision_recall_curve(y, p_positive)
    best = objective.best(precision[:-1], recall[:-1])  # the last point (recall 0) has no threshold
    below = float(thresholds[best - 1]) if best > 0 else 0.0  # thresholds ascend: the next lower score (or 0)
    return (float(thresholds[best]) + below) / 2


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray) -> float:
    """ECE: the bin-weighted gap between mean confidence and the share of right decisions."""
    bins = np.minimum((np.asarray(confidence) * CALIBRATION_BINS).astype(int), CALIBRATION_BINS - 1)
    conf_sum = np.bincount(bins, weights=confidence, minlength=CALIBRATION_BINS)
    correct_sum = np.bincount(bins, weights=np.asarray(correct, dtype=float), minlength=CALIBRATION_BINS)
    return float(np.abs(conf_sum - correct_sum).sum() / max(len(confidence), 1))


class Task(Protocol):
    """What registration measures of a task (`base.Task`, which takes its `Calibration` from here: written against
    this protocol, this module does not import it back)."""

    def score(self, X: Any) -> Any: ...

    def decision_keys(self, scores: Any) -> DecisionKeys: ...

    def row_confidence(self, scores: Any) -> np.ndarray: ...

    def validation_keys(self, y_val: Any) -> list[str]: ...

    def score_matrix(self, X: Any) -> np.ndarray: ...


@dataclass(frozen=True)
class Calibration:
    """Maps a row's confidence in the model's default decision (`Task.row_confidence`) to the probability that
    the decision is right, as validation measured it: a monotone, piecewise-linear map.

    The mean of the calibrated confidences over rows is the label-free accuracy estimate, live and on the
    prediction log alike (confidence-based performance estimation: it holds under covariate shift as long as the
    calibration does). Fitted by isotonic regression at registration; on the validation rows it gives back the
    validation accuracy.
    """

    confidence: tuple[float, ...]  # increasing
    correct: tuple[float, ...]  # non-decreasing, within [0, 1]

    def __call__(self, confidence: np.ndarray) -> np.ndarray:
        calibrated: np.ndarray = np.interp(confidence, self.confidence, self.correct)
        return calibrated

    @classmethod
    def fit(cls, confidence: np.ndarray, correct: np.ndarray) -> Calibration:
        """Isotonic regression of correctness on confidence, so that it gives back the validation accuracy on the
        validation rows; below the least confident validation row the map falls linearly to (0, 0), so that
        confidences validation never saw (noisy inputs, shifted ones) still lower the estimate."""
        from sklearn.isotonic import IsotonicRegression

        regression = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        regression.fit(np.asarray(confidence, dtype=np.float64), np.asarray(correct, dtype=np.float64))
        xs, ys = regression.X_thresholds_.tolist(), regression.y_thresholds_.tolist()
        if xs[0] > 0.0:
            xs, ys = [0.0, *xs], [0.0, *ys]
        return cls(tuple(xs), tuple(ys))

    @classmethod
    def from_card(cls, card: ModelCard) -> Calibration:
        """The model's map; a model registered before calibration existed gets its validation accuracy minus its
        mean confidence added to every confidence (the shift the estimate applied then), clipped to [0, 1]."""
        if card.calibration is not None and card.calibration.confidence:
            return cls(card.calibration.confidence, card.calibration.correct)
        validation = card.validation
        accuracy = 0.0 if math.isnan(validation.accuracy) else validation.accuracy
        mean_confidence = 0.0 if math.isnan(validation.mean_confidence) else validation.mean_confidence
        grid = np.linspace(0.0, 1.0, 101)
        return cls(tuple(grid.tolist()), tuple(np.clip(grid + accuracy - mean_confidence, 0.0, 1.0).tolist()))

    def to_card(self, rows: int, folds: int) -> CalibrationMap:
        """The map as the model card keeps it, with the rows it rests on and the folds it was cross-fitted over."""
        return CalibrationMap(self.confidence, self.correct, rows=rows, folds=folds)


def decision_correctness(task: Task, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Each row's confidence in the task's default decision (`row_confidence`, through the serving path) and
    whether that decision was right."""
    scores = task.score(X)
    decided = np.asarray(task.decision_keys(scores).tolist(), dtype=object)
    return task.row_confidence(scores), decided == np.asarray(task.validation_keys(y), dtype=object)


@dataclass(frozen=True)
class Correctness:
    """Per row, the confidence in the task's default decision and whether that decision was right."""

    confidence: np.ndarray
    correct: np.ndarray

    @classmethod
    def of(cls, task: Task, X: Any, y: Any) -> Correctness:
        return cls(*decision_correctness(task, X, y))

    def figures(self) -> dict[str, float]:
        """The validation figures of the confidence: its mean and its ECE."""
        return {
            "mean_confidence": float(self.confidence.mean()),
            "ece": expected_calibration_error(self.confidence, self.correct),
        }

    def calibration(self) -> Calibration:
        """The calibration map fitted on these rows alone."""
        return Calibration.fit(self.confidence, self.correct)


def cross_fitted_calibration(
    validation: Correctness,
    build: Callable[[Any], Task],
    refit: Callable[[Any, Any], Any],
    X_train: Any,
    y_train: Any,
    folds: int = CALIBRATION_FOLDS,
) -> Calibration:
    """The calibration map fitted on every row registration has labels for, each scored by a model that never
    saw it: the `validation` rows as the served task scored them, and each of `folds` parts of the training rows by
    the estimator `refit` on the other parts, decided as the served task decides (`build` makes a task of the same
    card around the refitted estimators).

    Validation sets are small (a fifth of a data set is often a few hundred rows), and an isotonic map fitted on
    them carries their sampling luck into every estimate: a validation set the model happened to get all right
    maps every confidence to 1. The training rows, out of fold, multiply the rows the map rests on (5 folds: the
    refitted models see 80 % of the training rows, so the map is if anything slightly pessimistic)."""
    parts, rest = [validation.confidence], [validation.correct]
    order = np.random.default_rng(CALIBRATION_SEED).permutation(row_count(X_train))
    for held_out in np.array_split(order, folds):
        kept = np.setdiff1d(order, held_out)
        refitted = build(refit(take_rows(X_train, kept), take_rows(y_train, kept)))
        fold_confidence, fold_correct = decision_correctness(
            refitted, take_rows(X_train, held_out), take_rows(y_train, held_out)
        )
        parts.append(fold_confidence)
        rest.append(fold_correct)
    return Calibration.fit(np.concatenate(parts), np.concatenate(rest))


def row_count(X: Any) -> int:
    """Rows of a matrix, DataFrame or list of rows."""
    return int(X.shape[0]) if hasattr(X, "shape") else len(X)


def take_rows(values: Any, rows: np.ndarray) -> Any:
    """`rows` of an array, a DataFrame or a Series, by position."""
    return values.iloc[rows] if hasattr(values, "iloc") else np.asarray(values)[rows]


def single_label_metrics(
    y_true: Sequence[str] | np.ndarray, y_pred: Sequence[str] | np.ndarray, proba: np.ndarray, classes: Sequence[str]
) -> dict[str, float]:
    """Accuracy, macro-F1 and log-loss of a single-label classifier (confidence: `Correctness.figures`)."""
    from sklearn.metrics import accuracy_score, f1_score

    y_true_arr = np.asarray(y_true, dtype=object)
    y_pred_arr = np.asarray(y_pred, dtype=object)
    column = {name: j for j, name in enumerate(classes)}
    # by column index: scikit-learn's log_loss assumes columns in sorted label order, and "10" sorts before "2"
    p_true = proba[np.arange(len(proba)), [column[label] for label in y_true_arr.tolist()]]
    return {
        "accuracy": float(accuracy_score(y_true_arr, y_pred_arr)),
        "macro_f1": float(f1_score(y_true_arr, y_pred_arr, average="macro", labels=list(classes), zero_division=0)),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, LOG_LOSS_EPS, 1.0)))),
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
