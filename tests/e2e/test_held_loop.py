"""One worker's event loop stays free for `/readyz` while clients send it 8 MB bodies (issue 17, part 4), and a
connection that sends its headers slowly is closed.

The one timing assertion of the suite, asked for by the issue: `/readyz` answers within `READYZ_BOUND_S` at the
median and the 95th percentile of many samples while four clients post 8 MB bodies ending in NaN in closed loops.
Before the fix each such body held the loop for about a second (parsed twice, the second time by `json.loads`),
and `/readyz` took 0.6 s at the median.
"""

from __future__ import annotations

import json
import multiprocessing
import socket
import statistics
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import TIMEOUT, serving, wait_until
from tests.helpers import digits_rows

pytestmark = pytest.mark.e2e

CLIENTS = 4
BODY_BYTES = 8 * 1024 * 1024
SAMPLES = 200
READYZ_BOUND_S = 0.05
HEADER_TIMEOUT_S = 2


@pytest.fixture(scope="module")
def url(e2e_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One worker, default settings but a short header timeout (the slow-headers test waits for it)."""
    with serving(
        e2e_env, tmp_path_factory.mktemp("serve-held-loop"), header_timeout_seconds=str(HEADER_TIMEOUT_S)
    ) as u:
        yield u


def nan_body() -> bytes:
    """About `BODY_BYTES` of digits rows, the last value NaN (as Python's `json.dumps` writes it): a common client
    bug, and the slowest body to parse."""
    rows = digits_rows()[0].tolist()
    row_bytes = len(json.dumps(rows[0])) + 2
    instances = [rows[i % len(rows)] for i in range(BODY_BYTES // row_bytes)]
    instances[-1] = [*instances[-1][:-1], float("nan")]
    return json.dumps({"model": "digits", "instances": instances}).encode()


def send_bodies(url: str, stop: Any, answered: Any, unexpected: Any) -> None:
    """`CLIENTS` clients posting `nan_body()` to `/predict` in closed loops until `stop` is set, counting answers and
    those other than 400 `invalid_input`. Run in a process of its own, so that the clients do not hold the GIL
    of the process that times `/readyz`."""
    body = nan_body()

    def send() -> None:
        with httpx.Client(timeout=TIMEOUT, headers={"content-type": "application/json"}) as client:
            while not stop.is_set():
                response = client.post(f"{url}/predict", content=body)
                with answered.get_lock():
                    answered.value += 1
                if (response.status_code, response.json()["error"]["code"]) != (400, "invalid_input"):
                    with unexpected.get_lock():
                        unexpected.value += 1

    clients = [threading.Thread(target=send) for _ in range(CLIENTS)]
    for client in clients:
        client.start()
    for client in clients:
        client.join()


def test_readyz_answers_quickly_while_clients_send_8_mb_bodies_ending_in_nan(url: str) -> None:
    body = nan_body()
    assert body.endswith(b"NaN]]}") and len(body) > BODY_BYTES * 0.9
    context = multiprocessing.get_context("spawn")
    stop, answered, unexpected = context.Event(), context.Value("i", 0), context.Value("i", 0)
    senders = context.Process(target=send_bodies, args=(url, stop, answered, unexpected))
    senders.start()
    latencies: list[float] = []
    try:
        wait_until(lambda: answered.value >= CLIENTS, "the clients' first answers")
        answered_before = answered.value
        with httpx.Client(timeout=TIMEOUT) as probe:
            for _ in range(SAMPLES):
                started = time.perf_counter()
                assert probe.get(f"{url}/readyz").status_code == 200
                latencies.append(time.perf_counter() - started)
        answered_while_sampling = answered.value - answered_before
    finally:
        stop.set()
        senders.join(TIMEOUT.read)
        senders.kill()
    assert unexpected.value == 0, "some 8 MB bodies were not answered 400 invalid_input"
    assert answered_while_sampling >= CLIENTS, "the clients were not sending while /readyz was sampled"
    latencies.sort()
    median, p95 = statistics.median(latencies), latencies[int(0.95 * len(latencies)) - 1]
    print(f"/readyz under load: median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms, max {latencies[-1] * 1000:.1f} "
          f"ms; {answered_while_sampling} bodies answered while sampling")  # fmt: skip
    assert median < READYZ_BOUND_S and p95 < READYZ_BOUND_S, (median, p95)


def test_a_connection_sending_its_headers_slowly_is_closed(url: str) -> None:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=TIMEOUT.read) as connection:
        connection.sendall(b"GET /readyz HTTP/1.1\r\nHost: localhost\r\n")
        connection.settimeout(0.5)

        def closed() -> bool:
            try:
                connection.sendall(b"X")  # one more byte of a header that never ends
                return connection.recv(1024) == b""
            except TimeoutError:
                return False
            except ConnectionError:
                return True

        wait_until(closed, f"the server to close a connection whose headers took over {HEADER_TIMEOUT_S} s", 60)
