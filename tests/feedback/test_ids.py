"""Prediction ids: time-ordered, unique, and telling when they were issued and whether they were logged."""

from __future__ import annotations

import os

import pytest

from service.feedback.ids import first_key_at, new_key, parse_id, prediction_id

NOW = 1_795_000_000.123


def test_an_id_tells_when_it_was_issued_and_whether_it_was_logged() -> None:
    for logged in (True, False):
        key = new_key(logged, NOW)
        ref = parse_id(prediction_id(key, 41))
        assert ref is not None
        assert (ref.key, ref.row, ref.logged) == (key, 41, logged)
        assert ref.issued_at == pytest.approx(NOW, abs=0.001)
        assert ref.id == f"{key}-41"


def test_keys_have_uuid7_layout_and_sort_by_time() -> None:
    keys = [new_key(True, NOW + step * 0.002) for step in range(50)]  # 2 ms apart
    assert keys == sorted(keys)
    assert all(len(k) == 32 and k[12] == "7" and k[16] in "89ab" for k in keys)
    assert len({new_key(True, NOW) for _ in range(10_000)}) == 10_000  # same millisecond, still unique


def test_first_key_at_separates_before_from_after() -> None:
    boundary = first_key_at(NOW)
    assert new_key(True, NOW - 0.002) < boundary <= new_key(True, NOW) < new_key(False, NOW + 0.002)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "nope",
        "0190f3a2c4d07e3a9b1c2d3e4f5a6b7c",  # no row
        "0190f3a2c4d07e3a9b1c2d3e4f5a6b7c-",
        "0190f3a2c4d07e3a9b1c2d3e4f5a6b7c-01",  # a leading zero: not an id this service writes
        "0190f3a2c4d04e3a9b1c2d3e4f5a6b7c-0",  # version 4, not 7
        "0190f3a2c4d07e3a1b1c2d3e4f5a6b7c-0",  # wrong variant
        "0190F3A2C4D07E3A9B1C2D3E4F5A6B7C-0",  # upper case
        "0190f3a2c4d07e3a9b1c2d3e4f5a6b7c-12345678",  # more rows than a request can hold
        "0190f3a2c4d07e3a9b1c2d3e4f5a6b7c-1 ",
        "x" * 10_000,
    ],
)
def test_what_is_not_an_issued_id_is_refused(text: str) -> None:
    assert parse_id(text) is None


def test_a_forked_worker_does_not_repeat_its_parent_s_keys() -> None:
    """Keys come from a block of random bytes per process: a fork must not inherit the rest of the block."""
    new_key(True, NOW)  # the parent has a block to share
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover -- the child process
        os.write(write, new_key(True, NOW).encode())
        os._exit(0)
    os.waitpid(child, 0)
    assert os.read(read, 64).decode() != new_key(True, NOW)
