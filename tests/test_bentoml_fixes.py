"""The fixes of service/bentoml_fixes.py: BentoML's TimeoutMiddleware leaves no timer behind a request, uvicorn
closes a connection whose request headers do not arrive within the header timeout, every fix is in effect once the
service is imported, and a library whose patched internals moved or changed is refused at import."""

from __future__ import annotations

import asyncio
import http.client
import logging
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import anyio
import pytest
import uvicorn
from starlette.testclient import TestClient

from service import bentoml_fixes
from service.bentoml_fixes import _call
from tests.helpers import digits_rows


def live_timeout_timers() -> int:
    loop = asyncio.get_running_loop()
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    return sum(1 for h in scheduled if not h.cancelled() and "Timeout._on_timeout" in repr(h._callback))


def test_answered_requests_leave_no_timeout_timer(api: TestClient) -> None:
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    assert TimeoutMiddleware.__call__ is _call
    for _ in range(20):
        assert (
            api.post("/predict", json={"model": "digits", "instances": digits_rows(1)[0].tolist()}).status_code == 200
        )
    assert api.portal.call(_count_in_loop) == 0  # type: ignore[union-attr]


async def _count_in_loop() -> int:
    return live_timeout_timers()


HEADER_TIMEOUT_S = 0.5


@pytest.fixture
def uvicorn_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """uvicorn, as BentoML runs it (on a socket it is given), with the header timeout of `bentoml_fixes`, serving an
    app whose `/held` answers once `HELD.release` is set; yields its address."""
    bentoml_fixes.time_out_slow_headers(HEADER_TIMEOUT_S)
    monkeypatch.setattr(bentoml_fixes.Protocol, "clf_header_timeout", HEADER_TIMEOUT_S)
    HELD.release.clear()
    HELD.entered.clear()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(held_app, log_config=None, timeout_keep_alive=60))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]})
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn to start")
        yield sock.getsockname()
    finally:
        HELD.release.set()
        server.should_exit = True
        thread.join()
        sock.close()


class Held:
    entered = threading.Event()
    release = threading.Event()


HELD = Held()


async def held_app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    if scope["path"] == "/held":
        HELD.entered.set()
        await anyio.to_thread.run_sync(HELD.release.wait)
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def closed_by_server(connection: socket.socket, trickle: bytes) -> bool:
    """Whether the server closed `connection`, sending it `trickle` first (a byte more of never-ending headers)."""
    try:
        if trickle:
            connection.sendall(trickle)
        return connection.recv(1024) == b""
    except TimeoutError:
        return False
    except ConnectionError:
        return True


@pytest.mark.parametrize("trickle", [b"X", b""], ids=["slow headers", "silent"])
def test_a_connection_whose_headers_do_not_arrive_in_time_is_closed(
    uvicorn_server: tuple[str, int], trickle: bytes
) -> None:
    with socket.create_connection(uvicorn_server) as connection:
        connection.settimeout(0.1)
        if trickle:
            connection.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
        wait_for(lambda: closed_by_server(connection, trickle), "the server to close the connection")


def test_a_request_answered_after_the_header_timeout_keeps_its_connection(uvicorn_server: tuple[str, int]) -> None:
    """The timeout covers a request's headers only: a slow answer is not cut, and the connection then serves the next
    request, whose headers get the whole timeout again."""
    connection = http.client.HTTPConnection(*uvicorn_server, timeout=60)
    connection.request("GET", "/held")
    wait_for(HELD.entered.is_set, "the request to reach the app")
    with socket.create_connection(uvicorn_server) as later:  # opened after: closed once the timeout has passed
        later.settimeout(0.1)
        later.sendall(b"GET / HTTP/1.1\r\n")
        wait_for(lambda: closed_by_server(later, b"X"), "the later connection to be closed")
    HELD.release.set()
    assert connection.getresponse().read() == b"ok"
    connection.request("GET", "/")
    assert connection.getresponse().read() == b"ok"
    connection.close()


class ManualClock:
    """The loop's `time` and `call_later` as the header timeout uses them, its timers run by hand in time order."""

    def __init__(self) -> None:
        self.now = 0.0
        self.timers: list[tuple[float, Callable[[], None]]] = []

    def time(self) -> float:
        return self.now

    def call_later(self, delay: float, callback: Callable[..., None], *args: Any) -> Any:
        timer = (self.now + delay, lambda: callback(*args))
        self.timers.append(timer)
        return SimpleNamespace(cancel=lambda: self.timers.remove(timer))

    def run_next_timer(self) -> None:
        self.timers.sort(key=lambda timer: timer[0])
        self.now, run = self.timers.pop(0)
        run()


def test_the_header_timeout_counts_from_the_last_answer_with_one_timer_per_connection() -> None:
    """Requests arm no timer of their own: the connection's one timer, when it fires during a later wait, waits for
    the rest of that wait's timeout; during a request it lets the request's answer start the next wait."""
    clock = ManualClock()
    closed: list[bool] = []
    transport = SimpleNamespace(is_closing=lambda: bool(closed), close=lambda: closed.append(True))
    protocol = SimpleNamespace(loop=clock, transport=transport, clf_header_timeout=10.0, clf_header_timer=None)
    bentoml_fixes._wait_for_headers(protocol)  # the connection opens at 0
    for answered_at in range(1, 8):  # requests at 0.5, 1.5, ..., each answered a second later
        clock.now = answered_at - 0.5
        bentoml_fixes._headers_arrived(protocol)
        clock.now = answered_at
        bentoml_fixes._wait_for_headers(protocol)
        assert len(clock.timers) == 1
    clock.run_next_timer()  # at 10: 3 s into the wait that began at the last answer (7)
    assert (clock.now, closed, [at for at, _ in clock.timers]) == (10.0, [], [17.0])
    clock.run_next_timer()
    assert (clock.now, closed) == (17.0, [True])

    clock, closed[:] = ManualClock(), []
    protocol.loop, protocol.clf_header_timer = clock, None
    bentoml_fixes._wait_for_headers(protocol)
    bentoml_fixes._headers_arrived(protocol)  # a request whose answer takes longer than the timeout
    clock.run_next_timer()
    assert (closed, clock.timers) == ([], [])
    clock.now = 25.0
    bentoml_fixes._wait_for_headers(protocol)  # its answer, at 25: the next wait gets the whole timeout
    clock.run_next_timer()
    assert (clock.now, closed) == (35.0, [True])


def test_every_fix_is_in_effect_once_the_service_is_imported(api: TestClient) -> None:
    from bentoml._internal.configuration.containers import BentoMLContainer
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    from service.home import bentoml_home

    assert TimeoutMiddleware.__call__ is _call
    protocol = bentoml_fixes.Protocol
    assert protocol.connection_made is bentoml_fixes._connection_made_timed
    assert protocol.connection_lost is bentoml_fixes._connection_lost_timed
    assert protocol.on_headers_complete is bentoml_fixes._on_headers_complete_timed
    assert protocol.on_response_complete is bentoml_fixes._on_response_complete_timed
    assert protocol.clf_header_timeout > 0  # type: ignore[attr-defined]
    assert bentoml_fixes.Cycle.send is bentoml_fixes._send_whole
    middleware = [m.cls.__name__ for m in api.app.user_middleware]  # type: ignore[attr-defined]
    assert "OpenTelemetryMiddleware" not in middleware and "TimeoutMiddleware" in middleware  # spans are off
    assert logging.getLogger("uvicorn.access").propagate is False
    assert Path(BentoMLContainer.bentoml_home.get()).resolve() == bentoml_home()[0].resolve()


def test_the_installed_libraries_are_those_the_fixes_were_written_for() -> None:
    bentoml_fixes.check_targets(*bentoml_fixes.TARGETS)


def _without_keep_alive(self: Any) -> None:
    self.transport.close()


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda t: (type("Middleware", (), {"__init__": t[0].__init__}), *t[1:]), "has no _set_timer_out"),
        (lambda t: (t[0], _without_keep_alive, *t[2:]), r"TimeoutMiddleware.__call__ changed"),
        (
            lambda t: (*t[:2], {**t[2], "on_response_complete": _without_keep_alive}, t[3]),
            r"on_response_complete no longer uses \['timeout_keep_alive_task'\]",
        ),
        (lambda t: (*t[:2], {**t[2], "connection_made": None}, t[3]), r"connection_made no longer uses"),
        (lambda t: (*t[:3], SimpleNamespace()), "BentoMLContainer has no settable bentoml_home"),
    ],
    ids=["timer callback gone", "timeout middleware rewritten", "keep-alive renamed", "method gone", "store moved"],
)
def test_a_moved_or_changed_target_is_refused(change: Callable[[tuple[Any, ...]], tuple[Any, ...]], named: str) -> None:
    with pytest.raises(bentoml_fixes.BentoMLInternalsChanged, match=named):
        bentoml_fixes.check_targets(*change(bentoml_fixes.TARGETS))


def test_a_moved_target_stops_the_import() -> None:
    """An upgrade that moves a patched internal fails when the service module is imported, before any server runs."""
    code = (
        "from bentoml._internal.server.http import traffic\n"
        "del traffic.TimeoutMiddleware._set_timer_out\n"
        "import service.bentoml_fixes\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1], capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "BentoMLInternalsChanged: service/bentoml_fixes.py was written for other" in result.stderr
    assert "TimeoutMiddleware has no _set_timer_out" in result.stderr


class RecordingTransport:
    """What uvicorn writes to a connection, write by write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed_after = -1  # writes before close(); -1: open

    def write(self, data: bytes) -> None:
        assert self.closed_after < 0, "written after close"
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed_after = len(self.writes)

    def is_closing(self) -> bool:
        return self.closed_after >= 0


def answer_on(transport: RecordingTransport, parts: list[bytes], keep_alive: bool) -> Any:
    """Send an answer of `parts` through uvicorn's httptools cycle writing to `transport`; the cycle."""
    from uvicorn.protocols.http.flow_control import FlowControl

    bentoml_fixes.write_answers_whole()  # as the service's import does
    cycle = bentoml_fixes.Cycle(
        scope={"type": "http", "method": "GET", "http_version": "1.1", "path": "/", "headers": []},  # type: ignore[typeddict-item]
        transport=transport,  # type: ignore[arg-type]
        flow=FlowControl(transport),  # type: ignore[arg-type]
        logger=logging.getLogger("test"),
        access_logger=logging.getLogger("test"),
        access_log=False,
        default_headers=[],
        message_event=asyncio.Event(),
        expect_100_continue=False,
        keep_alive=keep_alive,
        on_response=lambda: None,
    )
    size = str(len(b"".join(parts))).encode()

    async def send_all() -> None:
        await cycle.send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", size)]})
        for i, part in enumerate(parts):
            await cycle.send({"type": "http.response.body", "body": part, "more_body": i < len(parts) - 1})

    asyncio.run(send_all())
    return cycle


@pytest.mark.parametrize("keep_alive", [True, False], ids=["keep-alive", "close"])
@pytest.mark.parametrize("parts", [[b'{"answer": 1}'], [b"first ", b"second ", b"third"]], ids=["whole", "streamed"])
def test_an_answer_is_written_with_its_head_in_one_write(parts: list[bytes], keep_alive: bool) -> None:
    transport = RecordingTransport()
    cycle = answer_on(transport, parts, keep_alive)
    head, first = transport.writes[0].split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 200 OK") and first == parts[0]
    assert transport.writes[1:] == parts[1:]  # a streamed answer's later parts are written as they come
    assert cycle.transport is transport
    assert transport.closed_after == (-1 if keep_alive else len(parts))
