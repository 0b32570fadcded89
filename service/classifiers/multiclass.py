"""Multiclass classification: top-1 label, optional top-k, abstention below `min_confidence`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, TypedDict

import numpy as np

from ..card import Decision, ModelCard
from .answers import WITH_PROBABILITIES, Doc
from .base import Description, Observations, Options, Prediction, Task, check_probabilities, class_names, register_task
from .errors import InvalidModelError
from .evaluation import shares, single_label_metrics
from .linear import Probabilities
from .truth import DecisionKeys, SingleLabelTruth, Truth


class MulticlassTruth(SingleLabelTruth):
    """A multiclass model's label is one of its classes."""

    task = "multiclass"


def top_k_indices(proba: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the k highest scores per row, best first; ties go to the lower column.

    A partition finds each row's k-th score in linear time; of the columns tied at that score, the lowest
    ones fill the remaining places, so the choice never depends on the partition's arbitrary tie order.
    """
    n_rows, n_columns = proba.shape
    k = min(k, n_columns)
    kth = -np.partition(-proba, k - 1, axis=1)[:, k - 1 : k]
    above = proba > kth
    tied = proba == kth
    places_left = k - above.sum(axis=1, keepdims=True)
    chosen = above | (tied & (np.cumsum(tied, axis=1) <= places_left))
    columns = np.nonzero(chosen)[1].reshape(n_rows, k)  # ascending column order within each row
    order = np.argsort(-np.take_along_axis(proba, columns, axis=1), axis=1, kind="stable")
    return np.take_along_axis(columns, order, axis=1)


class LabelScore(TypedDict):
    label: str
    score: float


class MulticlassAnswer(TypedDict):
    """One row's answer of a multiclass model (`/predict` adds its `id`)."""

    label: Annotated[str | None, Doc("`null` when abstained.")]
    confidence: Annotated[float, Doc("Top-1 probability.")]
    abstained: bool
    top_k: NotRequired[Annotated[list[LabelScore], Doc("Best first, when `top_k` was asked.")]]
    probabilities: NotRequired[Annotated[dict[str, float], WITH_PROBABILITIES]]


@dataclass(frozen=True)
class MulticlassDecisions(Prediction[MulticlassAnswer]):
    classes: np.ndarray  # class names (object)
    best: np.ndarray  # column of the top-1 class per row
    top1: np.ndarray  # top-1 probability per row
    abstained: np.ndarray  # bool per row
    top_k: np.ndarray | None  # rows x k columns, best first
    proba: np.ndarray  # rows x classes
    with_probabilities: bool

    def __len__(self) -> int:
        return len(self.best)

    def records(self) -> Iterator[MulticlassAnswer]:
        names = self.classes.tolist()
        records: list[MulticlassAnswer] = [
            {"label": label, "confidence": confidence, "abstained": abstained}
            for label, confidence, abstained in zip(
                self.decided_labels, self.top1.tolist(), self.abstained.tolist(), strict=True
            )
        ]
        if self.top_k is not None:
            for record, row, top in zip(records, self.proba, self.top_k.tolist(), strict=True):
                record["top_k"] = [{"label": names[j], "score": float(row[j])} for j in top]
        if self.with_probabilities:
            for record, scores in zip(records, self.proba.tolist(), strict=True):
                record["probabilities"] = dict(zip(names, scores, strict=True))
        return iter(records)

    @property
    def decided_labels(self) -> list[str | None]:
        labels = self.classes[self.best]
        labels[self.abstained] = None
        return list(labels.tolist())

    @property
    def confidence(self) -> np.ndarray:
        return self.top1

    def probability_matrix(self) -> np.ndarray:
        return self.proba

    def observations(self) -> Observations:
        one_class = self.proba.shape[1] < 2
        second = np.zeros(len(self)) if one_class else -np.partition(-self.proba, 1, axis=1)[:, 1]
        return Observations.flat(self.decided_labels, self.top1, margin=self.top1 - second)


@register_task
class MulticlassTask(Task):
    """One label per row: the most probable class, unless its probability is below `min_confidence`."""

    name = "multiclass"
    options = frozenset({"top_k", "min_confidence", "return_probabilities"})
    answer = MulticlassAnswer
    label_fields = ("label",)
    one_label_per_row = True

    def __init__(self, estimators: Mapping[str, Any], card: ModelCard) -> None:
        super().__init__(estimators, card)
        self.estimator = estimators["model"]
        check_probabilities(self.estimator, "multiclass model")
        if class_names(self.estimator) != self.classes:
            raise InvalidModelError(
                f"multiclass model: estimator classes {class_names(self.estimator)} differ from the card's "
                f"{self.classes}"
            )
        self._names = np.array(self.classes, dtype=object)
        self.probabilities = Probabilities(self.estimator, len(self.features.names))

    def score(self, X: Any) -> np.ndarray:
        return self.probabilities(X)

    def decision_keys(self, scores: np.ndarray) -> DecisionKeys:
        return DecisionKeys(list(self.classes), scores.argmax(axis=1))

    def row_confidence(self, scores: np.ndarray) -> np.ndarray:
        confidence: np.ndarray = scores.max(axis=1)
        return confidence

    def decide(self, scores: np.ndarray, options: Options) -> MulticlassDecisions:
        best = scores.argmax(axis=1)
        top1 = scores[np.arange(len(scores)), best]
        min_confidence = options.min_confidence or 0.0
        return MulticlassDecisions(
            classes=self._names,
            best=best,
            top1=top1,
            abstained=top1 < min_confidence,
            top_k=None if options.top_k is None else top_k_indices(scores, options.top_k),
            proba=scores,
            with_probabilities=options.return_probabilities,
        )

    @classmethod
    def describe(cls, estimators: Mapping[str, Any], X_val: Any, y_val: Any, params: Mapping[str, Any]) -> Description:
        estimator = estimators["model"]
        check_probabilities(estimator, "multiclass model")
        classes = class_names(estimator)
        proba = np.asarray(estimator.predict_proba(X_val))
        predicted = np.asarray(classes, dtype=object)[proba.argmax(axis=1)]
        y = [str(v) for v in y_val]
        return Description(
            classes=classes,
            decision=Decision(),
            metrics=single_label_metrics(y, predicted, proba, classes),
            prediction_distribution=shares(list(predicted), classes),
        )

    @classmethod
    def decision_summary(cls, decision: Decision, classes: Sequence[str]) -> str:
        return "Decision: the most probable class (top_k and min_confidence are the client's options)"

    @classmethod
    def label_distribution(cls, y: Any, classes: Sequence[str]) -> dict[str, float]:
        return shares([str(v) for v in y], classes)

    @classmethod
    def ground_truth(cls, classes: Sequence[str], decision: Decision) -> Truth:
        return MulticlassTruth(list(classes))
