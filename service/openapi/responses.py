"""The response bodies of the API, as pydantic models: the OpenAPI document's schemas are generated from them.

The routes build their answers as plain dicts (no model instance per prediction on the hot path); these models
describe those dicts. A prediction's fields are its task's answer type (`Task.answer`, a `TypedDict` in the task's
module, which `records()` builds): its model here is generated from it, for every registered task.
`tests/test_openapi.py` validates real answers of every task against them, and the fuzz tests check every response
of a served instance against the document, so a change to an answer that these models do not follow fails a test.
"""

from __future__ import annotations

import functools
import operator
from types import UnionType
from typing import (
    TYPE_CHECKING,
    Annotated,
    Any,
    Literal,
    NotRequired,
    Union,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from pydantic import BaseModel, ConfigDict, Field, create_model

from ..classifiers import Task, registered_tasks
from ..classifiers.answers import Doc, Minimum


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


def _schema_model(name: str, answer: type, **first: Any) -> type[BaseModel]:
    """The pydantic model of a `TypedDict` answer type (`first`: fields put before its own): `Doc` and `Minimum`
    markers become the field's description and bound, `NotRequired` keys optional ones."""
    fields: dict[str, Any] = dict(first)
    for key, hint in get_type_hints(answer, include_extras=True).items():
        # read off the hint: with postponed annotations, Python 3.11's `__required_keys__` misses `NotRequired`
        optional = get_origin(hint) is NotRequired
        hint, described = _field(get_args(hint)[0] if optional else hint)
        if optional:  # an absent key reads as empty; the document states no default, as none is sent
            described["default_factory"] = get_origin(hint) or hint
        fields[key] = (hint, Field(**described))
    return create_model(name, __base__=_Body, **fields)


def _field(hint: Any) -> tuple[Any, dict[str, Any]]:
    """A field's type with nested answer types as models, and what its markers say as `Field` arguments."""
    described: dict[str, Any] = {}
    if get_origin(hint) is Annotated:
        hint, *markers = get_args(hint)
        for marker in markers:
            if isinstance(marker, Doc):
                described["description"] = marker.text
            elif isinstance(marker, Minimum):
                described["ge"] = marker.value
    return _as_models(hint), described


def _as_models(hint: Any) -> Any:
    """`hint` with every `TypedDict` in it (`list[PathNode]`, ...) replaced by its model."""
    if is_typeddict(hint):
        return _nested_model(hint)
    args = get_args(hint)
    if not args:
        return hint
    converted = tuple(_as_models(arg) for arg in args)
    if get_origin(hint) in (Union, UnionType):
        return functools.reduce(operator.or_, converted)
    return get_origin(hint)[converted]


@functools.cache
def _nested_model(answer: type) -> type[BaseModel]:
    """One model per nested answer type, however many answers hold it (one schema in the document)."""
    return _schema_model(answer.__name__, answer)


def prediction_model(task: type[Task]) -> type[BaseModel]:
    """The schema of one row of `task`'s `/predict` answer: its answer type, after the `id` serving adds."""
    return _schema_model(f"{task.name.capitalize()}Prediction", task.answer, id=(str, ...))


PREDICTIONS = tuple(prediction_model(task) for task in registered_tasks().values())
if TYPE_CHECKING:  # the task kinds are known when they have registered, at run time
    TaskName = str
    TaskPrediction = BaseModel
else:
    TaskName = Literal[tuple(registered_tasks())]
    TaskPrediction = Union[PREDICTIONS]  # noqa: UP007 -- a union of a run-time tuple


class PredictResponse(_Body):
    model: str
    version: str
    task: TaskName
    request_id: str | None
    predictions: list[TaskPrediction] = Field(description="One per instance, in order; the fields depend on the task.")


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
