"""The prediction log's writer process: batches in and outcomes out through a real child, refusals of one request,
a child killed and replaced with nothing lost or written twice, and a child that ends with its worker."""

from __future__ import annotations

import marshal
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from service.database.engine import create_database_engine, migrate
from service.database.schema import prediction_counts
from service.feedback.ids import new_key
from service.feedback.log_writer import SLICE_ROWS, LogWriterProcess, _slices, write_batch
from service.feedback.prediction_store import PredictionStore
from tests.feedback.test_log import wait_for

PROJECT = Path(__file__).resolve().parents[2]


def queued(request_id: str | None = "req", rows: int = 2) -> tuple[Any, ...]:
    """A queued request's fields (`log.Queued`), as the worker sends them."""
    now = time.time()
    return (
        new_key(True, now), "m", "v1", now, request_id, rows,
        b"\x00\x00\x00\x00" * rows + b'["a"]', b"\x00" * 8 * rows, "{}", "[]", None, None,
    )  # fmt: skip


@pytest.fixture
def url(database_url: str) -> str:
    engine = create_database_engine(database_url)
    migrate(engine)
    engine.dispose()
    return database_url


@pytest.fixture
def store(url: str) -> Iterator[PredictionStore]:
    engine = create_database_engine(url)
    yield PredictionStore(engine)
    engine.dispose()


@pytest.fixture
def writer(url: str) -> Iterator[LogWriterProcess]:
    process = LogWriterProcess(url)
    yield process
    process.close()


def logged_keys(store: PredictionStore, batch: list[tuple[Any, ...]]) -> set[str]:
    return {key for key, _ in store.find_predictions([(fields[0], 0) for fields in batch])}


def counted_rows(store: PredictionStore) -> int:
    with store.engine.connect() as connection:
        return int(connection.execute(sa.select(sa.func.coalesce(sa.func.sum(prediction_counts.c.rows), 0))).scalar())


def test_a_batch_goes_through_the_child_and_its_outcome_comes_back(
    writer: LogWriterProcess, store: PredictionStore
) -> None:
    batch = [queued() for _ in range(50)]
    outcome = writer.write(batch, resent=False)
    assert outcome is not None and (outcome.written, outcome.refused, outcome.unreachable) == (
        list(range(50)),
        [],
        None,
    )
    assert logged_keys(store, batch) == {fields[0] for fields in batch}
    assert counted_rows(store) == 100


def test_a_batch_of_many_slices_is_written_whole(writer: LogWriterProcess, store: PredictionStore) -> None:
    """The worker marshals a large batch a slice at a time; the child joins the slices into one batch."""
    batch = [queued(rows=SLICE_ROWS // 2 + 1) for _ in range(5)]
    assert [len(part) for part, _ in _slices(batch)] == [2, 2, 1]
    outcome = writer.write(batch, resent=False)
    assert outcome is not None and (outcome.written, outcome.refused) == (list(range(5)), [])
    assert counted_rows(store) == 5 * (SLICE_ROWS // 2 + 1)


def test_the_database_url_is_not_on_the_childs_command_line(writer: LogWriterProcess, url: str) -> None:
    """A password in the URL would be shown by `ps` to every user of the machine; the child reads it from its pipe."""
    assert writer.write([queued()], resent=False) is not None  # the child has read the URL and used it
    assert writer.pid is not None
    command_line = Path(f"/proc/{writer.pid}/cmdline").read_bytes().split(b"\0")
    assert all(url.encode() not in argument for argument in command_line), command_line
    assert b"service.feedback.log_writer" in command_line


def test_the_request_the_database_refuses_is_the_only_one_lost(
    writer: LogWriterProcess, store: PredictionStore
) -> None:
    """A lone surrogate in a request id, which neither database encodes: the child halves the batch down to it."""
    batch = [queued() for _ in range(7)]
    batch.insert(5, queued(request_id="\ud800"))
    outcome = writer.write(batch, resent=False)
    assert outcome is not None and outcome.unreachable is None
    assert sorted(outcome.written) == [p for p in range(8) if p != 5]
    ((position, error),) = outcome.refused
    assert position == 5 and ("surrogate" in error or "encod" in error), error
    assert logged_keys(store, batch) == {fields[0] for p, fields in enumerate(batch) if p != 5}


def test_a_killed_child_is_replaced_and_a_batch_it_committed_is_not_written_twice(
    writer: LogWriterProcess, store: PredictionStore
) -> None:
    first = [queued() for _ in range(5)]
    assert writer.write(first, resent=False) is not None
    pid = writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    # as if the child had committed `first` and died before it answered: the worker sends it again, with more
    later = [queued() for _ in range(3)]
    outcome = writer.write(first + later, resent=True)
    if outcome is None:  # the kill reached the child after the write began: the next write starts a new one
        outcome = writer.write(first + later, resent=True)
    assert outcome is not None and writer.pid != pid
    assert (sorted(outcome.written), outcome.refused) == (list(range(8)), [])  # none refused as a duplicate
    assert logged_keys(store, first + later) == {fields[0] for fields in first + later}
    assert counted_rows(store) == 16  # each request's rows counted once


def test_a_resent_batch_skips_only_what_is_written(store: PredictionStore) -> None:
    batch = [queued() for _ in range(4)]
    assert write_batch(store, batch[:2], resent=False).written == [0, 1]
    assert write_batch(store, batch, resent=True).written == [0, 1, 2, 3]
    assert counted_rows(store) == 8


def test_an_unreachable_database_is_reported_not_refused() -> None:
    writer = LogWriterProcess("postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=2")
    try:
        outcome = writer.write([queued(), queued()], resent=False)
    finally:
        writer.close()
    assert outcome is not None and (outcome.written, outcome.refused) == ([], [])
    assert outcome.unreachable is not None and "OperationalError" in outcome.unreachable


def test_the_child_writes_what_it_received_and_exits_when_its_worker_is_killed(
    url: str, store: PredictionStore, tmp_path: Path
) -> None:
    """The worker hands a batch over and is killed before the answer: the child writes it, sees its pipe end and
    exits."""
    batch = [queued() for _ in range(3)]
    batch_file = tmp_path / "batch.marshal"
    batch_file.write_bytes(marshal.dumps(batch))
    worker = textwrap.dedent(
        f"""
        import marshal, os, sys
        from service.feedback.log_writer import _LENGTH, LogWriterProcess
        writer = LogWriterProcess({url!r})
        process = writer._running()
        payload = marshal.dumps((False, False, marshal.loads(open({str(batch_file)!r}, "rb").read())))
        process.stdin.write(_LENGTH.pack(len(payload)) + payload)
        process.stdin.flush()
        print(process.pid, flush=True)
        os.kill(os.getpid(), 9)
        """
    )
    result = subprocess.run([sys.executable, "-c", worker], cwd=PROJECT, capture_output=True, text=True)
    assert result.returncode == -signal.SIGKILL, result.stderr
    child = int(result.stdout)
    wait_for(lambda: not os.path.exists(f"/proc/{child}") or _zombie(child), "the child to exit")
    assert logged_keys(store, batch) == {fields[0] for fields in batch}


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return True
