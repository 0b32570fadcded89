"""Request bodies. Strict: unknown fields and loose types (`"3"` for 3, `1` for true) are rejected."""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError, model_validator

from .classifiers import InvalidInputError, Options
from .settings import OUTCOME_NAME

# Every value a client sends that reaches the prediction log or a metric is bounded here, before the answer: a
# request that passed validation must be one the log can write (a 401-digit `top_k` once was not).
MAX_FEEDBACK_ITEMS = 1000
MAX_TOP_K = 10_000  # beyond any served model's classes: a larger k means nothing more, and is refused
MAX_OUTCOME_VALUE = 1e9  # sums of values stay finite (two of 1.7e308 made the value counter +Inf for good)
NO_CONTROL_CHARACTERS = r"^[^\x00-\x1f\x7f]*$"  # PostgreSQL's text columns refuse NUL
M = TypeVar("M", bound=BaseModel)
Name = Annotated[str, Field(min_length=1, max_length=256)]
_VALUE: dict[str, Any] = {"anyOf": [{"type": "number"}, {"type": "string"}, {"type": "null"}]}
INSTANCE_SCHEMA: dict[str, Any] = {
    "description": "A row: its feature values in the model's feature order, or an object keyed by feature name (all "
    "of them; no others, except the model card's `ignored_columns`, which are ignored). A value is a number, a string "
    "(categorical or text features) or null (missing).",
    "anyOf": [{"type": "array", "items": _VALUE}, {"type": "object", "additionalProperties": _VALUE}],
}


# examples of the OpenAPI document, for the default catalog (CONTRACT.md)
PREDICT_EXAMPLES: list[JsonValue] = [
    {"model": "digits", "instances": [[0.0] * 64], "options": {"top_k": 3}, "request_id": "req-1"},
    {"model": "digit_groups", "instances": [[1.0] * 64], "options": {"min_confidence": 0.5}},
    {"model": "digit_attributes", "instances": [[2.0] * 64], "options": {"return_probabilities": True}},
    {
        "model": "breast_cancer",
        "instances": [[14.1, 19.3, 92.0, 655.0, 0.096, 0.104, 0.089, 0.049, 0.181, 0.063, 0.405, 1.217, 2.866, 40.3,
                       0.007, 0.025, 0.032, 0.012, 0.021, 0.004, 16.3, 25.7, 107.3, 880.6, 0.132, 0.254, 0.272, 0.115,
                       0.29, 0.084]],
        "options": {"threshold": 0.4},
    },
]  # fmt: skip


class PredictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)  # capped at the model's classes (labels, leaves)
    threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    return_probabilities: bool = False

    def to_options(self) -> Options:
        return Options(self.top_k, self.threshold, self.min_confidence, self.return_probabilities)


class PredictRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, frozen=True, json_schema_extra={"examples": PREDICT_EXAMPLES}
    )

    model: str = Field(min_length=1, max_length=256)
    # validated row by row by the model's feature schema (which names the row and feature at fault), not here
    instances: list[Any] = Field(min_length=1, json_schema_extra={"items": INSTANCE_SCHEMA})
    options: PredictOptions = PredictOptions()
    request_id: str | None = Field(None, max_length=256, pattern=NO_CONTROL_CHARACTERS)


class FeedbackItem(BaseModel):
    """Ground truth in the model's own form (`label`, `labels` or `path`) and/or a business outcome."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    prediction_id: str = Field(min_length=1, max_length=128)
    label: Name | None = None
    labels: list[Name] | None = Field(None, max_length=10_000)
    path: list[Name] | None = Field(None, min_length=1, max_length=64)
    outcome: str | None = Field(None, pattern=f"^{OUTCOME_NAME.pattern}$")
    value: float = Field(1.0, ge=0.0, le=MAX_OUTCOME_VALUE, allow_inf_nan=False)

    @model_validator(mode="after")
    def _carries_something(self) -> FeedbackItem:
        if "value" in self.model_fields_set and self.outcome is None:
            raise ValueError("'value' is the value of an 'outcome'; send the outcome's name too")
        if self.label is None and self.labels is None and self.path is None and self.outcome is None:
            raise ValueError("an item carries a label ('label', 'labels' or 'path') and/or an 'outcome'")
        return self


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    feedback: list[FeedbackItem] = Field(min_length=1, max_length=MAX_FEEDBACK_ITEMS)


class PerformanceQuery(BaseModel):
    """`GET /models/{name}/performance` query: ISO 8601 times or ages (`7d`); default: the feedback window."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    since: str | None = Field(None, max_length=64, examples=["7d", "2026-11-01T00:00:00+00:00"])
    until: str | None = Field(None, max_length=64, examples=["1h", "2026-12-01T00:00:00+00:00"])


class VersionRequest(BaseModel):
    """`PUT /admin/models/{name}/shadow`'s body, the version to shadow the served one; `PromoteRequest`'s version is
    the version to serve (an older one rolls back)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    version: str = Field(min_length=1, max_length=64)


class PromoteRequest(VersionRequest):
    """`POST /admin/models/{name}/promote` body."""

    force: bool = Field(
        False,
        description="Promote a candidate (a version registered by `python -m models retrain`) that was neither "
        "compared (`python -m models compare`) nor shadowed; without it such a promotion is refused (409).",
    )


def parse_version_request(payload: Any) -> VersionRequest:
    return parse(VersionRequest, payload)


def parse_promote_request(payload: Any) -> PromoteRequest:
    return parse(PromoteRequest, payload)


def parse_predict_request(payload: Any) -> PredictRequest:
    """Validate a decoded JSON body, turning pydantic's errors into one `InvalidInputError`."""
    return parse(PredictRequest, payload)


def parse_feedback_request(payload: Any) -> FeedbackRequest:
    return parse(FeedbackRequest, payload)


def parse_performance_query(params: dict[str, str]) -> PerformanceQuery:
    return parse(PerformanceQuery, params, what="the query")


def parse(model: type[M], payload: Any, what: str = "the body") -> M:
    """`payload` validated as `model`, pydantic's errors turned into one `InvalidInputError`."""
    if not isinstance(payload, dict):
        raise InvalidInputError(f"{what} must be a JSON object, got a {type(payload).__name__}", field=None)
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def invalid_input(exc: ValidationError) -> InvalidInputError:
    """The first pydantic error as an `InvalidInputError` that says what was expected and what arrived."""
    first = exc.errors(include_url=False)[0]
    field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in first["loc"]).lstrip(".")
    if first["type"] == "extra_forbidden":
        return InvalidInputError(f"unknown field '{field}'", field=field)
    if first["type"] == "missing":
        return InvalidInputError(f"field '{field}' is required", field=field)
    if first["type"] == "value_error":  # our own validators: the message says what is expected
        message = str(first["ctx"]["error"]) if "ctx" in first else first["msg"]
        return InvalidInputError(f"{field or 'the body'}: {message}", field=field or None)
    arrived = repr(first.get("input"))
    if len(arrived) > 80:
        arrived = arrived[:77] + "..."
    return InvalidInputError(f"field '{field}': {first['msg'].lower()}; got {arrived}", field=field)
