"""Request bodies: decoded without the slow `json.loads` fallback past `FALLBACK_MAX_BYTES`, a bare NaN or
Infinity in a large body refused before any decode, and large bodies still answered like small ones."""

from __future__ import annotations

import asyncio
import gc
import json
import math
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from service import bodies
from service.bodies import FALLBACK_MAX_BYTES, SCAN_BYTES, bare_not_json_number, decode_json
from service.classifiers import InvalidInputError
from tests.helpers import digits_rows

LARGE_ROWS = 1000  # digits rows: about 200 KB of JSON, over FALLBACK_MAX_BYTES


def large_digits_body(last_value: str = "0.0") -> bytes:
    """`LARGE_ROWS` digits rows as JSON, the last row's last value written as `last_value`."""
    body = orjson.dumps({"model": "digits", "instances": digits_rows(LARGE_ROWS)[0].tolist()})
    assert len(body) > FALLBACK_MAX_BYTES and body.endswith(b"]]}")
    head = body[: body.rindex(b",")]
    return head + b"," + last_value.encode() + b"]]}"


def decode(body: bytes) -> Any:
    return asyncio.run(decode_json(body))


def bare(body: bytes) -> tuple[bytes, int] | None:
    return asyncio.run(bare_not_json_number(body))


@pytest.fixture
def no_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fails the test if the slow `json.loads` decodes anything."""

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("json.loads decoded a large body")

    monkeypatch.setattr(json, "loads", refuse)


def test_a_small_body_with_nan_is_decoded_so_that_validation_names_the_row() -> None:
    decoded = decode(b'{"instances": [[1.0, NaN, -Infinity]]}')
    assert math.isnan(decoded["instances"][0][1]) and decoded["instances"][0][2] == -math.inf


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_a_large_body_with_a_bare_nan_or_infinity_is_refused_undecoded(no_fallback: None, token: str) -> None:
    body = large_digits_body(token)
    with pytest.raises(InvalidInputError) as raised:
        decode(body)
    assert f"holds {token} at byte {body.rindex(token.encode())}," in raised.value.message
    assert "NaN and Infinity are not JSON" in raised.value.message


def test_nan_inside_a_string_of_a_large_body_is_text(no_fallback: None) -> None:
    body = large_digits_body()[:-1] + b', "request_id": "NaN Infinity"}'
    assert bare(body) is None
    assert decode(body)["request_id"] == "NaN Infinity"


def test_a_backslash_before_nan_leaves_the_verdict_to_orjson(no_fallback: None) -> None:
    """An escaped quote before the token makes counting quotes unsound: orjson's error position names it."""
    body = b'{"request_id": "a \\" b", "instances": [' + b"0.0, " * 20_000 + b"NaN]}"
    assert bare(body) is None
    with pytest.raises(InvalidInputError, match=f"holds NaN at byte {len(body) - 5},"):
        decode(body)


@pytest.mark.parametrize("token", [b"NaN", b"Infinity"])
@pytest.mark.parametrize("shift", [-8, -3, -1, 0, 1, SCAN_BYTES])
def test_the_scan_finds_a_token_wherever_its_steps_cut_the_body(token: bytes, shift: int) -> None:
    head = b'{"a": "x", "instances": [0,'
    at = SCAN_BYTES + shift
    body = head + b" " * (at - len(head)) + token + b"]}"
    assert bare(body) == (token, at)
    in_a_string = b'{"a": "' + b" " * (at - 7) + token + b'", "b": ' + token + b"}"  # the first one is text
    assert bare(in_a_string) is None


def test_other_json_errors_of_a_large_body_are_orjsons(no_fallback: None) -> None:
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        decode(large_digits_body("1e999"))


def test_the_collector_is_on_after_a_large_decode_whatever_its_outcome() -> None:
    assert gc.isenabled()
    decode(large_digits_body())
    assert gc.isenabled()
    with pytest.raises(InvalidInputError):
        decode(large_digits_body("[oops"))
    assert gc.isenabled()
    gc.disable()
    try:
        decode(large_digits_body())
        assert not gc.isenabled()  # paused, not switched on: whoever turned it off decides
    finally:
        gc.enable()


def test_large_bodies_are_answered_like_small_ones(api: TestClient) -> None:
    assert len(large_digits_body()) > bodies.FALLBACK_MAX_BYTES
    ok = api.post("/predict", content=large_digits_body())
    assert ok.status_code == 200, ok.text
    assert len(ok.json()["predictions"]) == LARGE_ROWS
    refused = api.post("/predict", content=large_digits_body("NaN"))
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "invalid_input" and "holds NaN" in error["message"]
    small = api.post("/predict", content=b'{"model": "digits", "instances": [[NaN' + b", 1.0" * 63 + b"]]}")
    assert small.status_code == 400
    assert small.json()["error"]["field"] == "instances[0].pixel_0"  # small bodies: row and feature named
