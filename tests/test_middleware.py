"""The error-body middleware turns any framework error body into CONTRACT.md's error object; the concurrency limit
refuses requests beyond it with CONTRACT.md's `unavailable`, and never the probes or `/metrics`."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service.middleware import ConcurrencyLimitMiddleware, ErrorBodyMiddleware


def make_client(response: Response) -> TestClient:
    async def endpoint(_request: object) -> Response:
        return response

    app = Starlette(routes=[Route("/x", endpoint)])
    app.add_middleware(ErrorBodyMiddleware)
    return TestClient(app)


@pytest.mark.parametrize(
    ("response", "code", "text"),
    [
        (JSONResponse([{"error": "BentoService error: bad field"}], status_code=400), "invalid_input", "bad field"),
        (JSONResponse({"detail": "Service is not ready"}, status_code=503), "unavailable", "not ready"),
        (PlainTextResponse("boom", status_code=500), "internal", "boom"),
        (PlainTextResponse("", status_code=418), "invalid_input", "HTTP 418"),
    ],
)
def test_foreign_error_bodies_become_error_objects(response: Response, code: str, text: str) -> None:
    answer = make_client(response).get("/x")
    assert answer.status_code == response.status_code
    assert answer.headers["content-type"] == "application/json"
    error = answer.json()["error"]
    assert error["code"] == code and text in error["message"]


def test_own_error_objects_and_successes_pass_untouched() -> None:
    own = {"error": {"code": "unknown_model", "message": "m", "field": "model"}}
    assert make_client(JSONResponse(own, status_code=404)).get("/x").json() == own
    assert make_client(JSONResponse([1, 2], status_code=200)).get("/x").json() == [1, 2]


@pytest.mark.parametrize(
    ("location", "relative"),
    [
        ("http://evil.example/models?x=1", "/models?x=1"),
        ("http://testserver//evil.example/models", "/evil.example/models"),  # `//host` is another host to a browser
        ("http://testserver/\\evil.example", "/%5Cevil.example"),  # Starlette quotes it: a path on this host
        ("/models", "/models"),
    ],
)
def test_a_redirect_never_leaves_this_host(location: str, relative: str) -> None:
    answer = make_client(RedirectResponse(location)).get("/x", follow_redirects=False)
    assert answer.status_code == 307 and answer.headers["location"] == relative


def test_requests_beyond_the_concurrency_limit_are_refused_503_and_the_probes_never() -> None:
    asyncio.run(_beyond_the_limit())


async def _beyond_the_limit() -> None:
    release = asyncio.Event()
    entered = 0

    async def held(request: Request) -> Response:
        nonlocal entered
        entered += 1
        await release.wait()
        return JSONResponse({"ok": True})

    async def fails(request: Request) -> Response:
        raise RuntimeError("a bug")

    async def probe(request: Request) -> Response:
        return PlainTextResponse("ok")

    app = Starlette(
        routes=[
            Route("/predict", held, methods=["POST"]),
            Route("/fails", fails),
            *(Route(path, probe) for path in ("/livez", "/readyz", "/healthz", "/metrics")),
        ]
    )
    app.add_middleware(ConcurrencyLimitMiddleware, limit=2)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
        assert (await client.get("/fails")).status_code == 500  # a request that raised gave its place back
        under_way = [asyncio.create_task(client.post("/predict")) for _ in range(2)]
        deadline = time.monotonic() + 60
        while entered < 2:
            assert time.monotonic() < deadline, "the first two requests never reached their handler"
            await asyncio.sleep(0.01)

        refused = await client.post("/predict", content=b"{}")
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert refused.headers["content-type"] == "application/json"
        error = refused.json()["error"]
        assert error["code"] == "unavailable" and "2 requests" in error["message"]
        assert "CLF_MAX_CONCURRENT_REQUESTS" in error["message"]
        for path in ("/livez", "/readyz", "/healthz", "/metrics"):
            assert (await client.get(path)).status_code == 200, path

        release.set()
        assert [r.status_code for r in await asyncio.gather(*under_way)] == [200, 200]
        assert (await client.post("/predict")).status_code == 200  # their places are free again


def test_the_service_caps_concurrent_requests_at_the_setting() -> None:
    from service.app import SERVER_SETTINGS, ClassifierService

    limits = [options for cls, options in ClassifierService.middlewares if cls is ConcurrencyLimitMiddleware]
    assert limits == [{"limit": SERVER_SETTINGS.max_concurrent_requests}]
