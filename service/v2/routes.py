"""The Open Inference Protocol's REST routes, beside `/predict`: the handlers and their table, which `service.app`
mounts with the protocol's error body (`{"error": "<code>: <message>"}`).

`infer` serves through `/predict`'s path (`ModelRegistry.predict`): the same validation, batching with `/predict`'s
traffic, monitoring, prediction log (the response's `parameters.prediction_ids` are what `POST /feedback` takes),
API keys (scope `predict`, every route) and request metrics (`endpoint` is the route's template).
"""

from __future__ import annotations

from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any, Protocol
from weakref import WeakKeyDictionary

from starlette.requests import Request

from ..bodies import decode_json, read_body
from ..classifiers import InvalidInputError, Task
from ..errors import DependencyUnavailableError
from ..openapi import Operation
from ..schemas import parse
from ..settings import Settings
from .codec import ModelShape, output_metadata, predict_request, response_outputs
from .protocol import (
    InferenceRequest,
    InferenceResponse,
    Liveness,
    ModelMetadata,
    ModelReadiness,
    Readiness,
    ServerMetadata,
    V2Error,
)

if TYPE_CHECKING:
    from ..serving import ModelRegistry, Served

SERVER_NAME = "classifier-service"
PLATFORM = "scikit-learn"


class Service(Protocol):
    """What the handlers use of the service."""

    registry: ModelRegistry
    settings: Settings

    def dead_reason(self) -> str | None: ...

    def unready_reason(self) -> str | None: ...


def server_version() -> str:
    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:  # a source tree that was not installed
        return "0"


def model_ref(request: Request) -> str:
    """`name`, or `name:version` on the `/versions/{version}` routes."""
    name: str = request.path_params["name"]
    pinned = request.path_params.get("version")
    return name if pinned is None else f"{name}:{pinned}"


def resolve(request: Request, service: Service) -> Served:
    """The served model the route names; on a `/versions/{version}` route naming the served version's shadow, the
    shadow, answering alone: no batching with the served traffic, no monitoring (its signals are the served
    version's), its predictions logged under its own version."""
    ref = model_ref(request)
    request.state.model = service.registry.model_label(ref)
    name, _, pinned = ref.partition(":")
    served = service.registry.served.get(name)
    if served is not None and served.shadow is not None and pinned == served.shadow.version:
        request.state.model = (name, pinned)
        return replace(served, model=served.shadow, monitor=None, batcher=None, shadow=None)
    return service.registry.resolve(ref)


# per task object, built once: a model of thousands of classes is not copied at each request; weak, so that a
# version a promotion replaced is not kept alive by it
_SHAPES: WeakKeyDictionary[Task, ModelShape] = WeakKeyDictionary()


def shape_of(served: Served) -> ModelShape:
    task = served.model.task
    shape = _SHAPES.get(task)
    if shape is None:
        levels = getattr(getattr(task, "tree", None), "max_depth", 1)
        shape = _SHAPES[task] = ModelShape(task.name, tuple(task.classes), tuple(task.features.names), levels)
    return shape


async def server_metadata(request: Request, service: Service) -> Any:
    return {"name": SERVER_NAME, "version": server_version(), "extensions": []}


async def live(request: Request, service: Service) -> Any:
    dead = service.dead_reason()  # `/livez`'s rule
    if dead is not None:
        raise DependencyUnavailableError(dead)
    return {"live": True}


async def ready(request: Request, service: Service) -> Any:
    unready = service.unready_reason()  # `/readyz`'s rule
    if unready is not None:
        raise DependencyUnavailableError(unready)
    return {"ready": True}


async def model_metadata(request: Request, service: Service) -> Any:
    served = resolve(request, service)
    shape = shape_of(served)
    features = served.model.task.features
    strings = set(features.categorical) | set(features.text)
    if strings:  # one input per feature: the pandas codec's form
        inputs = [
            {"name": name, "datatype": "BYTES" if name in strings else "FP64", "shape": [-1]} for name in features.names
        ]
    else:
        inputs = [{"name": "input-0", "datatype": "FP64", "shape": [-1, len(features.names)]}]
    return {
        "name": served.model.name,
        "versions": [served.model.version],
        "platform": PLATFORM,
        "inputs": inputs,
        "outputs": output_metadata(shape),
        "parameters": {
            "task": shape.task,
            "content_type": "pd" if strings else "np",
            "classes": list(shape.classes),
            "features": list(shape.features),
        },
    }


async def model_ready(request: Request, service: Service) -> Any:
    served = resolve(request, service)
    return {"name": served.model.name, "ready": True}


async def infer(request: Request, service: Service) -> Any:
    raw = await read_body(request, service.settings.max_body_bytes)
    body = parse(InferenceRequest, await decode_json(raw))
    served = resolve(request, service)
    shape = shape_of(served)
    asked, outputs = predict_request(served.model.name, shape, body)
    try:
        answered = await service.registry.answer(
            asked, booleans_possible=b"true" in raw or b"false" in raw, caller=request.state.caller, served=served
        )
    except InvalidInputError as exc:
        exc.field = in_v2_terms(exc.field)
        raise
    answer = answered.body
    request.state.model = (answer["model"], answer["version"])
    records = answer["predictions"]
    ids = [record.pop("id") for record in records]
    return {
        "model_name": answer["model"],
        "model_version": answer["version"],
        "id": body.id if body.id is not None else ids[0].rpartition("-")[0],
        "parameters": {"task": answer["task"], "prediction_ids": ids},
        "outputs": response_outputs(shape, outputs, records, answered.prediction.probability_matrix()),
    }


def in_v2_terms(field: str | None) -> str | None:
    """A `/predict` field (`options.top_k`, `instances[3].pixel_5`) as where the V2 request has it."""
    if field is None:
        return None
    if field.startswith("options."):
        return "parameters." + field.removeprefix("options.")
    return field.replace("instances", "inputs", 1) if field.startswith("instances") else field


MODEL_ERRORS = (404, 503)
INFER_ERRORS = (400, 413, *MODEL_ERRORS)


def _operations(
    path: str, summary: str, answer: type[Any], handler: Any, method: str = "GET", **more: Any
) -> list[tuple[Operation, Any]]:
    """The route at `path` and, for a model route, at its `/versions/{version}` form too."""
    paths = [path]
    if path.startswith("/v2/models/{name}"):
        paths.append(path.replace("{name}", "{name}/versions/{version}", 1))
    return [
        (Operation(method, route, summary, answer, tag="v2", scope="predict", error_model=V2Error, **more), handler)
        for route in paths
    ]


ROUTES: list[tuple[Operation, Any]] = [
    *_operations("/v2", "Server metadata (Open Inference Protocol)", ServerMetadata, server_metadata),
    *_operations("/v2/health/live", "Server liveness (Open Inference Protocol)", Liveness, live),
    *_operations("/v2/health/ready", "Server readiness: every configured model served", Readiness, ready,
                 errors=(503,)),
    *_operations("/v2/models/{name}", "A served model's metadata: inputs, outputs, classes", ModelMetadata,
                 model_metadata, errors=MODEL_ERRORS),
    *_operations("/v2/models/{name}/ready", "A model's readiness", ModelReadiness, model_ready, errors=MODEL_ERRORS),
    *_operations("/v2/models/{name}/infer", "Classify tensors (Open Inference Protocol)", InferenceResponse, infer,
                 method="POST", body=InferenceRequest, errors=INFER_ERRORS),
]  # fmt: skip
