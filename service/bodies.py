"""Request bodies decoded from JSON without holding the worker's event loop for long.

A worker answers every request, `/readyz` included, on one event loop, and a body is decoded on it: a thread would
not help, since orjson and `json` keep the GIL for the whole decode. So the cost of a decode is bounded instead.
orjson decodes every body. Python's `json`, which also reads `NaN` and `Infinity` (not JSON, but what Python's
`json.dumps` writes) so that validation can name the row and feature that hold one, is up to ten times slower and
decodes only bodies orjson refused of at most `FALLBACK_MAX_BYTES`. A larger body holding a bare `NaN` or `Infinity`
is refused before any decode, by a scan of its bytes in steps that let the loop run other tasks in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
from collections.abc import Iterator
from typing import Any

import orjson
from starlette.requests import Request

from .classifiers import InvalidInputError
from .errors import PayloadTooLargeError

FALLBACK_MAX_BYTES = 64 * 1024  # json.loads: at most ~20 ms of the loop for the slowest shapes (nested lists)
NOT_JSON_NUMBERS = (b"NaN", b"Infinity")  # `-Infinity` is found as its `Infinity`
SCAN_BYTES = 256 * 1024  # one step of the scan for them: about a millisecond of the event loop


async def decode_json(body: bytes | bytearray) -> Any:
    """The decoded body; NaN and Infinity are accepted in bodies up to `FALLBACK_MAX_BYTES`, so that validation can
    name where they are."""
    if len(body) > FALLBACK_MAX_BYTES:
        return await _decode_large(body)
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        error = exc
    try:
        # Python's json writes NaN and Infinity, a common client bug: parse them so that validation names the
        # row and feature, and monitoring counts them as non-finite inputs
        return json.loads(body)
    except (ValueError, RecursionError):  # RecursionError: nested deeper than Python's parser goes
        raise _not_json(error) from None


async def _decode_large(body: bytes | bytearray) -> Any:
    bare = await bare_not_json_number(body)
    if bare is not None:
        raise InvalidInputError(_not_json_number(*bare))
    try:
        with _collector_paused():
            return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        for token in (*NOT_JSON_NUMBERS, b"-Infinity"):
            if body.startswith(token, exc.pos):
                raise InvalidInputError(_not_json_number(token, exc.pos)) from None
        raise _not_json(exc) from None


async def bare_not_json_number(body: bytes | bytearray) -> tuple[bytes, int] | None:
    """The first `NaN` or `Infinity` of `body` and its offset, if it is surely outside the body's strings; None when
    there is none, or when it is inside a string or may be (a backslash before it): orjson then decides.

    With no backslash before it, every `"` before a token opens or closes a string, so an even count of them puts
    the token outside any. Each step reads `SCAN_BYTES` with byte searches in C (`memchr` for a token's first
    letter, which a body of numbers lacks), and the event loop runs other tasks between steps.
    """
    first: tuple[int, bytes] | None = None
    for start in range(0, len(body), SCAN_BYTES):
        stop = start + SCAN_BYTES
        found = [
            (at, token)
            for token in NOT_JSON_NUMBERS
            if body.find(token[:1], start, stop) >= 0 and (at := body.find(token, start, stop + len(token) - 1)) >= 0
        ]
        if found:
            first = min(found)
            break
        await asyncio.sleep(0)
    if first is None or body.find(b"\\", 0, first[0]) >= 0:
        return None
    at, token = first
    quotes = 0
    for start in range(0, at, SCAN_BYTES):
        stop = min(start + SCAN_BYTES, at)
        if body.find(b'"', start, stop) >= 0:  # memchr: counting, a byte loop, only where there are quotes
            quotes += body.count(b'"', start, stop)
        await asyncio.sleep(0)
    if quotes % 2:
        return None
    if token == b"Infinity" and body.endswith(b"-", 0, at):
        return b"-Infinity", at - 1
    return token, at


def _not_json(error: orjson.JSONDecodeError) -> InvalidInputError:
    return InvalidInputError(f"the body is not valid JSON ({error}); expected a JSON object")


def _not_json_number(token: bytes, at: int) -> str:
    return (
        f"the body holds {token.decode()} at byte {at}, and NaN and Infinity are not JSON; expected finite numbers "
        "(null for a missing value, where the model takes one)"
    )


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off while orjson decodes: each collection it would trigger walks the containers
    decoded so far (8 MB of `[0],` took 1.2 s with it, 0.27 s without). Safe because orjson holds the GIL
    throughout, so no other thread runs meanwhile."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def read_body(request: Request, max_bytes: int) -> bytearray:
    """The body, refusing bodies over `max_bytes` before reading them whole. Grown chunk by chunk rather than
    joined at the end: one copy of megabytes into fresh pages would hold the event loop for milliseconds."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLargeError(f"the body has {declared} bytes; at most {max_bytes} are accepted")
    body = bytearray()
    async for chunk in request.stream():
        if len(body) + len(chunk) > max_bytes:
            raise PayloadTooLargeError(f"the body is over {max_bytes} bytes; at most {max_bytes} are accepted")
        body += chunk
    return body
