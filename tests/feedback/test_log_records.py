"""The prediction log's queue format: a request's record reads back as the `RequestRecord` the writer inserts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

from service.feedback.log_records import pack_request, repack, unpack_requests
from service.feedback.prediction_store import RequestRecord
from tests.feedback.helpers import request_record

AT = datetime(2026, 12, 7, 4, 5, 6, 789012, tzinfo=UTC)


def packed(record: RequestRecord) -> bytes:
    return pack_request(
        record.key, record.created_at.timestamp(), record.model, record.version, record.request_id, record.caller,
        record.rows, record.options, record.decisions.encode(), record.decision_keys, record.confidence, record.inputs,
    )  # fmt: skip


def test_records_read_back_as_written_in_order() -> None:
    first = request_record(AT, inputs=[[0.5, float("nan")], [1.0, 2.0], [3.0, -0.0]], request_id="req-1")
    second = replace(
        request_record(AT, model="modèle", decisions=["a", None]),
        caller="ci-key",
        options='{"top_k":2}',
        decisions='[{"label":"é"},{"label":null}]',
    )
    empty = replace(request_record(AT), request_id="", options="{}", inputs=b"")  # empty fields are not None
    records = [first, second, empty]
    queue = bytearray()
    for record in records:
        queue += packed(record)
    assert unpack_requests(queue) == records
    assert repack(records) == bytes(queue)
    assert unpack_requests(b"") == []


def test_a_lone_surrogate_reaches_the_writer_as_it_came() -> None:
    """Neither database stores one: the database refuses that request alone, as it did before the queue held bytes."""
    record = replace(request_record(AT), request_id="\ud800", caller="x\udfff")
    assert unpack_requests(packed(record)) == [record]


def test_times_keep_their_microseconds() -> None:
    times = [AT, datetime(1999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC)]
    records = [request_record(at) for at in times]
    assert [r.created_at for r in unpack_requests(repack(records))] == times
