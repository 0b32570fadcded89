"""The extension seam: a task kind is a `Task` subclass registered under its name.

A task turns validated rows into a `Prediction` in two steps, `score` (the model call, one per batch of
rows) and `decide` (the decision policy, per request), so rows of several requests can share one model call.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, Generic, TypeVar

import numpy as np

from ..card import Decision, ModelCard
from ..observations import Observations as Observations  # the task modules' name for it
from .errors import InvalidInputError, InvalidModelError, NonFiniteScoreError
from .evaluation import Calibration
from .features import FeatureSchema
from .truth import DecisionKeys, Truth

OPTION_NAMES = ("top_k", "threshold", "min_confidence", "return_probabilities")
NO_ROWS = np.empty(0, dtype=np.intp)


@dataclass(frozen=True)
class Options:
    """Per-request decision options; `None` means the model's default."""

    top_k: int | None = None
    threshold: float | None = None
    min_confidence: float | None = None
    return_probabilities: bool = False

    def given(self) -> set[str]:
        """Names of the options the request set."""
        given = {name for name in ("top_k", "threshold", "min_confidence") if getattr(self, name) is not None}
        if self.return_probabilities:
            given.add("return_probabilities")
        return given


DEFAULT_OPTIONS = Options()


@dataclass(frozen=True)
class Description:
    """What registration learns about a model on its validation set, stored in its card.

    `prediction_distribution` is the share of each class among validation decisions (multilabel: the rate of
    each label); `level_distribution` the same per level of a hierarchy, empty for flat tasks.
    """

    classes: list[str]
    decision: Decision
    metrics: dict[str, Any]
    prediction_distribution: dict[str, float]
    level_distribution: list[dict[str, float]] = field(default_factory=list)


@dataclass(frozen=True)
class DefaultDecisions:
    """The model's own decisions on the scores of one model call, at its defaults whatever options the requests
    sent (a client's threshold must not page anyone, nor change what labels judge): computed once per call
    (`Task.default_decisions`) and only read by monitoring, the prediction log and the shadow runner.

    Attributes:
        keys: per row, the `Truth` key of the default decision.
        expected_correct: per row, the calibrated probability that it is right (`Task.expected_correct`).
    """

    keys: DecisionKeys
    expected_correct: np.ndarray


@dataclass(frozen=True)
class Scored:
    """One request's rows of a model call: their scores, and the call's default decisions (one object for every
    request of the call) with the rows' place in them, so that no request copies its part."""

    scores: Any
    defaults: DefaultDecisions
    start: int
    stop: int

    @property
    def rows(self) -> int:
        return self.stop - self.start

    @property
    def decision_keys(self) -> DecisionKeys:
        return self.defaults.keys.rows(self.start, self.stop)

    @property
    def expected_correct(self) -> np.ndarray:
        return self.defaults.expected_correct[self.start : self.stop]


Answer = TypeVar("Answer", covariant=True)  # a task's per-row answer: the `TypedDict` its `Task.answer` names


class Prediction(ABC, Generic[Answer]):
    """Decisions for a batch of rows, columns in `classes` order."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def records(self) -> Iterator[Answer]:
        """One JSON-ready dict per row, the per-task fields of CONTRACT.md (without `id`)."""

    @property
    @abstractmethod
    def decided_labels(self) -> list[str | None]:
        """Every decided label, for monitoring: one per row (None: abstained); multilabel: one per decided label."""

    @property
    @abstractmethod
    def confidence(self) -> np.ndarray:
        """The confidences CONTRACT.md's `classifier_prediction_confidence` observes: top-1 probability per row
        (binary: of the decided class; hierarchical: path confidence); multilabel: one per decided label."""

    def observations(self) -> Observations:
        """The batch as monitoring sees it; tasks with more to say (margin, depth) override this."""
        return Observations.flat(self.decided_labels, self.confidence)

    def probability_matrix(self) -> np.ndarray | None:
        """Rows x classes (multilabel: each label's probability), columns in `classes` order, whether or not the
        records carry them; None for a task without one flat distribution (hierarchical)."""
        return None


class Task(ABC):
    """A task kind: wraps fitted estimators and applies its decision policy.

    Subclasses set `name`, `options` (the request options that apply) and the facts below, and implement `score`,
    `decide` and `describe`. Estimators are keyed: `"model"` for a single estimator, a label or
    node name otherwise. tests/test_task_kinds.py names whatever a registered task leaves out.
    """

    name: ClassVar[str]
    options: ClassVar[frozenset[str]]
    answer: ClassVar[type]  # the `TypedDict` of one row's answer (`records()`), the OpenAPI schema's source
    label_fields: ClassVar[tuple[str, ...]]  # the fields of a label in `/feedback`'s form (`Truth.render`'s keys)
    one_label_per_row: ClassVar[bool]  # a row's truth and decision are one class (a leaf), not a set of labels

    @classmethod
    @abstractmethod
    def decision_summary(cls, decision: Decision, classes: Sequence[str]) -> str:
        """The decision policy with its tuned defaults in one sentence, for the card `python -m models train`
        prints."""

    def __init__(self, estimators: Mapping[str, Any], card: ModelCard) -> None:
        self.classes: list[str] = list(card.classes)
        self.features = FeatureSchema.from_card(card.features)
        for key, estimator in estimators.items():
            check_features(estimator, self.features, f"estimator '{key}'")
        self.decision = card.decision
        self.truth = self.ground_truth(card.classes, card.decision)
        self.calibration = Calibration.from_card(card)

    def validate(self, rows: Sequence[Any], booleans_possible: bool = True) -> Any:
        """Turn request rows into the estimator's input, or raise `InvalidInputError` (see `FeatureSchema`)."""
        return self.features.validate(rows, booleans_possible)

    def check_options(self, options: Options) -> None:
        """Reject options that do not apply to this task."""
        unsupported = sorted(options.given() - self.options)
        if unsupported:
            raise InvalidInputError(
                f"option '{unsupported[0]}' does not apply to a {self.name} model; "
                f"it takes {', '.join(sorted(self.options))}",
                field=f"options.{unsupported[0]}",
            )

    @abstractmethod
    def score(self, X: Any) -> Any:
        """Run the estimators once over every row of `X`."""

    def non_finite_rows(self, scores: Any) -> np.ndarray:
        """The rows, ascending, with a NaN or infinite score anywhere in the scores of a model call (or of rows
        sliced from one): a row far outside the training range can overflow a model's arithmetic. Such rows get
        no answer (`check_finite`). Tasks whose scores are not one rows x k matrix override this."""
        # one reduction in the usual case: probabilities sum to at most rows x columns, so only a NaN or an
        # infinity makes their sum non-finite
        if math.isfinite(scores.sum()):
            return NO_ROWS
        return np.flatnonzero(~np.isfinite(scores).all(axis=1))

    def check_finite(self, scores: Any) -> None:
        """Raise `NonFiniteScoreError` naming the first row of one request's scores that is not finite."""
        rows = self.non_finite_rows(scores)
        if len(rows):
            raise NonFiniteScoreError(int(rows[0]))

    def join_inputs(self, parts: Sequence[Any]) -> Any:
        """One estimator input holding the validated rows of several requests, in order."""
        if hasattr(parts[0], "iloc"):  # DataFrames
            import pandas as pd

            return pd.concat(parts, ignore_index=True)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def slice_scores(self, scores: Any, start: int, stop: int) -> Any:
        """The scores of rows [start, stop) of a joined batch."""
        return scores[start:stop]

    def join_scores(self, parts: Sequence[Any]) -> Any:
        """The scores of several batches as one, in order, for `decision_keys` and `row_confidence`."""
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    @abstractmethod
    def decide(self, scores: Any, options: Options) -> Prediction[Any]:
        """Apply the decision policy to scores of one request's rows."""

    @abstractmethod
    def decision_keys(self, scores: Any) -> DecisionKeys:
        """Per row, the `Truth` key of the model's own decision: its defaults, whatever options a request sent.

        Realized metrics hold these against the labels, so they measure the model, not a client's options.
        """

    @abstractmethod
    def row_confidence(self, scores: Any) -> np.ndarray:
        """Per row, the model's probability that its own default decision is right, whatever options a request
        sent: binary, of the class decided at the tuned threshold; multiclass, the top-1 probability; multilabel,
        of the decided set; hierarchical, of the full greedy path. On validation its mean is
        `metrics.mean_confidence`; `expected_correct` calibrates it."""

    def expected_correct(self, scores: Any) -> np.ndarray:
        """Per row, the calibrated probability that the model's default decision is right: the label-free
        estimate's term, live (monitoring) and in the prediction log (realized figures) alike."""
        return self.calibration(self.row_confidence(scores))

    def default_decisions(self, scores: Any) -> DefaultDecisions:
        """The model's own decisions on the scores of a model call, for monitoring, the log and the shadow runner."""
        return DefaultDecisions(self.decision_keys(scores), self.expected_correct(scores))

    def observe(self, scores: Any, expected_correct: np.ndarray) -> Observations:
        """What monitoring sees of model calls (their scores, joined, and the `expected_correct` of their
        `default_decisions`): the decided labels at the model's defaults, and each row's `expected_correct`. Built for
        a group of calls, not per call: only monitoring reads the labels, and its cost per call is mostly fixed."""
        observations = self.decide(scores, DEFAULT_OPTIONS).observations()
        return replace(observations, expected_correct=expected_correct)

    def validation_keys(self, y_val: Any) -> list[str]:
        """The `Truth` key of each validation label, in registration's form (single labels by default)."""
        return [str(label) for label in y_val]

    def score_matrix(self, X: Any) -> np.ndarray:
        """The scores of `X` as a rows x k float matrix, for sensitivity analysis at registration."""
        return np.asarray(self.score(X), dtype=np.float64)

    @classmethod
    @abstractmethod
    def describe(cls, estimators: Mapping[str, Any], X_val: Any, y_val: Any, params: Mapping[str, Any]) -> Description:
        """Tune the decision defaults and measure the model on a labelled validation set."""

    @classmethod
    @abstractmethod
    def label_distribution(cls, y: Any, classes: Sequence[str]) -> dict[str, float]:
        """Share of each class among labels `y` (the training prior)."""

    @classmethod
    @abstractmethod
    def ground_truth(cls, classes: Sequence[str], decision: Decision) -> Truth:
        """The ground-truth rules of a model of this kind, from its card alone (no estimator needed): the log
        judges labels of versions no worker serves by the part of the card it keeps (`LoggedCard`)."""


_TASKS: dict[str, type[Task]] = {}
T = TypeVar("T", bound=type[Task])


def register_task(cls: T) -> T:
    """Class decorator: make a task kind available under `cls.name`. Raises on a duplicate name."""
    if cls.name in _TASKS:
        raise InvalidModelError(f"task '{cls.name}' is already registered by {_TASKS[cls.name].__qualname__}")
    _TASKS[cls.name] = cls
    return cls


def get_task(name: str) -> type[Task]:
    """The task class registered under `name`."""
    try:
        return _TASKS[name]
    except KeyError:
        raise InvalidModelError(f"unknown task '{name}'; known tasks: {', '.join(sorted(_TASKS))}") from None


def registered_tasks() -> dict[str, type[Task]]:
    """Every registered task kind by name."""
    return dict(_TASKS)


def positive_column(estimator: Any, proba: np.ndarray | list[np.ndarray], column: int | None = None) -> np.ndarray:
    """P(class 1) of a binary estimator's `predict_proba` output (or of output `column` of a multi-output one)."""
    classes = estimator.classes_ if column is None else estimator.classes_[column]
    block = proba if column is None else proba[column]
    matches = np.flatnonzero(np.asarray(classes) == 1)
    if len(matches) == 1:
        return np.asarray(block)[:, matches[0]]
    if len(classes) == 1:  # trained on one value only: the label is constant
        return np.full(len(block), float(classes[0] == 1))
    raise InvalidModelError(f"expected binary classes [0, 1], got {list(classes)}")


def check_probabilities(estimator: Any, what: str) -> None:
    """Fail at load, not at the first request, when an estimator cannot give probabilities."""
    from sklearn.utils.validation import check_is_fitted

    if not hasattr(estimator, "predict_proba"):
        raise InvalidModelError(f"{what}: {type(estimator).__name__} has no predict_proba")
    try:
        check_is_fitted(estimator)
    except Exception as exc:  # NotFittedError and TypeError for non-estimators
        raise InvalidModelError(f"{what}: {exc}") from exc


def check_features(estimator: Any, features: FeatureSchema, what: str) -> None:
    """Fail at load, not at every request, when an estimator was fitted on other features than the metadata names:
    a file swapped or edited after registration."""
    fitted = getattr(estimator, "n_features_in_", None)
    if fitted is not None and fitted != len(features.names):
        raise InvalidModelError(f"{what} was fitted on {fitted} features; the metadata names {len(features.names)}")
    fitted_names = getattr(estimator, "feature_names_in_", None)
    if features.as_frame and fitted_names is not None and list(fitted_names) != list(features.names):
        raise InvalidModelError(f"{what} was fitted on other feature names than the metadata's")


def class_names(estimator: Any) -> list[str]:
    """The estimator's `classes_` as strings, in its column order."""
    return [str(c) for c in estimator.classes_]
