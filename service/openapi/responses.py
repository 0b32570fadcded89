"""The response bodies of the API, as pydantic models: the OpenAPI document's schemas are generated from them.

The routes build their answers as plain dicts (no model instance per prediction on the hot path); these models
describe those dicts. `tests/test_openapi.py` validates real answers of every task against them, and the fuzz tests
check every response of a served instance against the document, so a change to an answer that these models do not
follow fails a test.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

TaskName = Literal["binary", "multiclass", "multilabel", "hierarchical"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(_Body):
    code: str = Field(description="The error code of CONTRACT.md's table (`invalid_input`, `unknown_model`, ...).")
    message: str = Field(description="What was expected and what arrived.")
    field: str | None = Field(None, description="Where in the request, when one field is at fault.")


class ErrorBody(_Body):
    """Every non-2xx answer: one JSON object, never a list."""

    error: ErrorDetail


# --- POST /predict ---------------------------------------------------------------------------------------------


class LabelScore(_Body):
    label: str
    score: float


class PathNode(_Body):
    level: int = Field(ge=0)
    label: str
    score: float = Field(description="Probability of this node given its parent.")
    confidence: float = Field(description="Product of the scores down to this node.")


class PathScore(_Body):
    path: list[str]
    confidence: float


class BinaryPrediction(_Body):
    id: str
    label: str = Field(description="The decided class.")
    score: float = Field(description="P(positive class).")
    threshold: float = Field(description="The threshold applied: the model's tuned one or the request's.")
    probabilities: dict[str, float] = Field(default_factory=dict, description="With `return_probabilities`.")


class MulticlassPrediction(_Body):
    id: str
    label: str | None = Field(description="`null` when abstained.")
    confidence: float = Field(description="Top-1 probability.")
    abstained: bool
    top_k: list[LabelScore] = Field(default_factory=list, description="Best first, when `top_k` was asked.")
    probabilities: dict[str, float] = Field(default_factory=dict, description="With `return_probabilities`.")


class MultilabelPrediction(_Body):
    id: str
    labels: list[str] = Field(description="The decided labels, highest score first; possibly empty.")
    scores: dict[str, float]
    probabilities: dict[str, float] = Field(default_factory=dict, description="With `return_probabilities`.")


class HierarchicalPrediction(_Body):
    id: str
    label: str | None = Field(description="The deepest decided node; `null` when even the top level is unsure.")
    path: list[PathNode]
    complete: bool = Field(description="The path reached a leaf.")
    top_k: list[PathScore] = Field(default_factory=list, description="When `top_k` was asked.")
    probabilities: list[dict[str, float]] = Field(
        default_factory=list, description="Per level of the decided path, with `return_probabilities`."
    )


class PredictResponse(_Body):
    model: str
    version: str
    task: TaskName
    request_id: str | None
    predictions: list[BinaryPrediction | MulticlassPrediction | MultilabelPrediction | HierarchicalPrediction] = Field(
        description="One per instance, in order; the fields depend on the task."
    )


# --- GET /models -------------------------------------------------------------------------------------------------


class ClassesCard(_Body):
    count: int = Field(ge=1)
    names: list[str] = Field(description="The first 100 for large sets.")


class FeaturesCard(_Body):
    count: int = Field(ge=1)
    names: list[str]
    categorical: list[str]
    text: list[str]
    allows_missing: bool


class ModelCard(_Body):
    name: str
    version: str
    task: TaskName
    classes: ClassesCard
    features: FeaturesCard
    ignored_columns: list[str] = Field(
        description="Columns of the training file that the model does not use (its time column, ids, dropped "
        "columns): an object row may hold them besides the features, and they are ignored. Any other key is a 400."
    )
    trained_at: str = Field(description="ISO 8601.")
    sklearn_version: str
    metrics: dict[str, Any] = Field(description="Validation metrics at registration (accuracy, ece, ...).")
    decision: dict[str, Any] = Field(description="Decision defaults: thresholds, positive class, hierarchy.")
    options: list[str] = Field(description="The `options` the task takes.")
    monitored_features: list[str]
    shadow: str | None = Field(description="The version scoring the same rows off the response path, if any.")


class ModelList(_Body):
    models: list[ModelCard]


# --- POST /feedback, GET /predictions/{id}, GET /models/{name}/performance ------------------------------------


class FeedbackItemError(_Body):
    index: int = Field(ge=0)
    code: Literal["unknown_prediction", "invalid_input"]
    message: str
    field: str


class FeedbackResponse(_Body):
    accepted: int = Field(ge=0, description="Items stored durably.")
    errors: list[FeedbackItemError]


class LoggedOutcome(_Body):
    outcome: str
    value: float
    received_at: str


class LoggedPrediction(_Body):
    id: str
    model: str
    version: str
    task: TaskName | None
    predicted_at: str
    request_id: str | None
    options: dict[str, Any]
    inputs: dict[str, Any] | None = Field(description="The row as the model received it; `null` if not logged.")
    prediction: dict[str, Any] = Field(description="The answer as `/predict` gave it.")
    label: dict[str, Any] | None = Field(description="The current label, in `/feedback`'s form.")
    labelled_at: str | None
    label_history: list[dict[str, Any]]
    outcomes: list[LoggedOutcome]


class ClassFigures(_Body):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    class_: str = Field(alias="class")
    support: int
    predicted: int
    precision: float | None
    recall: float | None
    f1: float | None


class OutcomeFigures(_Body):
    outcome: str
    count: int
    value: float
    take_rate: float | None


class VersionFigures(_Body):
    version: str
    predictions: int
    labelled: int
    accuracy: float | None
    f1: dict[str, float | None]
    level_accuracy: list[float | None]
    estimated_accuracy: float | None
    classes: list[ClassFigures]
    outcomes: list[OutcomeFigures]
    withheld: str | None = Field(
        description="Why figures are null or empty though predictions were labelled (or outcomes reported): "
        "fewer than `CLF_PERFORMANCE_MIN_PREDICTIONS` in the range; `null` when nothing is withheld."
    )


class PerformanceResponse(_Body):
    model: str
    since: str
    until: str
    versions: list[VersionFigures]


# --- admin -------------------------------------------------------------------------------------------------------


class PromoteResponse(_Body):
    model: str
    version: str
    previous: str | None
    workers_follow_within_seconds: float


class ShadowResponse(_Body):
    model: str
    version: str = Field(description="The served version.")
    shadow: str | None
