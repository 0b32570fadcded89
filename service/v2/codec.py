"""From an Open Inference Protocol request to `/predict`'s request, and from `/predict`'s answer to the protocol's
response: the V2 routes serve through the same path as `/predict` (validation, batching, monitoring, the log).

Inputs, two forms:
- one tensor `[rows, features]` (or `[rows]` for a one-feature model), numeric, the features in the model's order,
  its data flat in row-major order or nested by row;
- with the request parameter `content_type: "pd"` (MLServer's pandas codec), one input per feature, named as the
  feature, shape `[rows]` or `[rows, 1]`: `BYTES` for text and categorical columns.
`BOOL` tensors are refused: a model's features are numbers or strings.

Outputs, by name (`outputs`; none named: `predict` and the task's decision outputs, `DEFAULT_OUTPUTS`):
- `predict`: the decided labels, as MLServer's scikit-learn runtime returns `predict`: `BYTES [rows, 1]` class names
  (multiclass: `""` when abstained; hierarchical: the deepest decided node); multilabel `INT64 [rows, labels]`, the
  0/1 indicator of the decided labels, in the metadata's label order.
- `predict_proba`: `FP64 [rows, classes]`, the class probabilities, columns in the metadata's class order (multilabel:
  each label's probability). Not for hierarchical models (no flat distribution): `path_confidence` is theirs.
- binary `score` (P(positive)) and `threshold` (the one applied), `FP64 [rows, 1]`;
- multiclass `confidence` `FP64 [rows, 1]`, `abstained` `BOOL [rows, 1]`;
- hierarchical `path` `BYTES [rows, levels]` (`""` past where the path stopped), `path_confidence`
  `FP64 [rows, levels]` (0 past it), `complete` `BOOL [rows, 1]`;
- with `top_k`: multiclass `top_k_labels` `BYTES [rows, k]` and `top_k_scores` `FP64 [rows, k]`; hierarchical
  `top_k_paths` `BYTES [rows, k, levels]` and `top_k_confidence` `FP64 [rows, k]` (k: at most the classes).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..classifiers import InvalidInputError
from ..schemas import PredictOptions, PredictRequest
from .protocol import NUMERIC_DATATYPES, InferenceRequest, RequestInput

if TYPE_CHECKING:
    import numpy as np

Tensor = dict[str, Any]
Records = Sequence[Mapping[str, Any]]

DEFAULT_OUTPUTS: dict[str, tuple[str, ...]] = {
    "binary": ("predict", "score", "threshold"),
    "multiclass": ("predict", "confidence", "abstained"),
    "multilabel": ("predict",),
    "hierarchical": ("predict", "path", "path_confidence", "complete"),
}
TOP_K_OUTPUTS: dict[str, tuple[str, ...]] = {
    "multiclass": ("top_k_labels", "top_k_scores"),
    "hierarchical": ("top_k_paths", "top_k_confidence"),
}
PROBABILITIES = "predict_proba"


@dataclass(frozen=True)
class ModelShape:
    """What the codec needs of a served model: its task, its classes (labels, leaves) in their order, its features
    in theirs, and for a hierarchy the levels of a path."""

    task: str
    classes: Sequence[str]
    features: Sequence[str]
    levels: int = 1

    def outputs(self) -> tuple[str, ...]:
        """Every output this model answers."""
        probabilities = () if self.task == "hierarchical" else (PROBABILITIES,)
        return (*DEFAULT_OUTPUTS[self.task], *probabilities, *TOP_K_OUTPUTS.get(self.task, ()))


def invalid(message: str, field: str) -> InvalidInputError:
    return InvalidInputError(message, field=field)


def predict_request(model: str, shape: ModelShape, body: InferenceRequest) -> tuple[PredictRequest, list[str]]:
    """`/predict`'s request for `body`, and the outputs to answer."""
    outputs = requested_outputs(shape, body)
    parameters = body.parameters
    if parameters.content_type == "pd":
        instances: list[Any] = columns_to_rows(body.inputs)
    else:
        if len(body.inputs) != 1:
            raise invalid(
                f"{len(body.inputs)} inputs: send one [rows, features] tensor, or one input per feature with the "
                'request parameter content_type "pd"',
                "inputs",
            )
        instances = tensor_rows(body.inputs[0], len(shape.features))
    if not instances:
        raise invalid("the inputs hold no row", "inputs")
    # built without validating again what `InferenceRequest` validated, with the same bounds (four times the cost of
    # the rest of the request's decoding, for 1 row)
    # `predict_proba` is read from the decisions' matrix (`response_outputs`), not from per-row records
    options = PredictOptions.model_construct(
        top_k=parameters.top_k,
        threshold=parameters.threshold,
        min_confidence=parameters.min_confidence,
        return_probabilities=False,
    )
    request = PredictRequest.model_construct(model=model, instances=instances, options=options, request_id=body.id)
    return request, outputs


def requested_outputs(shape: ModelShape, body: InferenceRequest) -> list[str]:
    top_k = body.parameters.top_k is not None
    if body.outputs is None:
        return [*DEFAULT_OUTPUTS[shape.task], *(TOP_K_OUTPUTS.get(shape.task, ()) if top_k else ())]
    known = shape.outputs()
    names = [output.name for output in body.outputs]
    for i, name in enumerate(names):
        if name not in known:
            raise invalid(f"output '{name}' is not one of a {shape.task} model's: {', '.join(known)}", f"outputs[{i}]")
        if name in TOP_K_OUTPUTS.get(shape.task, ()) and not top_k:
            raise invalid(f"output '{name}' needs the request parameter top_k", f"outputs[{i}]")
    if len(set(names)) != len(names):
        raise invalid("an output is named twice", "outputs")
    return names


def tensor_rows(tensor: RequestInput, features: int) -> list[Any]:
    """The rows of one `[rows, features]` tensor."""
    field = "inputs[0]"
    if tensor.datatype == "BOOL":
        raise invalid("a BOOL tensor: a model's features are numbers (send 0/1) or strings", f"{field}.datatype")
    if tensor.datatype not in NUMERIC_DATATYPES:
        raise invalid(
            f"a {tensor.datatype} tensor: the one-tensor form takes numbers (FP64, FP32, INT*); strings go in the "
            'one-input-per-feature form (request parameter content_type "pd")',
            f"{field}.datatype",
        )
    if len(tensor.shape) == 1:
        rows, width = tensor.shape[0], 1
    else:
        rows, width = tensor.shape
    if width != features:
        raise invalid(f"shape {tensor.shape}: the model takes {features} features per row", f"{field}.shape")
    data = tensor.data
    if data and isinstance(data[0], list):  # nested by row
        if len(data) != rows or any(not isinstance(row, list) or len(row) != width for row in data):
            raise invalid(f"the nested data does not have shape {tensor.shape}", f"{field}.data")
        return data
    if len(data) != rows * width:
        raise invalid(f"{len(data)} values for shape {tensor.shape} ({rows * width} expected)", f"{field}.data")
    if width == 1 and len(tensor.shape) == 1:
        return [[value] for value in data]
    return [data[start : start + width] for start in range(0, len(data), width)]


def columns_to_rows(columns: Sequence[RequestInput]) -> list[dict[str, Any]]:
    """Rows keyed by feature name, from one input per feature (the model checks that every feature is there)."""
    rows = columns[0].shape[0]
    by_name: dict[str, list[Any]] = {}
    for i, column in enumerate(columns):
        field = f"inputs[{i}]"
        if column.datatype == "BOOL":
            raise invalid(f"column '{column.name}' is BOOL: send 0/1 as a number, or a string", f"{field}.datatype")
        if column.shape[0] != rows or (len(column.shape) == 2 and column.shape[1] != 1):
            raise invalid(f"shape {column.shape}: every column has shape [{rows}] or [{rows}, 1]", f"{field}.shape")
        values = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in column.data]
        if len(values) != rows:
            raise invalid(f"{len(values)} values for shape {column.shape}", f"{field}.data")
        if column.name in by_name:
            raise invalid(f"column '{column.name}' is sent twice", f"{field}.name")
        by_name[column.name] = values
    names = list(by_name)
    return [dict(zip(names, values, strict=True)) for values in zip(*by_name.values(), strict=True)]


# ---------------------------------------------------------------- the response


def output_metadata(shape: ModelShape) -> list[Tensor]:
    """Each output's name, datatype and shape (-1: any number; the `top_k` outputs' k is the request's)."""
    classes, levels = len(shape.classes), shape.levels
    described = {
        "predict": ("INT64", [-1, classes]) if shape.task == "multilabel" else ("BYTES", [-1, 1]),
        PROBABILITIES: ("FP64", [-1, classes]),
        "score": ("FP64", [-1, 1]),
        "threshold": ("FP64", [-1, 1]),
        "confidence": ("FP64", [-1, 1]),
        "abstained": ("BOOL", [-1, 1]),
        "complete": ("BOOL", [-1, 1]),
        "path": ("BYTES", [-1, levels]),
        "path_confidence": ("FP64", [-1, levels]),
        "top_k_labels": ("BYTES", [-1, -1]),
        "top_k_scores": ("FP64", [-1, -1]),
        "top_k_paths": ("BYTES", [-1, -1, levels]),
        "top_k_confidence": ("FP64", [-1, -1]),
    }
    return [{"name": name, "datatype": described[name][0], "shape": described[name][1]} for name in shape.outputs()]


def response_outputs(
    shape: ModelShape, outputs: Sequence[str], records: Records, probabilities: np.ndarray | None
) -> list[Tensor]:
    """The outputs asked, from the answer's records and, for `predict_proba`, the decisions' probability matrix."""
    return [
        {"name": name} | (_matrix(probabilities) if name == PROBABILITIES else ENCODERS[name](shape, records))
        for name in outputs
    ]


def _matrix(probabilities: np.ndarray | None) -> Tensor:
    if probabilities is None:  # a task without one flat distribution: refused before the model was called
        raise ValueError("no probability matrix for predict_proba")
    rows, columns = probabilities.shape
    return {"datatype": "FP64", "shape": [rows, columns], "data": probabilities.ravel().tolist()}


def tensor(datatype: str, rows: Sequence[Any], width: int | None = 1, depth: int | None = None) -> Tensor:
    """A tensor of `rows` (each a value, or `width` values, or `width` x `depth`), flattened row-major."""
    n = len(rows)
    if depth is not None:
        flat = [v for row in rows for inner in row for v in inner]
        return {"datatype": datatype, "shape": [n, width, depth], "data": flat}
    if width == 1:
        return {"datatype": datatype, "shape": [n, 1], "data": list(rows)}
    return {"datatype": datatype, "shape": [n, width], "data": [v for row in rows for v in row]}


def _predict(shape: ModelShape, records: Records) -> Tensor:
    if shape.task == "multilabel":
        indicator = [[0] * len(shape.classes) for _ in records]
        order = {name: i for i, name in enumerate(shape.classes)}
        for row, record in zip(indicator, records, strict=True):
            for label in record["labels"]:
                row[order[label]] = 1
        return tensor("INT64", indicator, len(shape.classes))
    return tensor("BYTES", [record["label"] or "" for record in records])


def _field(name: str, datatype: str) -> Callable[[ModelShape, Records], Tensor]:
    return lambda shape, records: tensor(datatype, [record[name] for record in records])


def _path(shape: ModelShape, records: Records) -> Tensor:
    pad = [""] * shape.levels
    rows = [([node["label"] for node in record["path"]] + pad)[: shape.levels] for record in records]
    return tensor("BYTES", rows, shape.levels)


def _path_confidence(shape: ModelShape, records: Records) -> Tensor:
    pad = [0.0] * shape.levels
    rows = [([node["confidence"] for node in record["path"]] + pad)[: shape.levels] for record in records]
    return tensor("FP64", rows, shape.levels)


def _top_k_width(records: Records) -> int:
    return len(records[0]["top_k"]) if records else 0


def _top_k_labels(shape: ModelShape, records: Records) -> Tensor:
    return tensor("BYTES", [[item["label"] for item in record["top_k"]] for record in records], _top_k_width(records))


def _top_k_scores(shape: ModelShape, records: Records) -> Tensor:
    return tensor("FP64", [[item["score"] for item in record["top_k"]] for record in records], _top_k_width(records))


def _top_k_paths(shape: ModelShape, records: Records) -> Tensor:
    pad = [""] * shape.levels
    rows = [[(item["path"] + pad)[: shape.levels] for item in record["top_k"]] for record in records]
    return tensor("BYTES", rows, _top_k_width(records), shape.levels)


def _top_k_confidence(shape: ModelShape, records: Records) -> Tensor:
    rows = [[item["confidence"] for item in record["top_k"]] for record in records]
    return tensor("FP64", rows, _top_k_width(records))


ENCODERS: dict[str, Callable[[ModelShape, Records], Tensor]] = {
    "predict": _predict,
    "score": _field("score", "FP64"),
    "threshold": _field("threshold", "FP64"),
    "confidence": _field("confidence", "FP64"),
    "abstained": _field("abstained", "BOOL"),
    "complete": _field("complete", "BOOL"),
    "path": _path,
    "path_confidence": _path_confidence,
    "top_k_labels": _top_k_labels,
    "top_k_scores": _top_k_scores,
    "top_k_paths": _top_k_paths,
    "top_k_confidence": _top_k_confidence,
}
