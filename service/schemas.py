"""Request bodies. Strict: unknown fields and loose types (`"3"` for 3, `1` for true) are rejected."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .classifiers import InvalidInputError, Options


class PredictOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    top_k: int | None = Field(None, ge=1)
    threshold: float | None = Field(None, ge=0.0, le=1.0)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0)
    return_probabilities: bool = False

    def to_options(self) -> Options:
        return Options(self.top_k, self.threshold, self.min_confidence, self.return_probabilities)


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str = Field(min_length=1, max_length=256)
    instances: list[Any] = Field(min_length=1)
    options: PredictOptions = PredictOptions()
    request_id: str | None = Field(None, max_length=256)


def parse_predict_request(payload: Any) -> PredictRequest:
    """Validate a decoded JSON body, turning pydantic's errors into one `InvalidInputError`."""
    if not isinstance(payload, dict):
        raise InvalidInputError(f"the body must be a JSON object, got a {type(payload).__name__}", field=None)
    try:
        return PredictRequest.model_validate(payload)
    except ValidationError as exc:
        raise invalid_input(exc) from None


def invalid_input(exc: ValidationError) -> InvalidInputError:
    """The first pydantic error as an `InvalidInputError` that says what was expected and what arrived."""
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"])
    if first["type"] == "extra_forbidden":
        return InvalidInputError(f"unknown field '{field}'", field=field)
    if first["type"] == "missing":
        return InvalidInputError(f"field '{field}' is required", field=field)
    arrived = repr(first.get("input"))
    if len(arrived) > 80:
        arrived = arrived[:77] + "..."
    return InvalidInputError(f"field '{field}': {first['msg'].lower()}; got {arrived}", field=field)
