"""The prediction log's queue format: each answered request encoded once, on the event loop, into bytes appended to
one `bytearray`, which the writer thread takes whole and reads back into `RequestRecord`s.

A queue of per-request objects (the request's rows, scores, options) was walked by every full garbage collection
for as long as it waited, 10-130 ms a collection once the writer fell behind; a queue of bytes holds nothing the
collector walks, however long it gets. A record is a fixed header, then its fields' bytes one after the other:

    created_at float64 | rows uint32 | 10 field lengths int32 (-1: None) | key | model | ... | inputs

Strings are UTF-8 with lone surrogates kept (`surrogatepass`): a value the database refuses reaches the database and
is refused there, alone, as before.
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from ..database.driver import share_the_lock
from .prediction_store import RequestRecord

_TEXT = ("key", "model", "version", "request_id", "caller", "options", "decisions")  # then 3 binary fields
_HEADER = struct.Struct(f"<dI{len(_TEXT) + 3}i")
_NONE = -1


def pack_request(
    key: str,
    created_at: float,
    model: str,
    version: str,
    request_id: str | None,
    caller: str | None,
    rows: int,
    options: str,
    decisions: bytes,
    decision_keys: bytes,
    confidence: bytes,
    inputs: bytes | None,
) -> bytes:
    """One request's record: `created_at` in Unix seconds, `decisions` the answer's JSON as sent."""
    fields = [
        key.encode(),
        model.encode(),
        version.encode(),
        None if request_id is None else request_id.encode("utf-8", "surrogatepass"),
        None if caller is None else caller.encode("utf-8", "surrogatepass"),
        options.encode("utf-8", "surrogatepass"),
        decisions,
        decision_keys,
        confidence,
        inputs,
    ]
    lengths = [_NONE if field is None else len(field) for field in fields]
    return _HEADER.pack(created_at, rows, *lengths) + b"".join([field for field in fields if field is not None])


def repack(records: Sequence[RequestRecord]) -> bytes:
    """The records of `unpack_requests` as queued again (the writer puts back what it could not write)."""
    return b"".join(
        pack_request(
            r.key, r.created_at.timestamp(), r.model, r.version, r.request_id, r.caller, r.rows, r.options,
            r.decisions.encode("utf-8", "surrogatepass"), r.decision_keys, r.confidence, r.inputs,
        )
        for r in records
    )  # fmt: skip


def unpack_requests(queued: bytes | bytearray) -> list[RequestRecord]:
    """The records of a queue of `pack_request`s, in order (the writer thread's: it shares Python's lock)."""
    view = memoryview(queued)
    records = []
    position = 0
    since = time.perf_counter()
    try:
        while position < len(queued):
            since = share_the_lock(since)
            created_at, rows, *lengths = _HEADER.unpack_from(queued, position)
            position += _HEADER.size
            fields: list[Any] = []  # bytes, or None where the length says so
            for length in lengths:
                if length == _NONE:
                    fields.append(None)
                else:
                    fields.append(bytes(view[position : position + length]))
                    position += length
            key, model, version, request_id, caller, options, decisions, decision_keys, confidence, inputs = fields
            records.append(
                RequestRecord(
                    key=key.decode(),
                    model=model.decode(),
                    version=version.decode(),
                    created_at=datetime.fromtimestamp(created_at, UTC),
                    request_id=None if request_id is None else request_id.decode("utf-8", "surrogatepass"),
                    rows=rows,
                    decision_keys=decision_keys,
                    confidence=confidence,
                    options=options.decode("utf-8", "surrogatepass"),
                    decisions=decisions.decode("utf-8", "surrogatepass"),
                    inputs=inputs,
                    caller=None if caller is None else caller.decode("utf-8", "surrogatepass"),
                )
            )
    finally:
        view.release()
    return records
