"""The BentoML service: HTTP routes over the model registry. Thin: no numpy, no decision logic.

The API is a Starlette app mounted into the BentoML service, so that it owns its routes (`GET /models/{name}`),
its request parsing (strict, orjson) and every error body; BentoML provides the server, workers, `/metrics`,
`/livez` and `/readyz`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

import bentoml
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .classifiers import InvalidInputError
from .errors import PayloadTooLargeError, classify, error_body
from .middleware import ErrorBodyMiddleware
from .schemas import parse_predict_request
from .serving import ModelRegistry
from .settings import Settings

logger = logging.getLogger(__name__)

Handler = Callable[[Request, "ClassifierService"], Awaitable[Any]]


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


def error_response(exc: Exception, request: Request) -> Response:
    kind = classify(exc)
    if kind.status >= 500 and kind.code == "internal":
        error_id = os.urandom(8).hex()
        logger.exception("error %s in %s %s", error_id, request.method, request.url.path)
        return json_response(error_body(kind.code, f"internal error {error_id}; the service log has details"), 500)
    message = getattr(exc, "message", str(exc))
    logger.info("%s %s -> %d %s: %s", request.method, request.url.path, kind.status, kind.code, message)
    return json_response(error_body(kind.code, message, getattr(exc, "field", None)), kind.status)


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A Starlette endpoint that answers JSON and turns every exception into CONTRACT.md's error body."""

    async def run(request: Request) -> Response:
        try:
            return json_response(await handler(request, bentoml.get_current_service()))
        except Exception as exc:  # noqa: BLE001 -- the error table decides; unknown errors become `internal`
            return error_response(exc, request)

    return run


async def read_json(request: Request, max_bytes: int) -> Any:
    """The decoded body, refusing bodies over `max_bytes` before reading them whole."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"the body has {declared} bytes; at most {max_bytes} are accepted")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise PayloadTooLargeError(f"the body is over {max_bytes} bytes; at most {max_bytes} are accepted")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise InvalidInputError(
            f"the body is not valid JSON ({exc}); expected a JSON object, numbers finite (null marks a missing value)"
        ) from None


async def predict(request: Request, service: ClassifierService) -> Any:
    body = parse_predict_request(await read_json(request, service.settings.max_body_bytes))
    return service.registry.predict(body)


async def list_models(request: Request, service: ClassifierService) -> Any:
    return {"models": service.registry.describe_all()}


async def get_model(request: Request, service: ClassifierService) -> Any:
    return service.registry.describe(request.path_params["name"])


api = Starlette(
    routes=[
        Route("/predict", endpoint(predict), methods=["POST"]),
        Route("/models", endpoint(list_models), methods=["GET"]),
        Route("/models/{name:path}", endpoint(get_model), methods=["GET"]),
    ]
)


@bentoml.service(name="classifier-service", traffic={"timeout": 30})
@bentoml.asgi_app(api, path="/")
class ClassifierService:
    """Serves the configured classifiers; `/readyz` is 503 until every one of them has loaded."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.registry = ModelRegistry.load(self.settings)

    def __is_ready__(self) -> bool:
        return self.registry.ready


ClassifierService.add_asgi_middleware(ErrorBodyMiddleware)  # type: ignore[attr-defined]
