"""The prediction log's writer process: a child of each worker that inserts the worker's queued requests, so that
the insert runs under its own interpreter lock, not beside the worker's event loop.

The worker's writer thread (`log.PredictionLog`) sends a batch of queued requests (`log.Queued`, plain tuples) down
the child's stdin with `marshal` (plain data only: reading it runs nothing, unlike a pickle), a slice of about
`SLICE_ROWS` rows at a time (marshalling holds the worker's interpreter lock; the event loop runs between slices),
and waits for the child's answer on its stdout: which requests were written, which the database refused alone (with
its error), and whether the database could not be reached. One batch is in flight at a time; the queue, its bound
and every count stay in the worker. The first message down the pipe is the database URL: a password in it is not
shown by `ps`, as the command line would be.

- One request never takes another with it: a batch the database refuses is retried in halves, here, down to the
  requests it refuses alone.
- The child ends when its stdin ends: the worker's `close()`, or the worker's death (`kill -9`), after it wrote
  the batch it had received. It also ends within a second when its parent is gone and the pipe is not closed (a
  process forked from the worker holds it). It ignores SIGINT and SIGTERM, which a terminal or a supervisor sends
  to the whole process group: the worker's graceful stop still writes what is queued through it.
- A child that dies (its pipe breaks) is replaced at the next write, and the batch it did not answer is sent
  again, marked `resent`: the new child skips the requests the old one committed before it died, so none is
  written twice or refused as a duplicate.
"""

from __future__ import annotations

import contextlib
import marshal
import os
import select
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, NamedTuple, TypeVar

import sqlalchemy as sa

from ..database.engine import create_database_engine
from .prediction_store import PredictionStore, RequestRecord

UNREACHABLE = (sa.exc.OperationalError, sa.exc.InterfaceError)  # the database, not the data: kept for a retry
PARENT_CHECK_SECONDS = 1.0
STOP_SECONDS = 10.0  # how long `close()` waits for the child to write its batch and exit before killing it
_LENGTH = struct.Struct("!Q")  # each message: its length, then its marshal bytes
SLICE_ROWS = 2048  # rows of a batch marshalled at a time: about 1 ms with 30 features logged (64 rows, 15 us)
# positions in a queued request (`log.Queued`: `RequestRecord`'s fields in order)
MODEL, VERSION, ROWS = map(RequestRecord._fields.index, ("model", "version", "rows"))
T = TypeVar("T")


class Outcome(NamedTuple):
    """What became of a batch: positions in it."""

    written: list[int]  # committed
    refused: list[tuple[int, str]]  # refused alone by the database, with its error (`describe_error`)
    unreachable: str | None  # the database could not be reached: what is neither written nor refused is not written


def write_batch(store: PredictionStore, batch: Sequence[tuple[Any, ...]], resent: bool) -> Outcome:
    """Insert `batch` (queued `RequestRecord` fields); `resent`: skip the requests already in the database."""
    records = list(map(record_of, batch))
    written: list[int] = []
    refused: list[tuple[int, Exception]] = []

    def attempt(positions: Sequence[int]) -> None:
        store.write_requests([records[p] for p in positions], skip_written=resent)
        written.extend(positions)

    try:
        in_halves(range(len(records)), attempt, refused)
    except UNREACHABLE as exc:
        return Outcome(written, [], describe_error(exc))  # the refused are tried again with the rest
    return Outcome(written, [(p, describe_error(error)) for p, error in refused], None)


def record_of(fields: Sequence[Any]) -> RequestRecord:
    """A queued request (`log.Queued`) named, its time (Unix seconds) made a datetime."""
    key, model, version, created_at, *rest = fields
    return RequestRecord(key, model, version, datetime.fromtimestamp(created_at, UTC), *rest)


def in_halves(items: Sequence[T], attempt: Callable[[Sequence[T]], None], failed: list[tuple[T, Exception]]) -> None:
    """`attempt(items)`; when it raises, the same on each half, down to the single items it raises on, which are
    added to `failed` with their error (about 2 log2(n) extra attempts for one among n). A lost connection
    (`UNREACHABLE`) is no item's fault: it is raised."""
    if not items:
        return
    try:
        attempt(items)
    except UNREACHABLE:
        raise
    except Exception as exc:  # noqa: BLE001 -- whatever the item's fault, it is that item's alone
        if len(items) == 1:
            failed.append((items[0], exc))
            return
        middle = len(items) // 2
        in_halves(items[:middle], attempt, failed)
        in_halves(items[middle:], attempt, failed)


def describe_error(exc: BaseException) -> str:
    """The first line of an exception's message (driver errors carry the SQL and a link on later lines)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"


class LogWriterProcess:
    """The worker's side of its writer process: started at the first write, restarted after it died."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the child now (it imports for a second or so), rather than at the first write."""
        self._running()

    def write(self, batch: list[tuple[Any, ...]], resent: bool) -> Outcome | None:
        """Have the child insert `batch` and say what became of it; None when the child died before it answered
        (the next write starts a new one)."""
        process = self._running()
        assert process.stdin is not None and process.stdout is not None
        try:
            for part, more in _slices(batch):
                # marshalling holds the worker's interpreter lock: a slice at a time, the event loop between them
                _send(process.stdin, marshal.dumps((resent, more, part)))
                time.sleep(0)
            answer = _read_message(process.stdout)
        except OSError:  # a broken pipe: it died
            answer = None
        if answer is None:
            self._reap()
            return None
        return Outcome._make(marshal.loads(answer))

    @property
    def pid(self) -> int | None:
        """The running child's process id."""
        return None if self._process is None else self._process.pid

    def close(self, timeout: float = STOP_SECONDS) -> None:
        """End the child's input: it writes the batch it holds and exits (killed after `timeout`)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.stdin is not None:
                process.stdin.close()
        except OSError:
            pass
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def _running(self) -> subprocess.Popen[bytes]:
        if self._process is not None and self._process.poll() is None:
            return self._process
        self._reap()
        # the checkout's package, wherever the worker runs from
        source = str(Path(__file__).resolve().parents[2])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [source, os.environ.get("PYTHONPATH")]))}
        process = subprocess.Popen(
            [sys.executable, "-m", __name__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
        )
        self._process = process
        # the URL may hold a password: down the pipe, never on the command line (`ps` shows that to every user)
        assert process.stdin is not None
        with contextlib.suppress(OSError):  # it died at once: the write that follows finds it gone
            _send(process.stdin, self.database_url.encode())
        return process

    def _reap(self) -> None:
        if self._process is not None:
            self.close(timeout=0.0)


def _slices(batch: list[tuple[Any, ...]]) -> Iterator[tuple[list[tuple[Any, ...]], bool]]:
    """`batch` in slices of about `SLICE_ROWS` rows, each with whether more follow (at least one slice)."""
    start = rows = 0
    for end, fields in enumerate(batch, 1):
        rows += fields[ROWS]
        if rows >= SLICE_ROWS and end < len(batch):
            yield batch[start:end], True
            start, rows = end, 0
    yield batch[start:], False


def _send(stream: IO[bytes], payload: bytes) -> None:
    stream.write(_LENGTH.pack(len(payload)) + payload)
    stream.flush()


def _read_message(stream: IO[bytes]) -> bytes | None:
    """One message from a buffered stream; None at its end."""
    header = stream.read(_LENGTH.size)
    if len(header) < _LENGTH.size:
        return None
    (length,) = _LENGTH.unpack(header)
    payload = stream.read(length)
    return payload if len(payload) == length else None


def _read_exactly(fd: int, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def _next_batch(fd: int, parent: int) -> tuple[bool, list[tuple[Any, ...]]] | None:
    """The next batch from the worker, its slices joined; None when its pipe ended or the worker is gone."""
    batch: list[tuple[Any, ...]] = []
    more = True
    while more:
        while not select.select([fd], [], [], PARENT_CHECK_SECONDS)[0]:
            if os.getppid() != parent:
                return None
        payload = _read_frame(fd)
        if payload is None:
            return None  # a batch cut short is not written: the worker sends it again, or it is gone
        resent, more, part = marshal.loads(payload)
        batch.extend(part)
    return resent, batch


def _read_frame(fd: int) -> bytes | None:
    """One message from the pipe (unbuffered: `select` sees what is not read yet); None at its end."""
    header = _read_exactly(fd, _LENGTH.size)
    return None if header is None else _read_exactly(fd, _LENGTH.unpack(header)[0])


def main() -> None:
    """The child: read the database URL, then insert each batch the worker sends and answer with its `Outcome`,
    until the input ends."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    parent = os.getppid()
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # a stray print must not corrupt an answer
    url = _read_frame(sys.stdin.fileno())
    if url is None:
        return
    engine = create_database_engine(url.decode())
    store = PredictionStore(engine)
    try:
        while (received := _next_batch(sys.stdin.fileno(), parent)) is not None:
            resent, batch = received
            answer = marshal.dumps(tuple(write_batch(store, batch, resent)))
            try:
                _send(answers, answer)
            except OSError:  # the worker is gone; the batch is written
                break
    finally:
        engine.dispose()


if __name__ == "__main__":
    main()
