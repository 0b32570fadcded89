"""Prediction ids: `<request key>-<row>`, where the request key is a time-ordered 128-bit id in UUIDv7's layout.

The key, 32 lowercase hex digits: 48 bits of Unix time in milliseconds, the version nibble 7, one bit saying whether
the request was sampled into the log, 11 random bits, the variant bits and 62 random bits. So keys sort by time (the
log's index grows at its end, and retention deletes a key range), they are unique across workers, replicas and
restarts, and an id alone tells "issued a moment ago, not yet written" from "never issued", "not sampled into the
log" and "past retention".
"""

from __future__ import annotations

import os
import re
import threading
from dataclasses import dataclass

_ID = re.compile(r"([0-9a-f]{12})7([0-9a-f]{3})[89ab][0-9a-f]{15}-(0|[1-9][0-9]{0,6})")
_LOGGED_BIT = 0x800  # the top bit of the 12 bits after the version nibble (the 0x08 of the key's 7th byte)


@dataclass(frozen=True)
class PredictionRef:
    """A parsed prediction id."""

    key: str  # the request's key
    row: int  # the prediction's row in its request
    issued_at: float  # Unix seconds, from the key's timestamp
    logged: bool  # whether its request was sampled into the log

    @property
    def id(self) -> str:
        return prediction_id(self.key, self.row)


class _RandomBytes:
    """Random bytes from the OS, fetched in blocks: one system call per ~400 keys, not one per key (a system call
    hands Python's lock to the writer thread, and the event loop waits for it back)."""

    BLOCK = 4096

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Start afresh: a forked process must not hand out the bytes its parent will hand out too (nor inherit
        a lock held by a thread it does not have)."""
        self._lock = threading.Lock()
        self._block = b""
        self._used = 0

    def take(self, size: int) -> bytes:
        with self._lock:
            if self._used + size > len(self._block):
                self._block, self._used = os.urandom(self.BLOCK), 0
            start, self._used = self._used, self._used + size
            return self._block[start : start + size]


_random = _RandomBytes()
os.register_at_fork(after_in_child=_random.reset)


def new_key(logged: bool, now: float) -> str:
    """A fresh request key issued at `now` (Unix seconds)."""
    random = _random.take(10)
    version_and_flag = 0x70 | (0x08 if logged else 0) | (random[0] & 0x07)  # 0111 f rrr: UUIDv7, then the flag
    variant = 0x80 | (random[1] & 0x3F)  # 10 rrrrrr
    return (int(now * 1000).to_bytes(6, "big") + bytes((version_and_flag, random[2], variant)) + random[3:]).hex()


def prediction_id(key: str, row: int) -> str:
    """The id of the prediction of row `row` of the request `key`."""
    return f"{key}-{row}"


def prediction_ids(key: str, rows: int) -> list[str]:
    """The ids of a request's predictions, in row order (`prediction_id` of each row)."""
    return [f"{key}-{row}" for row in range(rows)]


def parse_id(text: str) -> PredictionRef | None:
    """The parts of an id this service could have issued, or None."""
    match = _ID.fullmatch(text)
    if match is None:
        return None
    _, rand_a, row = match.groups()
    key = text[:32]
    return PredictionRef(key=key, row=int(row), issued_at=issued_at(key), logged=bool(int(rand_a, 16) & _LOGGED_BIT))


def issued_at(key: str) -> float:
    """The Unix time (seconds) a request key was issued at."""
    return int(key[:12], 16) / 1000


def first_key_at(seconds: float) -> str:
    """The smallest key issued at or after `seconds`: keys below it were issued before."""
    return f"{int(seconds * 1000):012x}" + "0" * 20
