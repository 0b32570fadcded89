"""The Open Inference Protocol's REST bodies (the "V2" protocol of KServe, MLServer and Triton), as pydantic models:
requests are parsed with them, and the OpenAPI document describes every `/v2` route from them.

Request bodies are strict where a wrong value would be served silently (an unknown field, a parameter we do not
know, a shape that does not fit the data), and leave the tensor data to the model's validation, which names the row
and the feature at fault.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ..schemas import MAX_TOP_K, NO_CONTROL_CHARACTERS

NUMERIC_DATATYPES = (
    "FP64", "FP32", "FP16", "INT64", "INT32", "INT16", "INT8", "UINT64", "UINT32", "UINT16", "UINT8",
)  # fmt: skip
DATATYPES = (*NUMERIC_DATATYPES, "BYTES", "BOOL")
MAX_NAME = 256
MAX_DIMENSION = 1 << 31


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class TensorParameters(_Strict):
    content_type: str | None = Field(None, max_length=64)


class RequestInput(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME, pattern=NO_CONTROL_CHARACTERS)
    shape: list[Annotated[int, Field(ge=0, le=MAX_DIMENSION)]] = Field(min_length=1, max_length=2)
    datatype: Literal[DATATYPES]  # type: ignore[valid-type]  # a Literal of the tuple's values
    # flat in row-major order, or nested as the shape says; each value checked by the model's feature schema
    data: list[Any] = Field(json_schema_extra={"items": {}})
    parameters: TensorParameters | None = None


class OutputParameters(_Strict):
    # the binary tensor data extension is not served: JSON data only
    binary_data: Literal[False] | None = None


class RequestOutput(_Strict):
    name: str = Field(min_length=1, max_length=MAX_NAME)
    parameters: OutputParameters | None = None


class InferenceParameters(_Strict):
    """The request's parameters: how inputs are encoded, and `/predict`'s decision options."""

    content_type: Literal["np", "pd"] | None = Field(
        None, description="`pd`: one input per feature, named as the feature (MLServer's pandas codec)."
    )
    threshold: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)
    top_k: int | None = Field(None, ge=1, le=MAX_TOP_K)
    min_confidence: float | None = Field(None, ge=0.0, le=1.0, allow_inf_nan=False)


class InferenceRequest(_Strict):
    id: str | None = Field(None, max_length=256, pattern=NO_CONTROL_CHARACTERS)
    parameters: InferenceParameters = InferenceParameters()
    inputs: list[RequestInput] = Field(min_length=1, max_length=10_000)
    outputs: list[RequestOutput] | None = Field(None, max_length=64)


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    data: list[JsonValue]


class InferenceResponse(BaseModel):
    model_name: str
    model_version: str
    id: str = Field(description="The request's `id`, or the key of its logged predictions.")
    parameters: dict[str, JsonValue] = Field(
        description="`prediction_ids`: one per row, for `POST /feedback`; `task`: the model's task kind."
    )
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]
    parameters: dict[str, JsonValue] | None = None


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]
    parameters: dict[str, JsonValue]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


class Liveness(BaseModel):
    live: bool


class Readiness(BaseModel):
    ready: bool


class ModelReadiness(BaseModel):
    name: str
    ready: bool


class V2Error(BaseModel):
    error: str = Field(
        description="`<code>: <message> (<field>)`: the error code (`invalid_input`, `unknown_model`, ...), what was "
        "expected and what arrived, and where in the request."
    )
