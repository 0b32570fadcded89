"""Multilabel classification: any number of labels per row, by per-label thresholds, one threshold, or top-k.

Two layouts: `joint`, one estimator that scores every label (native multi-output models return a list of
per-output probability arrays; MLP or ClassifierChain return one rows x labels matrix), and `per_label`,
one binary estimator per label.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, NotRequired, TypedDict

import numpy as np

from ..card import Decision, ModelCard
from .answers import WITH_PROBABILITIES, Doc
from .base import (
    Description,
    Observations,
    Options,
    Prediction,
    Task,
    check_probabilities,
    positive_column,
    register_task,
)
from .errors import InvalidInputError, InvalidModelError, required
from .evaluation import Objective, tune_threshold
from .linear import Probabilities
from .multiclass import top_k_indices
from .truth import DecisionKeys, GivenLabel, Truth

SCORES_SHOWN_FOR_LARGE_SETS = 10
LARGE_LABEL_SET = 100


class MultilabelTruth(Truth):
    """A multilabel model's ground truth is a set of its labels (possibly empty): `labels`.

    A key is the JSON list of the set's labels in the model's label order, so equal sets have equal keys.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        super().__init__(classes)
        self._order = {name: i for i, name in enumerate(self.classes)}

    def key(self, given: GivenLabel) -> str:
        self.only(given, "labels", "multilabel")
        labels = list(given.labels or ())
        for i, label in enumerate(labels):
            self.one_of_the_classes(label, f"labels[{i}]")
            if label in labels[:i]:
                raise InvalidInputError(f"label '{label}' is listed twice", field=f"labels[{i}]")
        return self.key_of(sorted(labels, key=self._order.__getitem__))

    @staticmethod
    def key_of(labels: Sequence[str]) -> str:
        """The key of a set of labels already in the model's label order."""
        return json.dumps(list(labels), ensure_ascii=False, separators=(",", ":"))

    def render(self, key: str) -> dict[str, Any]:
        return {"labels": json.loads(key)}

    def members(self, key: str | None) -> frozenset[str]:
        return frozenset(json.loads(key)) if key else frozenset()


def joint_scores(estimator: Any, X: Any, n_labels: int) -> np.ndarray:
    """P(label) for every label from one multi-output estimator, rows x labels."""
    proba = estimator.predict_proba(X)
    if isinstance(proba, list):
        if len(proba) != n_labels:
            raise InvalidModelError(f"multilabel model scores {len(proba)} outputs; expected {n_labels}")
        return np.column_stack([positive_column(estimator, proba, j) for j in range(n_labels)])
    matrix: np.ndarray = np.asarray(proba)
    if matrix.ndim != 2 or matrix.shape[1] != n_labels:
        raise InvalidModelError(f"multilabel model scores shape {matrix.shape}; expected (rows, {n_labels})")
    return matrix


class MultilabelAnswer(TypedDict):
    """One row's answer of a multilabel model (`/predict` adds its `id`)."""

    labels: Annotated[list[str], Doc("The decided labels, highest score first; possibly empty.")]
    scores: dict[str, float]
    probabilities: NotRequired[Annotated[dict[str, float], WITH_PROBABILITIES]]


@dataclass(frozen=True)
class MultilabelDecisions(Prediction[MultilabelAnswer]):
    labels: list[str]
    proba: np.ndarray  # rows x labels
    decided: np.ndarray  # bool, rows x labels
    with_probabilities: bool

    def __len__(self) -> int:
        return len(self.proba)

    def records(self) -> Iterator[MultilabelAnswer]:
        names = self.labels
        order = np.argsort(-self.proba, axis=1, kind="stable")
        decided_sorted = np.take_along_axis(self.decided, order, axis=1)
        large = len(names) > LARGE_LABEL_SET
        for i in range(len(self)):
            row = self.proba[i]
            ranked = order[i].tolist()
            chosen = [ranked[j] for j in np.flatnonzero(decided_sorted[i]).tolist()]
            shown = sorted(set(chosen) | set(ranked[:SCORES_SHOWN_FOR_LARGE_SETS])) if large else range(len(names))
            record: MultilabelAnswer = {
                "labels": [names[j] for j in chosen],
                "scores": {names[j]: float(row[j]) for j in shown},
            }
            if self.with_probabilities:
                record["probabilities"] = dict(zip(names, row.tolist(), strict=True))
            yield record

    @property
    def decided_labels(self) -> list[str | None]:
        rows, cols = np.nonzero(self.decided)
        return [self.labels[j] for j in cols.tolist()]

    @property
    def confidence(self) -> np.ndarray:
        chosen: np.ndarray = self.proba[self.decided]
        return chosen

    def probability_matrix(self) -> np.ndarray:
        return self.proba

    def observations(self) -> Observations:
        return Observations.flat(self.decided_labels, self.confidence, labels_per_instance=self.decided.sum(axis=1))


@register_task
class MultilabelTask(Task):
    """Decides each label independently; `top_k` returns exactly the k highest-scoring labels instead."""

    name = "multilabel"
    options = frozenset({"top_k", "threshold", "return_probabilities"})
    answer = MultilabelAnswer
    label_fields = ("labels",)
    one_label_per_row = False

    def __init__(self, estimators: Mapping[str, Any], card: ModelCard) -> None:
        super().__init__(estimators, card)
        self.layout = required(self.decision.layout, "decision.layout", self.name)
        self.thresholds = np.asarray(
            required(self.decision.thresholds, "decision.thresholds", self.name), dtype=np.float64
        )
        if len(self.thresholds) != len(self.classes):
            raise InvalidModelError("multilabel model: one threshold per label expected")
        self.estimators = _check_layout(self.layout, estimators, self.classes)
        width = len(self.features.names)
        self.probabilities = [Probabilities(e, width) for e in self.estimators] if self.layout != "joint" else []

    def score(self, X: Any) -> np.ndarray:
        if self.layout == "joint":
            return joint_scores(self.estimators[0], X, len(self.classes))
        return np.column_stack([positive_column(p.estimator, p(X)) for p in self.probabilities])

    def decision_keys(self, scores: np.ndarray) -> DecisionKeys:
        # rows decide one of few label sets: one key per distinct set, not per row
        patterns, inverse = np.unique(scores >= self.thresholds, axis=0, return_inverse=True)
        return DecisionKeys([self._set_key(pattern) for pattern in patterns], inverse.ravel())

    def row_confidence(self, scores: np.ndarray) -> np.ndarray:
        # the probability of the decided set, exactly: each label decided at its tuned threshold is right with
        # its probability, each left out with the complement (labels taken as independent)
        confidence: np.ndarray = np.where(scores >= self.thresholds, scores, 1.0 - scores).prod(axis=1)
        return confidence

    def validation_keys(self, y_val: Any) -> list[str]:
        return [self._set_key(row) for row in np.asarray(y_val, dtype=bool)]

    def _set_key(self, indicators: np.ndarray) -> str:
        """The `Truth` key of the label set a row of 0/1 indicators (in `classes` order) holds."""
        return MultilabelTruth.key_of([self.classes[j] for j in np.flatnonzero(indicators).tolist()])

    def decide(self, scores: np.ndarray, options: Options) -> MultilabelDecisions:
        if options.top_k is not None and options.threshold is not None:
            raise InvalidInputError(
                "options 'top_k' and 'threshold' exclude each other for a multilabel model; send one",
                field="options.top_k",
            )
        if options.top_k is not None:
            decided = np.zeros(scores.shape, dtype=bool)
            np.put_along_axis(decided, top_k_indices(scores, options.top_k), True, axis=1)
        else:
            threshold = self.thresholds if options.threshold is None else options.threshold
            decided = scores >= threshold
        return MultilabelDecisions(self.classes, scores, decided, options.return_probabilities)

    @classmethod
    def describe(cls, estimators: Mapping[str, Any], X_val: Any, y_val: Any, params: Mapping[str, Any]) -> Description:
        from sklearn.metrics import f1_score, log_loss

        labels = [str(label) for label in params["labels"]]
        layout = "joint" if set(estimators) == {"model"} and "model" not in labels else "per_label"
        checked = _check_layout(layout, estimators, labels)
        y = np.asarray(y_val, dtype=bool)
        if y.ndim != 2 or y.shape[1] != len(labels):
            raise InvalidModelError(f"multilabel y_val must be rows x {len(labels)} indicators, got {y.shape}")
        if layout == "joint":
            proba = joint_scores(checked[0], X_val, len(labels))
        else:
            proba = np.column_stack([positive_column(e, e.predict_proba(X_val)) for e in checked])
        objective = Objective.parse(str(params.get("optimize", "f1")))
        thresholds = [tune_threshold(y[:, j], proba[:, j], objective) for j in range(len(labels))]
        decided = proba >= np.asarray(thresholds)
        per_label_f1 = f1_score(y, decided, average=None, zero_division=0)
        clipped = np.clip(proba, 1e-15, 1 - 1e-15)
        metrics = {
            "accuracy": float((decided == y).all(axis=1).mean()),
            "macro_f1": float(np.mean(per_label_f1)),
            "log_loss": float(
                np.mean([log_loss(y[:, j], clipped[:, j], labels=[False, True]) for j in range(len(labels))])
            ),
            "per_label_f1": dict(zip(labels, map(float, per_label_f1), strict=True)),
        }
        return Description(
            classes=labels,
            decision=Decision(layout=layout, thresholds=tuple(thresholds), objective=str(objective)),
            metrics=metrics,
            prediction_distribution=dict(zip(labels, map(float, decided.mean(axis=0)), strict=True)),
        )

    @classmethod
    def decision_summary(cls, decision: Decision, classes: Sequence[str]) -> str:
        thresholds = ", ".join(f"{c} >= {t:.4f}" for c, t in zip(classes, decision.thresholds or (), strict=True))
        return f"Decision: per-label thresholds tuned on validation for {decision.objective or 'f1'}: {thresholds}"

    @classmethod
    def label_distribution(cls, y: Any, classes: Sequence[str]) -> dict[str, float]:
        return dict(zip(classes, map(float, np.asarray(y, dtype=bool).mean(axis=0)), strict=True))

    @classmethod
    def ground_truth(cls, classes: Sequence[str], decision: Decision) -> Truth:
        return MultilabelTruth(list(classes))


def _check_layout(layout: str, estimators: Mapping[str, Any], labels: Sequence[str]) -> list[Any]:
    """The estimators in label order: one for `joint`, one per label for `per_label`."""
    if layout == "joint":
        check_probabilities(estimators["model"], "multilabel model")
        return [estimators["model"]]
    if layout != "per_label":
        raise InvalidModelError(f"multilabel layout '{layout}' is neither 'joint' nor 'per_label'")
    missing = [label for label in labels if label not in estimators]
    if missing:
        raise InvalidModelError(f"multilabel model: no estimator for label(s) {missing}")
    for label in labels:
        check_probabilities(estimators[label], f"multilabel model, label '{label}'")
    return [estimators[label] for label in labels]
