"""The BentoML service: HTTP routes over the model registry. Thin: no numpy, no decision logic.

The API is a Starlette app mounted into the BentoML service, so that it owns its routes (`GET /models/{name}`),
its request parsing (strict, orjson) and every error body; BentoML provides the server, workers, `/metrics`,
`/livez` and `/readyz`.

`bentoml serve` imports this module twice: in its arbiter, which only reads the service's configuration, and in each
worker. What only a worker uses (the model stack, the prediction log's database and migrations) is imported in
`ClassifierService.__init__`, so that the arbiter starts the workers without importing it (`tests/test_import_diet.py`).
"""

from __future__ import annotations

import gc
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import bentoml
import orjson
from bentoml import get_current_service  # once: `bentoml.<name>` is a lookup through its lazy module
from bentoml.serving import running_inside_container
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import Receive, Send

from . import bentoml_fixes, home
from .allocator import tune_allocator
from .auth.guard import Guard, caller, check_admin_request
from .auth.keys import SCOPES, Scope, read_keys
from .bodies import decode_json, read_body
from .errors import TIMEOUT, classify, error_body, v2_error_body
from .middleware import ConcurrencyLimitMiddleware, DirectRoutes, ErrorBodyMiddleware
from .monitoring.metrics import CONTENT_TYPE, NO_MODEL, Children, exposition, shared_metrics
from .openapi import DOCUMENT_PATH, OpenAPIDocument, Operation, openapi_document
from .openapi.responses import (
    FeedbackResponse,
    LoggedPrediction,
    ModelCard,
    ModelList,
    PerformanceResponse,
    PredictResponse,
    PromoteResponse,
    ShadowResponse,
)
from .schemas import (
    FeedbackRequest,
    PerformanceQuery,
    PredictRequest,
    PromoteRequest,
    VersionRequest,
    parse_feedback_request,
    parse_performance_query,
    parse_predict_request,
    parse_promote_request,
    parse_version_request,
)
from .settings import Settings
from .v2.protocol import V2Error
from .v2.routes import ROUTES as V2_ROUTES

logger = logging.getLogger(__name__)

Handler = Callable[[Request, "ClassifierService"], Awaitable[Any]]


def json_response(content: Any, status_code: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status_code, media_type="application/json")


ErrorBodyOf = Callable[[str, str, str | None], Any]  # (code, message, field) -> the route's error body


def error_response(exc: Exception, request: Request, body_of: ErrorBodyOf = error_body) -> Response:
    kind = classify(exc)
    if kind.status >= 500 and kind.code == "internal":
        error_id = os.urandom(8).hex()
        logger.exception("error %s in %s %s", error_id, request.method, request.url.path)
        return json_response(body_of(kind.code, f"internal error {error_id}; the service log has details", None), 500)
    message = getattr(exc, "message", str(exc))
    logger.info("%s %s -> %d %s: %s", request.method, request.url.path, kind.status, kind.code, message)
    response = json_response(body_of(kind.code, message, getattr(exc, "field", None)), kind.status)
    if kind.status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="classifier-service"'  # RFC 9110: a 401 names its scheme
    return response


def probe_failure(reason: str) -> HTTPException:
    """A failed `/livez` or `/readyz` that says why: BentoML answers the exception a probe hook raises, where a
    False gives only its own fixed sentence (`ErrorBodyMiddleware` makes it CONTRACT's `unavailable` error)."""
    return HTTPException(status_code=503, detail=reason)


def endpoint(operation: Operation, handler: Handler) -> Route:
    """The route of `handler`: an `Endpoint`, a plain ASGI app (no Starlette request/response wrapping), which
    `DirectRoutes` calls as soon as the service's middlewares let a request in."""
    if operation.scope not in SCOPES:
        raise ValueError(f"{operation.method} {operation.path}: scope {operation.scope!r} is not one of {SCOPES}")
    key_scope: Scope = operation.scope
    body_of = v2_error_body if operation.error_model is V2Error else error_body
    return Route(operation.path, Endpoint(operation.path, operation.method, key_scope, handler, body_of),
                 methods=[operation.method])  # fmt: skip


class Endpoint:
    """A route that takes a key with the operation's scope (when keys are configured, `service.auth`), answers JSON
    (or the handler's own `Response`), turns every exception into CONTRACT.md's error body, and is measured.

    Handlers set `request.state.model` once they know which served model the request is for: the (model, version)
    labels of its metrics. `request.state.caller` is the name of the key that was let in (None without keys): the
    prediction log keeps it with what the request sends. A request cancelled before its answer is counted with code
    `timeout`: the only canceller of a handler is BentoML's traffic timeout (`bentoml_fixes`), which answers 504
    `timeout` in its place.
    """

    def __init__(self, route: str, verb: str, key_scope: Scope, handler: Handler, body_of: ErrorBodyOf) -> None:
        self.route = route
        self.key_scope = key_scope
        self.handler = handler
        self.body_of = body_of
        self.operation_name = f"{verb} {route}"

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        service: ClassifierService = get_current_service()
        request = Request(scope, receive)
        state = request.state
        state.model = (NO_MODEL, "")
        writes = service.metrics.writes
        in_flight = service.in_flight(self.route)
        writes.inc(in_flight)
        started = time.perf_counter()
        code = TIMEOUT  # until answered: BentoML's traffic timeout cancels the handler, and answers 504 itself
        answer: Any = None
        try:
            # before the body is read; the key's name says who calls (the log and the admin actions record it)
            state.caller = service.guard.check(
                request.headers, self.key_scope, self.operation_name, client_address(request)
            )
            answer = await self.handler(request, service)
            if not isinstance(answer, Response):
                answer = orjson.dumps(answer)
            code = "ok"
        except Exception as exc:  # noqa: BLE001 -- the error table decides; unknown errors become `internal`
            answer = error_response(exc, request, self.body_of)
            code = classify(exc).code
        finally:
            writes.dec(in_flight)
            model, version = state.model
            writes.inc(service.requests(model, version, self.route, code))
            writes.observe(service.request_duration(model, version, self.route), time.perf_counter() - started)
        if isinstance(answer, Response):
            await answer(scope, receive, send)
            return
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(answer))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer})


def client_address(request: Request) -> str | None:
    """The address the request came from, as the server gives it (None: it does not say)."""
    return request.client.host if request.client is not None else None


async def predict(request: Request, service: ClassifierService) -> Any:
    raw = await read_body(request, service.settings.max_body_bytes)
    body = parse_predict_request(await decode_json(raw))
    request.state.model = service.registry.model_label(body.model)
    # without the bytes `true` or `false` the body holds no boolean: validation can skip looking for one
    answer = await service.registry.predict(
        body, booleans_possible=b"true" in raw or b"false" in raw, caller=request.state.caller
    )
    request.state.model = (answer["model"], answer["version"])  # the version that answered, whatever a promotion did
    return answer


async def list_models(request: Request, service: ClassifierService) -> Any:
    return {"models": service.registry.describe_all()}


async def get_model(request: Request, service: ClassifierService) -> Any:
    name = request.path_params["name"]
    request.state.model = service.registry.model_label(name)
    return service.registry.describe(name)


async def feedback(request: Request, service: ClassifierService) -> Any:
    raw = await read_body(request, service.settings.max_body_bytes)
    body = parse_feedback_request(await decode_json(raw))
    return await service.loop.submit(body.feedback, request.state.caller)


async def get_prediction(request: Request, service: ClassifierService) -> Any:
    found = await service.loop.prediction(request.path_params["id"])
    request.state.model = service.registry.model_label(found["model"])
    return found


async def performance(request: Request, service: ClassifierService) -> Any:
    name = request.path_params["name"]
    request.state.model = service.registry.model_label(name)
    query = parse_performance_query(dict(request.query_params))
    return await service.loop.performance(name, query.since, query.until)


def admin(request: Request, service: ClassifierService) -> tuple[str, str]:
    """The model an admin route is for, and its caller (`guard.caller`); refuses what a web page can send."""
    check_admin_request(request.headers, request.method != "DELETE", f"{request.method} {request.url.path}")
    name: str = request.path_params["name"]
    request.state.model = service.registry.model_label(name)
    return name, caller(request.state.caller, client_address(request))


async def promote(request: Request, service: ClassifierService) -> Any:
    name, by = admin(request, service)
    body = parse_promote_request(await decode_json(await read_body(request, service.settings.max_body_bytes)))
    return await service.registry.rollout.promote(name, body.version, by, body.force)


async def set_shadow(request: Request, service: ClassifierService) -> Any:
    name, by = admin(request, service)
    body = parse_version_request(await decode_json(await read_body(request, service.settings.max_body_bytes)))
    return await service.registry.rollout.shadow(name, body.version, by)


async def stop_shadow(request: Request, service: ClassifierService) -> Any:
    name, by = admin(request, service)
    return await service.registry.rollout.shadow(name, None, by)


async def metrics(request: Request, service: ClassifierService) -> Response:
    """Every worker's metrics, summed, plus the gauges computed now: drift from the shared windows, realized
    figures from the prediction log."""
    service.registry.flush_observations()  # here, on the loop, where the calls wait

    def render() -> bytes:
        service.metrics.writes.flush()  # this worker's pending increments; the others' are at most a flush late
        scrape_time = service.registry.drift_exposition() + service.loop.realized_exposition()
        return exposition() + scrape_time.encode()

    return Response(await anyio.to_thread.run_sync(render), media_type=CONTENT_TYPE)


PREDICT_LINKS = {  # where a prediction leads: the stateful fuzz tests follow these
    "GetPrediction": {"operationId": "get_predictions_id", "parameters": {"id": "$response.body#/predictions/0/id"}},
    "Feedback": {
        "operationId": "post_feedback",
        "requestBody": {"feedback": [{"prediction_id": "$response.body#/predictions/0/id", "outcome": "clicked"}]},
    },
    "GetModel": {"operationId": "get_models_name", "parameters": {"name": "$response.body#/model"}},
}
MODEL_LINKS = {
    "Performance": {"operationId": "get_models_name_performance", "parameters": {"name": "$response.body#/name"}},
}
ERRORS_OF_A_BODY = (400, 413)
ADMIN_REFUSALS = (403, 415)  # a request with an `Origin`, or from another machine without keys; a body not JSON
ADMIN_CALLERS = (
    "Refuses any request with an `Origin` header (web browsers send one) and bodies not sent as "
    "`application/json` (415). Without API keys (`CLF_ADMIN=true`) it answers loopback clients only. Every call "
    "that changes something is logged and recorded with its caller."
)
ROUTES: tuple[tuple[Operation, Handler], ...] = (
    (
        Operation(
            "POST", "/predict", "Classify a batch of instances with one model", PredictResponse,
            body=PredictRequest, errors=(*ERRORS_OF_A_BODY, 404, 503), links=PREDICT_LINKS, scope="predict",
        ),
        predict,
    ),
    (Operation("GET", "/models", "Every served model's card", ModelList, scope="predict"), list_models),
    (
        Operation(
            "GET", "/models/{name}", "One served model's card", ModelCard, errors=(404, 503), links=MODEL_LINKS,
            scope="predict",
        ),
        get_model,
    ),
    (
        Operation(
            "GET", "/models/{name}/performance", "Realized figures of a model's logged predictions, per version",
            PerformanceResponse, query=PerformanceQuery, errors=(400, 404, 503), scope="feedback",
        ),
        performance,
    ),
    (
        Operation(
            "POST", "/feedback", "Labels and business outcomes of earlier predictions", FeedbackResponse,
            body=FeedbackRequest, errors=(*ERRORS_OF_A_BODY, 503), scope="feedback",
        ),
        feedback,
    ),
    (
        Operation(
            "GET", "/predictions/{id}", "One logged prediction with its labels and outcomes", LoggedPrediction,
            errors=(404, 503), scope="feedback",
        ),
        get_prediction,
    ),
    (
        Operation(
            "POST", "/admin/models/{name}/promote", "Serve another version on every worker, live", PromoteResponse,
            tag="admin", body=PromoteRequest, errors=(*ERRORS_OF_A_BODY, *ADMIN_REFUSALS, 404, 409, 503),
            scope="admin", description=ADMIN_CALLERS,
        ),
        promote,
    ),
    (
        Operation(
            "PUT", "/admin/models/{name}/shadow", "Shadow the served version with another one", ShadowResponse,
            tag="admin", body=VersionRequest, errors=(*ERRORS_OF_A_BODY, *ADMIN_REFUSALS, 404, 503), scope="admin",
            description=ADMIN_CALLERS,
        ),
        set_shadow,
    ),
    (
        Operation(
            "DELETE", "/admin/models/{name}/shadow", "Stop the shadow set by the admin route", ShadowResponse,
            tag="admin", errors=(*ADMIN_REFUSALS, 404, 503), scope="admin", description=ADMIN_CALLERS,
        ),
        stop_shadow,
    ),
    (
        Operation(
            "GET", "/metrics", "Prometheus text exposition", None, tag="infrastructure", scope="metrics",
            description="With API keys, takes no key only when the service runs with `CLF_METRICS_OPEN=true`.",
        ),
        metrics,
    ),
    *V2_ROUTES,
)  # fmt: skip
INFRASTRUCTURE = (  # BentoML's own routes: they take no key
    Operation("GET", "/livez", "Liveness: 503 inside a container once a worker died", None, tag="infrastructure",
              errors=(503,)),
    Operation("GET", "/readyz", "Readiness: 503 until every configured model is loaded", None, tag="infrastructure",
              errors=(503,)),
)  # fmt: skip

api = Starlette(
    routes=[
        *(endpoint(operation, handler) for operation, handler in ROUTES),
    ]
)
DOCUMENT = openapi_document(
    [*(operation for operation, _ in ROUTES), *INFRASTRUCTURE],
    title="classifier-service",
    description=f"Binary, multiclass, multilabel and hierarchical classifiers behind one API. This document: "
    f"`{DOCUMENT_PATH}`; the error bodies and codes are those of every non-2xx answer.",
)


# Read once per process: BentoML takes the server-level ones when the class is defined, the worker the rest.
SERVER_SETTINGS = Settings()
if SERVER_SETTINGS.api_keys_file is not None:
    read_keys(SERVER_SETTINGS.api_keys_file)  # a bad keys file stops `bentoml serve` here, not each worker in a loop
_server_metrics = bentoml_fixes.apply(
    home.bentoml_home()[0], SERVER_SETTINGS.header_timeout_seconds, SERVER_SETTINGS.trace_requests
)
if _server_metrics is not None:  # the arbiter of `bentoml serve`: once per server, before its workers start
    _where = logging.getLogger("service.home")
    _where.setLevel(logging.INFO)  # `bentoml serve` sets the root logger to WARNING
    _where.info(
        "%s; prediction log %s; metrics folder %s",
        home.describe(),
        SERVER_SETTINGS.shown_log_database_url,
        _server_metrics,
    )


@bentoml.service(
    name="classifier-service",
    workers=SERVER_SETTINGS.workers,
    traffic={"timeout": 30},
    logging={"access": {"enabled": SERVER_SETTINGS.access_log}},
    tracing={"excluded_urls": [] if SERVER_SETTINGS.trace_requests else [".*"]},
    # `/metrics` is ours (service/monitoring): BentoML's own request metrics, labelled by raw path, are off
    metrics={"enabled": False},
    # OpenBLAS's idle threads spin for ~0.1 s after each product large enough to use them (monitoring's 512-row
    # reconstruction is one): at digits 64 rows x 4 one spun 7.6 s of 8 on a 2-CPU machine, beside the loop. 2^4
    # cycles before they sleep: 5.0 -> 2.7 ms of CPU a request. Read by OpenBLAS when a worker loads numpy.
    envs=[{"name": "OPENBLAS_THREAD_TIMEOUT", "value": "4"}],
)
@bentoml.asgi_app(api, path="/")
class ClassifierService:
    """Serves the configured classifiers; `/readyz` is 503 until every one of them has loaded."""

    def __init__(self) -> None:
        init_began = time.time()
        from .feedback.log import PredictionLog
        from .feedback.loop import FeedbackLoop
        from .monitoring.monitor import Heartbeat, window_directory
        from .monitoring.workers import Workers, log_startup
        from .serving import ModelRegistry, limit_native_threads

        tune_allocator()  # before the worker's threads start
        self.settings = SERVER_SETTINGS
        self.guard = Guard.configured(self.settings)
        limit_native_threads(self.settings)
        self.metrics = shared_metrics()
        self.requests = Children(self.metrics.requests)  # model, version, endpoint, code
        self.request_duration = Children(self.metrics.request_duration)  # model, version, endpoint
        self.in_flight = Children(self.metrics.in_flight)  # endpoint
        log_began = time.time()
        self.log = PredictionLog(self.settings, self.metrics)
        self.log.start()  # first: the log's database says which version of a model was promoted
        models_began = time.time()
        self.registry = ModelRegistry.load(self.settings, self.metrics, self.log)
        models_s = time.time() - models_began
        self.registry.rollout.start()
        self.loop = FeedbackLoop(
            self.log,
            self.metrics,
            self.settings.outcomes,
            self.settings.feedback_window_seconds,
            self.settings.performance_min_predictions,
        )
        self.heartbeat = Heartbeat(self.metrics, self.settings.heartbeat_seconds)
        self.workers = Workers(window_directory(), respawned=not running_inside_container())
        replaced = self.workers.clean_up(self.registry.drift_windows())
        if replaced:
            logger.info("removed the metric files of dead workers %s, and took over their drift windows", replaced)
        self.metrics.writes.start(self.settings.metrics_flush_seconds)
        # Everything allocated so far (models, libraries) lives as long as the worker: moved out of the
        # collector's reach, full collections walk only what requests allocate.
        gc.collect()
        gc.freeze()
        log_startup(init_began, models_began - log_began, models_s)

    def dead_reason(self) -> str | None:
        """Why the server is not alive (`/livez`, `/v2/health/live`); None while it is."""
        lost = self.workers.lost()
        if not lost:
            return None
        return (
            f"worker pid {', '.join(map(str, lost))} of this server died, and BentoML does not replace workers "
            "in a container (BENTOML_CONTAINERIZED): restart the container"
        )

    def unready_reason(self) -> str | None:
        """Why the server is not ready (`/readyz`, `/v2/health/ready`); None while it is."""
        if not self.registry.ready:
            return self.registry.unready_reason()
        return self.guard.unready_reason()

    def __is_alive__(self) -> bool:
        dead = self.dead_reason()
        if dead is not None:
            raise probe_failure(dead)
        return True

    async def __is_ready__(self) -> bool:
        # async, so BentoML answers `/readyz` on the event loop: a sync hook runs in its thread pool, and under load
        # the probe would wait for a free thread and for the GIL (`tests/e2e/test_held_loop.py`)
        unready = self.unready_reason()
        if unready is not None:
            raise probe_failure(unready)
        return True

    @bentoml.on_shutdown  # type: ignore[untyped-decorator]  # bentoml ships no type information
    def flush_prediction_log(self) -> None:
        """A graceful stop writes the queued predictions, and the model calls and metric increments waiting to be
        observed and written, before the worker exits."""
        self.registry.rollout.stop()
        self.registry.shadows.stop()  # before the log closes: the shadows' last records are queued for it
        self.loop.close()
        self.log.close()
        self.registry.flush_observations()
        self.metrics.writes.stop()


# Outermost first. Our routes answer CONTRACT.md's bodies themselves and leave `DirectRoutes` before
# `ErrorBodyMiddleware`, which rewrites what the others answer (BentoML's, Starlette's: 404, 405, `/readyz`).
ClassifierService.add_asgi_middleware(OpenAPIDocument, document=DOCUMENT)  # type: ignore[attr-defined]
ClassifierService.add_asgi_middleware(  # type: ignore[attr-defined]
    ConcurrencyLimitMiddleware, limit=SERVER_SETTINGS.max_concurrent_requests
)
ClassifierService.add_asgi_middleware(DirectRoutes, routes=api.routes)  # type: ignore[attr-defined]
ClassifierService.add_asgi_middleware(ErrorBodyMiddleware)  # type: ignore[attr-defined]
