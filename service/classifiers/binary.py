"""Binary classification: P(positive) against a threshold tuned on validation."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, TypedDict

import numpy as np

from ..card import Decision, ModelCard
from .answers import WITH_PROBABILITIES, Doc
from .base import Description, Observations, Options, Prediction, Task, check_probabilities, class_names, register_task
from .errors import InvalidModelError, required
from .evaluation import Objective, shares, single_label_metrics, tune_threshold
from .linear import Probabilities
from .truth import ClassFigures, DecisionKeys, SingleLabelTruth, Truth


class BinaryTruth(SingleLabelTruth):
    """A binary model's label is one of its two classes; F1 is the positive class's."""

    task = "binary"

    def __init__(self, classes: Sequence[str], positive: str) -> None:
        super().__init__(classes)
        self.positive = positive

    def f1(self, classes: Sequence[ClassFigures]) -> dict[str, float]:
        positive = [c for c in classes if c.name == self.positive]
        return {"binary": positive[0].f1 if positive else float("nan")}


class BinaryAnswer(TypedDict):
    """One row's answer of a binary model (`/predict` adds its `id`)."""

    label: Annotated[str, Doc("The decided class.")]
    score: Annotated[float, Doc("P(positive class).")]
    threshold: Annotated[float, Doc("The threshold applied: the model's tuned one or the request's.")]
    probabilities: NotRequired[Annotated[dict[str, float], WITH_PROBABILITIES]]


@dataclass(frozen=True)
class BinaryDecisions(Prediction[BinaryAnswer]):
    labels: np.ndarray  # decided class name per row (object)
    score: np.ndarray  # P(positive) per row
    threshold: float
    proba: np.ndarray  # rows x classes
    classes: list[str]
    with_probabilities: bool

    def __len__(self) -> int:
        return len(self.score)

    def records(self) -> Iterator[BinaryAnswer]:
        threshold = self.threshold
        records: list[BinaryAnswer] = [
            {"label": label, "score": score, "threshold": threshold}
            for label, score in zip(self.labels.tolist(), self.score.tolist(), strict=True)
        ]
        if self.with_probabilities:
            for record, row in zip(records, self.proba.tolist(), strict=True):
                record["probabilities"] = dict(zip(self.classes, row, strict=True))
        return iter(records)

    @property
    def decided_labels(self) -> list[str | None]:
        return list(self.labels.tolist())

    @property
    def confidence(self) -> np.ndarray:
        positive = self.score >= self.threshold
        return np.where(positive, self.score, 1.0 - self.score)

    def observations(self) -> Observations:
        return Observations.flat(self.decided_labels, self.confidence, margin=np.abs(2 * self.score - 1))

    def probability_matrix(self) -> np.ndarray:
        return self.proba


@register_task
class BinaryTask(Task):
    """`label` is the positive class when P(positive) >= threshold, the other class otherwise."""

    name = "binary"
    options = frozenset({"threshold", "return_probabilities"})
    answer = BinaryAnswer
    label_fields = ("label",)
    one_label_per_row = True

    def __init__(self, estimators: Mapping[str, Any], card: ModelCard) -> None:
        super().__init__(estimators, card)
        self.estimator = estimators["model"]
        check_probabilities(self.estimator, "binary model")
        if class_names(self.estimator) != self.classes or len(self.classes) != 2:
            raise InvalidModelError(
                f"binary model: estimator classes {class_names(self.estimator)} differ from the card's {self.classes}"
            )
        positive = required(self.decision.positive_class, "decision.positive_class", self.name)
        self.positive_index = self.classes.index(positive)
        self.threshold = required(self.decision.threshold, "decision.threshold", self.name)
        self._labels = np.array([self.classes[1 - self.positive_index], positive], dtype=object)
        self.probabilities = Probabilities(self.estimator, len(self.features.names))

    def score(self, X: Any) -> np.ndarray:
        return self.probabilities(X)

    def decision_keys(self, scores: np.ndarray) -> DecisionKeys:
        return DecisionKeys(list(self._labels), (scores[:, self.positive_index] >= self.threshold).astype(np.intp))

    def row_confidence(self, scores: np.ndarray) -> np.ndarray:
        # the probability of the class decided at the tuned threshold (not max(p, 1 - p): with a threshold of
        # 0.3, a row at p = 0.4 is decided positive, and right with probability 0.4)
        p_positive = scores[:, self.positive_index]
        confidence: np.ndarray = np.where(p_positive >= self.threshold, p_positive, 1.0 - p_positive)
        return confidence

    def decide(self, scores: np.ndarray, options: Options) -> BinaryDecisions:
        threshold = self.threshold if options.threshold is None else options.threshold
        p_positive = scores[:, self.positive_index]
        return BinaryDecisions(
            labels=self._labels[(p_positive >= threshold).astype(np.intp)],
            score=p_positive,
            threshold=threshold,
            proba=scores,
            classes=self.classes,
            with_probabilities=options.return_probabilities,
        )

    @classmethod
    def describe(cls, estimators: Mapping[str, Any], X_val: Any, y_val: Any, params: Mapping[str, Any]) -> Description:
        estimator = estimators["model"]
        check_probabilities(estimator, "binary model")
        classes = class_names(estimator)
        if len(classes) != 2:
            raise InvalidModelError(f"binary model: expected 2 classes, the estimator has {classes}")
        positive = str(params.get("positive_class", classes[1]))
        if positive not in classes:
            raise InvalidModelError(f"binary model: positive_class '{positive}' is not one of {classes}")
        proba = np.asarray(estimator.predict_proba(X_val))
        y = np.asarray([str(v) for v in y_val], dtype=object)
        pos = classes.index(positive)
        objective = Objective.parse(str(params.get("optimize", "f1")))
        threshold = tune_threshold(y == positive, proba[:, pos], objective)
        labels = np.where(proba[:, pos] >= threshold, positive, classes[1 - pos])
        metrics = single_label_metrics(y, labels, proba, classes)
        metrics["threshold"] = threshold
        return Description(
            classes=classes,
            decision=Decision(positive_class=positive, threshold=threshold, objective=str(objective)),
            metrics=metrics,
            prediction_distribution=shares(list(labels), classes),
        )

    @classmethod
    def decision_summary(cls, decision: Decision, classes: Sequence[str]) -> str:
        return (
            f"Decision: '{decision.positive_class}' when its probability >= {decision.threshold or 0.0:.4f} "
            f"(tuned on validation for {decision.objective or 'f1'})"
        )

    @classmethod
    def label_distribution(cls, y: Any, classes: Sequence[str]) -> dict[str, float]:
        return shares([str(v) for v in y], classes)

    @classmethod
    def ground_truth(cls, classes: Sequence[str], decision: Decision) -> Truth:
        return BinaryTruth(list(classes), required(decision.positive_class, "decision.positive_class", cls.name))
