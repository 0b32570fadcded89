"""ASGI middleware: CONTRACT.md's JSON error object on every non-2xx response, redirects that stay on this host, and a
cap on concurrent requests.

BentoML and Starlette answer some requests before our handlers run (unknown route, wrong method, `/readyz`
503, BentoML's own 4xx as a JSON *array*); `ErrorBodyMiddleware` rewrites those bodies, and passes ours through
untouched. Their redirects (a trailing slash added or removed: Starlette's `redirect_slashes`, in BentoML's router
and ours) get a relative `Location`: Starlette builds an absolute one from the request's `Host` header, which any
client sets, so a link to this service could send its follower elsewhere.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
from starlette.routing import BaseRoute, Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import CODE_BY_STATUS, error_body

UNCAPPED_PATHS = frozenset({"/livez", "/readyz", "/healthz", "/metrics"})
RETRY_AFTER_SECONDS = 1


class ErrorBodyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start: Message | None = None
        body = bytearray()

        async def capture(message: Message) -> None:
            nonlocal start
            if message["type"] == "http.response.start":
                if 300 <= message["status"] < 400:
                    await send(_relative_location(message))
                elif message["status"] < 400:
                    await send(message)
                else:
                    start = message
                return
            if start is None:
                await send(message)
                return
            body.extend(message.get("body", b""))
            if not message.get("more_body", False):
                await _send_error(send, start, bytes(body), scope)

        await self.app(scope, receive, capture)


def _relative_location(start: Message) -> Message:
    """A redirect's start with its `Location` cut to path and query: a redirect of ours never leaves this host."""
    headers = []
    for name, value in start.get("headers", []):
        if name.lower() == b"location":
            target = urlsplit(value.decode("latin-1"))
            path = "/" + target.path.lstrip("/\\")  # `//host` (or `/\host`) would be another host to a browser
            value = urlunsplit(("", "", path, target.query, target.fragment)).encode("latin-1")
        headers.append((name, value))
    return {**start, "headers": headers}


class ConcurrencyLimitMiddleware:
    """At most `limit` requests at once in this worker; one more is answered 503 `unavailable` with `Retry-After`
    at once, before its body is read, so that a flood of requests queues neither bodies in memory nor work on the
    event loop. The probes and `/metrics` are never refused: a worker at its limit is busy, not dead or unready, and
    its metrics say how busy.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit
        self.active = 0  # requests under way: read and written on the event loop only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNCAPPED_PATHS:
            await self.app(scope, receive, send)
            return
        if self.active >= self.limit:
            await self._refuse(send)
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1

    async def _refuse(self, send: Send) -> None:
        message = (
            f"this worker is answering {self.limit} requests already, its limit (CLF_MAX_CONCURRENT_REQUESTS); "
            f"retry after {RETRY_AFTER_SECONDS} s"
        )
        body = orjson.dumps(error_body("unavailable", message))
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"retry-after", str(RETRY_AFTER_SECONDS).encode()),
        ]
        await send({"type": "http.response.start", "status": 503, "headers": headers})
        await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, start: Message, body: bytes, scope: Scope) -> None:
    status = int(start["status"])
    if not _is_error_object(body):
        code = CODE_BY_STATUS.get(status, "internal" if status >= 500 else "invalid_input")
        body = orjson.dumps(error_body(code, _message(status, body, scope)))
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() not in (b"content-length", b"content-type")]
    headers += [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _is_error_object(body: bytes) -> bool:
    try:
        decoded = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(decoded, dict) and isinstance(decoded.get("error"), dict)


def _message(status: int, body: bytes, scope: Scope) -> str:
    """What the original body said, unwrapped from BentoML's array or detail forms."""
    text: Any = body.decode("utf-8", "replace").strip()
    with contextlib.suppress(orjson.JSONDecodeError):
        text = orjson.loads(body)
    while isinstance(text, list) and text:
        text = text[0]
    if isinstance(text, dict):
        text = text.get("error") or text.get("detail") or text
    text = str(text) if text else ""
    if status == 404:
        return f"no endpoint {scope.get('method')} {scope.get('path')}; see docs/api.md or /docs.json for the API"
    if status == 405:
        return f"{scope.get('method')} is not allowed on {scope.get('path')}"
    return text or f"HTTP {status}"


class DirectRoutes:
    """The service's own routes (`service.app`, plain ASGI apps, which answer CONTRACT.md's bodies themselves),
    called as soon as the middlewares above let a request in, past `ErrorBodyMiddleware`, BentoML's context
    middleware, its router, the mount and the mounted app's own middlewares and router, which a request of ours
    passes through for nothing (a fifth of a one-row `/predict`'s CPU). A request that is not an exact match, by
    path and method, takes the way it took before: a wrong method (405), a missing or extra slash (the redirect),
    BentoML's routes and 404 are answered as they were."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self._fixed: dict[tuple[str, str], ASGIApp] = {}  # (method, path) -> app, for paths without parameters
        self._parametrised: list[Route] = []
        for route in routes:
            if not isinstance(route, Route):
                raise TypeError(f"{route!r}: DirectRoutes calls starlette Routes only")
            if route.param_convertors:
                self._parametrised.append(route)
            else:
                self._fixed.update(((method, route.path), route.app) for method in route.methods or ())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            app = self._fixed.get((scope["method"], scope["path"]))
            if app is not None:
                await app(scope, receive, send)
                return
            for route in self._parametrised:
                match, child_scope = route.matches(scope)
                if match is Match.FULL:
                    scope.update(child_scope)
                    await route.app(scope, receive, send)
                    return
        await self.app(scope, receive, send)
