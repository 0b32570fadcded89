"""Fixes to BentoML 1.4 and the uvicorn it runs, applied when the service module is imported (both are pinned): the
one module that writes to their internals, each change checked by tests/test_bentoml_fixes.py or tests/test_home.py.

The traffic timeout. `TimeoutMiddleware` arms `loop.call_later(timeout, ...)` for every request and never cancels
it. The timer handle holds a copy of the request's context variables, so each request's context stays alive for the
traffic timeout (30 s here): at ~1,000 requests/s that is tens of thousands of live objects that every full
garbage collection walks, the periodic 100-500 ms stalls BENTOML-NOTES.md measured. This version is an
`asyncio.timeout` around the app in the request's own task (BentoML's starts a second task per request), disarmed
when the answer starts, and otherwise behaves the same (504 when no answer started within the timeout).

The store. `bentoml serve` and `bentoml build` resolve BentoML's home before they import the service; this package
resolves it by its own rule (`service.home`): the CLI's cached store is pointed at the same folder.

The metrics folder. BentoML gives every server `$BENTOML_HOME/prometheus_multiproc_dir` and empties it when a server
starts, so a second server on one checkout deleted the first one's metric files under it. Each server (its arbiter,
the process that imports the service before it starts the workers) gets a folder of its own under it instead,
`server-<arbiter pid>`; the folders of servers that are gone are removed when the next one starts.

The header timeout. uvicorn has no timeout on reading a request's headers: `timeout_keep_alive` (the only one
BentoML passes it) is cancelled by the first byte of a request, so a client that sends its headers a byte at a time
holds the connection, and its socket, for ever. ASGI middleware cannot help: it runs once the headers are complete. Here
each connection of uvicorn's httptools protocol (the one it picks when httptools is installed, as here) is closed
when a request's headers are not complete within `header_timeout` seconds of the connection opening or of the
previous answer; a request's body and its answer are the traffic timeout's.

Less per request. uvicorn writes an answer's head and its body with a send each: the head is held and written with
the body's first part. Its access logger inherits the root logger's handler and formats a line per answer that is
never shown: it is cut from the root. BentoML's OpenTelemetry middleware, with spans off, only finds each request's
URL excluded: the worker's app is built without it.

An upgrade that moves or changes a patched internal must fail loudly, not lose a fix silently: `check_targets` runs
when this module is imported and raises `BentoMLInternalsChanged`, naming the target, when one is missing or its code
no longer does what the replacement was written against.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil
from bentoml._internal.configuration.containers import BentoMLContainer
from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse
from uvicorn.protocols.http import auto, httptools_impl

from .errors import TIMEOUT
from .home import SERVER_FOLDER_PREFIX, server_metrics_folder


class BentoMLInternalsChanged(RuntimeError):
    """An internal of BentoML or uvicorn that a fix replaces or wraps has moved or changed."""


# What each patched function uses, as written for the pinned versions. `TimeoutMiddleware.__call__` is replaced
# whole: its names must be exactly these, or BentoML changed what `_call` re-implements. The uvicorn methods are
# wrapped: the attributes the wrappers read must still be set or used by them.
_TIMEOUT_CALL_NAMES = {
    "JSONResponse", "TimeoutError", "_set_timer_out", "app", "asyncio", "call_later", "cancel", "create_future",
    "ensure_future", "get_running_loop", "timeout",
}  # fmt: skip
_PROTOCOL_USES = {
    "__init__": {"loop", "transport", "timeout_keep_alive_task"},
    "connection_made": {"transport"},
    "connection_lost": {"transport"},
    "on_headers_complete": {"transport"},
    "on_response_complete": {"transport", "timeout_keep_alive_task"},
    "RequestResponseCycle.send": {"transport", "write", "response_started"},
}
_CONTAINER_ENTRIES = (
    "bentoml_home", "model_store_dir", "model_store", "bento_store_dir", "bento_store", "prometheus_multiproc_dir",
)  # fmt: skip


def _names(function: Any) -> set[str]:
    return set(getattr(getattr(function, "__code__", None), "co_names", ()))


def check_targets(middleware: Any, timeout_call: Any, protocol: Mapping[str, Any], container: Any) -> None:
    """Raise `BentoMLInternalsChanged` unless BentoML's TimeoutMiddleware class `middleware` and its own
    `timeout_call` (its `__call__` before the fix), the methods of uvicorn's httptools protocol by name (before the
    fix) and BentoML's configuration `container` are as the fixes were written for."""
    problems = []
    if not callable(getattr(middleware, "_set_timer_out", None)):
        problems.append("bentoml's TimeoutMiddleware has no _set_timer_out")
    if _names(timeout_call) != _TIMEOUT_CALL_NAMES:
        problems.append("bentoml's TimeoutMiddleware.__call__ changed: review the replacement `_call`")
    if not {"app", "timeout"} <= _names(middleware.__init__):
        problems.append("bentoml's TimeoutMiddleware no longer sets app and timeout")
    for method, attributes in _PROTOCOL_USES.items():
        missing = attributes - _names(protocol.get(method))
        if missing:
            problems.append(f"uvicorn's {method} no longer uses {sorted(missing)}")
    for entry in _CONTAINER_ENTRIES:
        if not all(callable(getattr(getattr(container, entry, None), name, None)) for name in ("get", "set")):
            problems.append(f"bentoml's BentoMLContainer has no settable {entry}")
    if problems:
        raise BentoMLInternalsChanged(
            "service/bentoml_fixes.py was written for other BentoML/uvicorn internals: " + "; ".join(problems)
        )


async def _call(self: Any, scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] not in ("http", "websocket"):
        await self.app(scope, receive, send)
        return
    # in the request's own task: BentoML's runs the app in a second task per request, a task and a future more
    deadline = asyncio.timeout(self.timeout)
    answering = False

    async def _send(message: Any) -> None:
        nonlocal answering
        if not answering:  # the timeout bounds the wait for an answer's start, as BentoML's does
            answering = True
            deadline.reschedule(None)
        await send(message)

    try:
        async with deadline:
            await self.app(scope, receive, _send)
    except TimeoutError:
        if answering or not deadline.expired():  # the app's own TimeoutError, or one after its answer began
            raise
        body = {"error": {"code": TIMEOUT, "message": f"no answer within {self.timeout} s"}}
        await JSONResponse(body, status_code=504)(scope, receive, send)


def use_store(home: Path) -> None:
    """Point BentoML's home, model store and bento store at `home`, whatever its CLI resolved before."""
    from bentoml._internal.bento import BentoStore
    from bentoml._internal.models import ModelStore

    if Path(BentoMLContainer.bentoml_home.get()).resolve() == home.resolve():
        return
    BentoMLContainer.bentoml_home.set(str(home))
    BentoMLContainer.model_store_dir.set(str(home / "models"))
    BentoMLContainer.model_store.set(ModelStore(str(home / "models")))
    BentoMLContainer.bento_store_dir.set(str(home / "bentos"))
    BentoMLContainer.bento_store.set(BentoStore(str(home / "bentos")))


def metrics_folder_of_this_server(home: Path) -> Path | None:
    """In a server's arbiter (no `PROMETHEUS_MULTIPROC_DIR` yet: its workers get it from the arbiter), make its
    metrics folder `server-<pid>` under BentoML's, remove those of servers that are gone; the folder, or None
    elsewhere (a worker, a test or a tool that chose a folder)."""
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        return None
    parent = home / "prometheus_multiproc_dir"
    if parent.is_dir():
        for folder in parent.glob(f"{SERVER_FOLDER_PREFIX}*"):
            pid = folder.name.removeprefix(SERVER_FOLDER_PREFIX)
            if pid.isdigit() and not psutil.pid_exists(int(pid)):
                shutil.rmtree(folder, ignore_errors=True)
    folder = server_metrics_folder(home, os.getpid())
    BentoMLContainer.prometheus_multiproc_dir.set(str(folder))
    return folder


Protocol = httptools_impl.HttpToolsProtocol
Cycle = httptools_impl.RequestResponseCycle
# the targets as the libraries define them, before `apply` replaces or wraps them
TARGETS = (
    traffic.TimeoutMiddleware,
    traffic.TimeoutMiddleware.__call__,
    {
        method: getattr(Cycle, method.partition(".")[2], None) if method.startswith("RequestResponseCycle.")
        else getattr(Protocol, method, None)
        for method in _PROTOCOL_USES
    },
    BentoMLContainer,
)  # fmt: skip
check_targets(*TARGETS)
_cycle_send = Cycle.send
_connection_made = Protocol.connection_made
_connection_lost = Protocol.connection_lost
_on_headers_complete = Protocol.on_headers_complete
_on_response_complete = Protocol.on_response_complete


def _wait_for_headers(protocol: Any) -> None:
    """The wait for a request's headers starts now; one timer per connection checks it, re-armed only when it
    fires (a timer armed and cancelled per request cost more than the check)."""
    protocol.clf_waiting_since = protocol.loop.time()
    if protocol.clf_header_timer is None:
        protocol.clf_header_timer = protocol.loop.call_later(protocol.clf_header_timeout, _check_headers, protocol)


def _check_headers(protocol: Any) -> None:
    """Close the connection if its wait for headers has lasted the timeout; else check again when it would."""
    protocol.clf_header_timer = None
    if protocol.clf_waiting_since is None:  # a request is in hand: its answer starts the next wait
        return
    left = protocol.clf_waiting_since + protocol.clf_header_timeout - protocol.loop.time()
    if left > 0:
        protocol.clf_header_timer = protocol.loop.call_later(left, _check_headers, protocol)
    elif not protocol.transport.is_closing():
        protocol.transport.close()


def _headers_arrived(protocol: Any) -> None:
    protocol.clf_waiting_since = None


def _connection_made_timed(self: Any, transport: Any) -> None:
    self.clf_header_timer = None
    _connection_made(self, transport)
    _wait_for_headers(self)


def _connection_lost_timed(self: Any, exc: Exception | None) -> None:
    _headers_arrived(self)
    if self.clf_header_timer is not None:
        self.clf_header_timer.cancel()
        self.clf_header_timer = None
    _connection_lost(self, exc)


def _on_headers_complete_timed(self: Any) -> None:
    _headers_arrived(self)
    _on_headers_complete(self)


def _on_response_complete_timed(self: Any) -> None:
    _on_response_complete(self)
    if self.timeout_keep_alive_task is not None:  # idle, waiting for the next request (none was pipelined)
        _wait_for_headers(self)


def time_out_slow_headers(header_timeout: float) -> None:
    """Give uvicorn's httptools protocol a timeout of `header_timeout` seconds on reading a request's headers."""
    if auto.AutoHTTPProtocol is not Protocol:
        raise RuntimeError("uvicorn does not use httptools here, and the header timeout is written for it")
    Protocol.clf_header_timeout = header_timeout  # type: ignore[attr-defined]
    Protocol.connection_made = _connection_made_timed  # type: ignore[method-assign]
    Protocol.connection_lost = _connection_lost_timed  # type: ignore[method-assign]
    Protocol.on_headers_complete = _on_headers_complete_timed  # type: ignore[method-assign]
    Protocol.on_response_complete = _on_response_complete_timed  # type: ignore[method-assign]


class _HeldWrites:
    """A connection's transport whose writes are held until `release`, then written as one."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.parts: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)

    def release(self) -> None:
        if self.parts:
            self.transport.write(b"".join(self.parts))
            self.parts.clear()

    def close(self) -> None:
        self.release()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


async def _send_whole(self: Any, message: Any) -> None:
    if message["type"] == "http.response.start" and not self.response_started:
        held = self.transport = _HeldWrites(self.transport)  # the head waits for the body's first part
        try:
            await _cycle_send(self, message)
        except BaseException:
            self.transport = held.transport
            raise
        return
    try:
        await _cycle_send(self, message)
    finally:
        if isinstance(self.transport, _HeldWrites):
            self.transport.release()
            self.transport = self.transport.transport


def write_answers_whole() -> None:
    """uvicorn writes an answer's head and its body with one send each; here the head is held and written with the
    body's first part: one system call per answer instead of two (12 % of the CPU of a bare ASGI app answering a
    one-row `/predict` body, measured with wrk)."""
    Cycle.send = _send_whole  # type: ignore[method-assign]


def quiet_uvicorn_access_log() -> None:
    """uvicorn formats the arguments of an access log line for every answer whenever its `uvicorn.access` logger has
    a handler, its ancestors' included, and BentoML gives the root logger one; the lines are never shown (BentoML's
    own access log is `CLF_ACCESS_LOG`). Cut from the root, the logger has none, and uvicorn skips the line."""
    logging.getLogger("uvicorn.access").propagate = False


def skip_tracing_middleware() -> None:
    """Leave BentoML's OpenTelemetry middleware out of the app it builds: with every URL excluded (spans off, as
    `CLF_TRACE_REQUESTS=false` configures it), it rebuilds each request's URL from the scope only to find it
    excluded (1.5 % of a one-row `/predict`'s samples)."""
    from _bentoml_impl.server.app import ServiceAppFactory  # the worker's import: the arbiter builds no app

    listed = ServiceAppFactory.__dict__.get("middlewares")
    middlewares = listed.fget if isinstance(listed, property) else None
    if getattr(middlewares, "clf_without_tracing", False):
        return
    if middlewares is None or "OpenTelemetryMiddleware" not in _names(middlewares):
        raise BentoMLInternalsChanged(
            "service/bentoml_fixes.py was written for other BentoML internals: ServiceAppFactory.middlewares no "
            "longer adds OpenTelemetryMiddleware"
        )
    every = middlewares

    def without_tracing(factory: Any) -> list[Any]:
        return [m for m in every(factory) if getattr(m.cls, "__name__", "") != "OpenTelemetryMiddleware"]

    without_tracing.clf_without_tracing = True  # type: ignore[attr-defined]
    ServiceAppFactory.middlewares = property(without_tracing)


def apply(home: Path, header_timeout: float, trace_requests: bool) -> Path | None:
    """Every fix: the traffic timeout's timer cancelled, a timeout of `header_timeout` seconds on reading a request's
    headers, answers written whole, no uvicorn access log lines built for nothing, no tracing middleware unless
    `trace_requests`, the store at `home`, this server's own metrics folder (which it returns in a server's arbiter,
    else None)."""
    traffic.TimeoutMiddleware.__call__ = _call  # type: ignore[method-assign]
    time_out_slow_headers(header_timeout)
    write_answers_whole()
    quiet_uvicorn_access_log()
    use_store(home)
    folder = metrics_folder_of_this_server(home)
    if folder is None and not trace_requests:  # a worker, or a test: where the app is built
        skip_tracing_middleware()
    return folder
