"""The OpenAPI 3.1 document of the whole API, built from the route table and the pydantic models of the bodies.

BentoML's own `/docs.json` (OpenAPI 3.0) describes only its infrastructure routes: the routes of a mounted Starlette
app are invisible to it. `OpenAPIDocument` answers `GET /docs.json` with this document instead, and `GET /` with a
page that links it: BentoML's page there loads a third-party script (Google Tag Manager) into every visitor's browser.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import orjson
from pydantic import BaseModel
from pydantic.json_schema import models_json_schema
from starlette.types import ASGIApp, Receive, Scope, Send

from .responses import ErrorBody

OPENAPI_VERSION = "3.1.0"
DOCUMENT_PATH = "/docs.json"
REF = "#/components/schemas/{model}"

# every status an error body can come with, and when (CONTRACT.md's error table)
ERROR_STATUSES: dict[int, str] = {
    400: "Invalid input (`invalid_input`): malformed JSON, wrong types, unknown fields, values the model cannot take.",
    401: "API keys are configured and the key is missing or wrong (`unauthorized`).",
    403: "The key lacks the route's scope, or the admin routes are off, or refuse this caller: a request with an "
    "`Origin` header, or from another machine while the service runs without API keys (`forbidden`).",
    404: "No such model or version (`unknown_model`), or prediction (`unknown_prediction`).",
    409: 'A candidate version that was neither compared nor shadowed, promoted without `"force": true` (`conflict`).',
    413: "The body is over `CLF_MAX_BODY_BYTES` (`payload_too_large`).",
    415: "An admin route's body not sent as `Content-Type: application/json` (`unsupported_media_type`).",
    500: "A bug (`internal`): the message carries an error id that the service log has with the traceback.",
    503: "The model failed to load (`model_unavailable`), or a dependency is down (`unavailable`: the prediction "
    "log's database, the API keys file), or the worker is serving `CLF_MAX_CONCURRENT_REQUESTS` already "
    "(`unavailable`, with `Retry-After`).",
    504: "No answer within the service's time limit (`timeout`).",
}
ALWAYS = (500, 504)  # any route: a bug, or the traffic timeout
SECURITY_SCHEME = "apiKey"
API_KEY = {
    "type": "http",
    "scheme": "bearer",
    "description": "An API key of the keys file (`python -m service.auth create`), as `Authorization: Bearer <key>` "
    "or `X-API-Key: <key>`. Only when the service runs with `CLF_API_KEYS_FILE`.",
}


@dataclass(frozen=True)
class Operation:
    """One route as the document describes it. `answer` None: a text/plain answer (`/metrics`, health)."""

    method: str
    path: str
    summary: str
    answer: type[BaseModel] | None
    tag: str = "classifier"
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    errors: tuple[int, ...] = ()
    description: str = ""
    links: Mapping[str, Any] = field(default_factory=dict)  # OpenAPI links of the 200 answer, by name
    scope: str | None = None  # the API key scope the route takes (`service.auth`); None: open
    error_model: type[BaseModel] = ErrorBody  # the body of its error answers

    @property
    def operation_id(self) -> str:
        words = [p.strip("{}") for p in self.path.strip("/").replace(".", "_").split("/")]
        return "_".join([self.method.lower(), *words])


def openapi_document(operations: Iterable[Operation], title: str, description: str) -> dict[str, Any]:
    """The OpenAPI document of `operations`."""
    operations = list(operations)
    models: set[type[BaseModel]] = {ErrorBody}
    for op in operations:
        models.update(m for m in (op.answer, op.body, op.error_model) if m is not None)
    _, schemas = models_json_schema(
        [(model, "validation") for model in sorted(models, key=lambda m: m.__name__)], ref_template=REF
    )
    paths: dict[str, dict[str, Any]] = {}
    for op in operations:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": _package_version(), "description": description},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": schemas.get("$defs", {}), "securitySchemes": {SECURITY_SCHEME: API_KEY}},
    }


def _operation(op: Operation) -> dict[str, Any]:
    described: dict[str, Any] = {
        "operationId": op.operation_id,
        "summary": op.summary,
        "tags": [op.tag],
        "responses": {"200": _ok(op)},
    }
    errors = {*op.errors, *ALWAYS}
    description = op.description
    if op.scope is not None:  # keys are optional: `{}` says the route also answers without one when none are set
        described["security"] = [{SECURITY_SCHEME: []}, {}]
        errors |= {401, 403, 503}  # 503: the keys file cannot be read
        description = f"{description} API key scope: `{op.scope}` (when `CLF_API_KEYS_FILE` is set).".strip()
    if description:
        described["description"] = description
    parameters = [
        {"name": name, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for name in _path_parameters(op.path)
    ]
    if op.query is not None:
        query = op.query.model_json_schema(ref_template=REF)
        required = set(query.get("required", ()))
        parameters += [
            {"name": name, "in": "query", "required": name in required, "schema": schema}
            for name, schema in query["properties"].items()
        ]
    if parameters:
        described["parameters"] = parameters
    if op.body is not None:
        described["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": {"$ref": REF.format(model=op.body.__name__)}}},
        }
    for status in sorted(errors):
        described["responses"][str(status)] = {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": {"$ref": REF.format(model=op.error_model.__name__)}}},
        }
    return described


def _ok(op: Operation) -> dict[str, Any]:
    if op.answer is None:
        return {"description": "OK", "content": {"text/plain": {"schema": {"type": "string"}}}}
    ok: dict[str, Any] = {
        "description": "OK",
        "content": {"application/json": {"schema": {"$ref": REF.format(model=op.answer.__name__)}}},
    }
    if op.links:
        ok["links"] = dict(op.links)
    return ok


def _path_parameters(path: str) -> list[str]:
    return [part[1:-1] for part in path.split("/") if part.startswith("{") and part.endswith("}")]


def _package_version() -> str:
    try:
        return version("classifier-service")
    except PackageNotFoundError:  # run from a source tree that was not installed
        return "0"


INDEX_PAGE = b"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>classifier-service</title></head>
<body>
<h1>classifier-service</h1>
<p>The API is described by its OpenAPI 3.1 document: <a href="docs.json">docs.json</a>.
Open it in any OpenAPI viewer or client generator; the project's docs/api.md documents every route.</p>
</body>
</html>
"""
# the page loads nothing; a policy that forbids every fetch keeps it so should anything ever be added to it
INDEX_HEADERS = [
    (b"content-type", b"text/html; charset=utf-8"),
    (b"content-security-policy", b"default-src 'none'"),
    (b"x-content-type-options", b"nosniff"),
]


class OpenAPIDocument:
    """ASGI middleware answering `GET /docs.json` with the document (rendered once), and `GET /` with a page that
    links it, before BentoML's own routes."""

    def __init__(self, app: ASGIApp, document: Mapping[str, Any]) -> None:
        self.app = app
        self._body = orjson.dumps(document)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] in ("GET", "HEAD"):
            if scope["path"] == DOCUMENT_PATH:
                await _answer(send, scope, [(b"content-type", b"application/json")], self._body)
                return
            if scope["path"] == "/":
                await _answer(send, scope, INDEX_HEADERS, INDEX_PAGE)
                return
        await self.app(scope, receive, send)


async def _answer(send: Send, scope: Scope, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
    headers = [*headers, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body if scope["method"] == "GET" else b""})
