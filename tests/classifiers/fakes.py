"""Fitted scikit-learn-compatible fakes whose probabilities are read from the input itself.

Tests put the exact probabilities they want into `X` and hand-compute the decision the task must take. They take
rows of any width, so they claim no `n_features_in_`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from service.card import METADATA_SCHEMA, Decision, ModelCard
from service.classifiers import Options, Prediction, Task


class FixedProba(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """`predict_proba(X)` is `X[:, offset : offset + n_classes]`, columns in `classes_` order.

    `classes` fixes `classes_` (and so the column order); without it `fit` takes `np.unique(y)`.
    """

    def __init__(self, classes: Sequence[Any] | None = None, offset: int = 0) -> None:
        self.classes = classes
        self.offset = offset

    def fit(self, X: Any, y: Any) -> FixedProba:
        self.classes_ = np.asarray(self.classes if self.classes is not None else np.unique(np.asarray(y)))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        matrix = np.asarray(X, dtype=np.float64)
        return matrix[:, self.offset : self.offset + len(self.classes_)]

    def predict(self, X: Any) -> np.ndarray:
        return np.asarray(self.classes_[self.predict_proba(X).argmax(axis=1)])


class CountingProba(FixedProba):
    """A `FixedProba` that records the number of rows of every `predict_proba` call in `calls_`."""

    def fit(self, X: Any, y: Any) -> CountingProba:
        super().fit(X, y)
        self.calls_: list[int] = []
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        self.calls_.append(len(X))
        return super().predict_proba(X)


class OddRowsRoundDown(FixedProba):
    """A `FixedProba` one ulp lower on calls with an odd number of rows: a matrix product may round a row differently
    when the call's other rows differ (BLAS blocks them differently); this makes that happen on cue."""

    def predict_proba(self, X: Any) -> np.ndarray:
        proba = super().predict_proba(X)
        return np.nextafter(proba, 0.0) if len(X) % 2 else proba


class OneColumnBinary(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A binary estimator with `classes_ == [0, 1]` whose P(1) is column `column` of `X`."""

    def __init__(self, column: int = 0) -> None:
        self.column = column

    def fit(self, X: Any, y: Any) -> OneColumnBinary:
        self.classes_ = np.array([0, 1])
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self)
        p = np.asarray(X, dtype=np.float64)[:, self.column]
        return np.column_stack([1.0 - p, p])


class FixedMultiOutput(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """A multi-output estimator in scikit-learn's form: `classes_` is one `[0, 1]` array per output and
    `predict_proba` a list of (rows, 2) arrays whose P(1) for output j is column `offset + j` of `X`."""

    def __init__(self, n_outputs: int = 2, offset: int = 0) -> None:
        self.n_outputs = n_outputs
        self.offset = offset

    def fit(self, X: Any, y: Any) -> FixedMultiOutput:
        self.classes_ = [np.array([0, 1]) for _ in range(self.n_outputs)]
        return self

    def predict_proba(self, X: Any) -> list[np.ndarray]:
        check_is_fitted(self)
        matrix = np.asarray(X, dtype=np.float64)
        return [
            np.column_stack([1.0 - matrix[:, self.offset + j], matrix[:, self.offset + j]])
            for j in range(self.n_outputs)
        ]


class RecordingFit(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Remembers what it was fitted on (`X_`, `y_`); for checking which rows a trainer hands each node."""

    def fit(self, X: Any, y: Any) -> RecordingFit:
        self.X_ = np.asarray(X)
        self.y_ = [str(v) for v in y]
        self.classes_ = np.unique(np.asarray(self.y_))
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        return np.full((len(X), len(self.classes_)), 1.0 / len(self.classes_))


_DUMMY_X = np.zeros((1, 1))


def fixed_proba(classes: Sequence[Any], offset: int = 0) -> FixedProba:
    """A fitted `FixedProba` with `classes_ == classes`."""
    return FixedProba(classes=list(classes), offset=offset).fit(_DUMMY_X, [classes[0]])


def counting_proba(classes: Sequence[Any], offset: int = 0) -> CountingProba:
    """A fitted `CountingProba` with `classes_ == classes`."""
    return CountingProba(classes=list(classes), offset=offset).fit(_DUMMY_X, [classes[0]])


def odd_rows_round_down(classes: Sequence[Any], offset: int = 0) -> OddRowsRoundDown:
    """A fitted `OddRowsRoundDown` with `classes_ == classes`."""
    return OddRowsRoundDown(classes=list(classes), offset=offset).fit(_DUMMY_X, [classes[0]])


def one_column_binary(column: int) -> OneColumnBinary:
    """A fitted `OneColumnBinary` reading P(1) from `column`."""
    return OneColumnBinary(column).fit(_DUMMY_X, [0])


def multi_output(n_outputs: int, offset: int = 0) -> FixedMultiOutput:
    """A fitted `FixedMultiOutput` with `n_outputs` outputs."""
    return FixedMultiOutput(n_outputs, offset).fit(_DUMMY_X, np.zeros((1, n_outputs)))


def features(n: int, prefix: str = "f") -> dict[str, Any]:
    """Feature metadata for `n` numeric features named `f0`, `f1`, ..."""
    return {"names": [f"{prefix}{i}" for i in range(n)]}


def predict(task: Task, X: Any, options: Options) -> Prediction:
    """Score and decide one request's rows, as the service does (options checked first)."""
    task.check_options(options)
    return task.decide(task.score(X), options)


def card_of(metadata: Mapping[str, Any]) -> ModelCard:
    """The card of a task's metadata (`classes`, `features`, and `decision`, as stored or a `Decision`), the fields
    a task does not read filled in: what a stored model would hold."""
    decision = metadata.get("decision", {})
    names = metadata["features"]["names"]
    categorical = set(metadata["features"].get("categorical", ()))
    text = set(metadata["features"].get("text", ()))
    numeric = {"kind": "numeric", "edges": [], "proportions": [1.0], "min": None, "max": None, "missing_rate": 0.0}
    profile = {
        name: {"kind": "text", "missing_rate": 0.0}
        if name in text
        else {"kind": "categorical", "categories": {}, "missing_rate": 0.0}
        if name in categorical
        else numeric
        for name in names
    }
    stored = {
        "schema": METADATA_SCHEMA,
        "task": "test",
        "estimators": {},
        "metrics": {},
        "prediction_distribution": {},
        "reference_profile": profile,
        "trained_at": "2026-01-01T00:00:00+00:00",
        "sklearn_version": "test",
        **metadata,
        "classes": [str(c) for c in metadata["classes"]],
        "decision": decision.to_metadata() if isinstance(decision, Decision) else decision,
    }
    return ModelCard.parse(stored)


def binary_rows(p_positive: Sequence[float], positive_column: int = 1) -> np.ndarray:
    """Rows `[1 - p, p]` (or `[p, 1 - p]` when the positive class is column 0) for a binary `FixedProba`."""
    p = np.asarray(p_positive, dtype=np.float64)
    return np.column_stack([1.0 - p, p] if positive_column == 1 else [p, 1.0 - p])
