"""The error-body middleware turns any framework error body into CONTRACT.md's error object."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from service.middleware import ErrorBodyMiddleware


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
