"""Statements run at the driver's level: the one module that reaches into SQLAlchemy's compiled statements and
column types, for the log's hot writes and reads (see `DriverStatement`). `share_the_lock` lives here, below its one
caller: the insert's row loop, run by the prediction log's writer thread (`service/feedback/log.py`)."""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

WRITER_SLICE_SECONDS = 0.001  # how long a writer thread runs before it hands Python's lock back (see below)


def share_the_lock(since: float) -> float:
    """Called between two pieces of a writer thread's work: hands Python's lock back to the event loop when the
    thread has run `WRITER_SLICE_SECONDS` since `since` (a `time.perf_counter()`), and returns the new start.

    The event loop, back from a socket, otherwise waits for the writer's whole stretch or for Python's 5 ms
    switch interval. Each hand-over is a pair of context switches: yielding every few rows cost a 1-row request a
    tenth of its CPU; a time slice bounds the loop's wait and the number of hand-overs both.
    """
    now = time.perf_counter()
    if now - since < WRITER_SLICE_SECONDS:
        return since
    time.sleep(0)
    return time.perf_counter()


class DriverStatement:
    """An INSERT compiled once for the engine's dialect, its rows sent to the driver's own executemany a few rows
    per statement.

    The log's hot writes skip SQLAlchemy's per-row parameter handling, which cost more than the writes themselves;
    the columns' bind processors (times, bytes) are still applied, so the stored values are those SQLAlchemy would
    store. A statement carries as many rows as fit in `PARAMETERS` parameters: PostgreSQL pays its per-statement
    work once for them, and psycopg still parses the statement once and prepares it (a statement of more
    parameters it parsed again on every call, slower than PostgreSQL ran it). SQLite takes one row per statement.

    The supported path was measured against it, interleaved in one run (200 rows a batch, the log's request insert
    and label upsert): SQLAlchemy 2's executemany, plain or with its `insertmanyvalues` batching, took 1.5 to 2.2
    times as long on SQLite and on PostgreSQL. tests/database/test_driver.py checks that both store the same rows.
    """

    PARAMETERS = 48  # psycopg keeps the parse of a statement of at most 50 parameters

    def __init__(self, statement: Any, dialect: sa.Dialect, columns: Sequence[str] | None = None) -> None:
        """`columns`: the columns the rows give (default: every column of the table). Raises `UnsupportedStatement`
        for a statement whose compiled SQL is not of the one shape this class repeats (see `_cut`)."""
        paramstyle = "qmark" if dialect.name == "sqlite" else "format"
        positional = type(dialect)(paramstyle=paramstyle)  # type: ignore[call-arg]
        compiled = statement.compile(dialect=positional, column_keys=columns)
        self.names: list[str] = list(compiled.positiontup or ())
        self._head, self._group, self._tail = _cut(compiled.string, len(self.names), paramstyle)
        # SQLite inserts one row per statement fastest (three times faster than four rows per statement)
        per_statement = 1 if dialect.name == "sqlite" else self.PARAMETERS // len(self.names)
        self.rows_per_statement = max(1, per_statement)
        # the dialect's own processors (a SQLite time is the string SQLAlchemy writes everywhere else), by position
        processors = [
            None if _bytes_as_they_are(compiled.binds[name].type, dialect) else
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect)
            for name in self.names
        ]  # fmt: skip
        self.processors = [(position, p) for position, p in enumerate(processors) if p is not None]

    def _sql(self, rows: int) -> str:
        return f"{self._head}{', '.join([self._group] * rows)}{self._tail}"

    def run(self, connection: sa.Connection, rows: Sequence[Mapping[str, Any]] | Sequence[Any]) -> None:
        """Insert `rows`: mappings by column name, or objects with the columns as attributes."""
        if not rows:
            return
        take = operator.itemgetter(*self.names) if isinstance(rows[0], Mapping) else operator.attrgetter(*self.names)
        times: dict[tuple[int, datetime], Any] = {}  # a batch binds its `now` to every row: format it once
        values: list[Any] = []
        since = time.perf_counter()
        for row in rows:
            since = share_the_lock(since)
            row_values = list(take(row))
            for position, process in self.processors:
                value = row_values[position]
                if isinstance(value, datetime):
                    if (position, value) not in times:
                        times[(position, value)] = process(value)
                    row_values[position] = times[(position, value)]
                else:
                    row_values[position] = process(value)
            values += row_values
        per_statement = self.rows_per_statement * len(self.names)
        whole = len(rows) // self.rows_per_statement * per_statement
        if whole:
            connection.exec_driver_sql(
                self._sql(self.rows_per_statement),
                [tuple(values[start : start + per_statement]) for start in range(0, whole, per_statement)],
            )
        if whole < len(values):
            connection.exec_driver_sql(self._sql((len(values) - whole) // len(self.names)), tuple(values[whole:]))


def _bytes_as_they_are(column_type: Any, dialect: sa.Dialect) -> bool:
    """sqlite3 stores bytes as they are: SQLAlchemy's wrapping of each in a memoryview cost 2 µs a row."""
    return dialect.name == "sqlite" and isinstance(column_type, sa.LargeBinary)


class UnsupportedStatement(ValueError):
    """A statement `DriverStatement` cannot repeat row by row: run it through SQLAlchemy's own executemany."""


_PLACEHOLDER = {"qmark": re.compile(r"\?"), "format": re.compile(r"%s")}  # "%%" is a literal percent sign


def _cut(sql: str, parameters: int, paramstyle: str) -> tuple[str, str, str]:
    """`INSERT INTO t (...) VALUES `, the one row's group `(?, ?, ...)` and what follows it (nothing, or an
    `ON CONFLICT ...` or `RETURNING ...` clause with no parameter, such as PostgreSQL's implicit return of an
    autoincremented id, which `run` discards): the shape whose group can be repeated for more rows. Anything else
    (a parameter after the group, several groups, a SQLAlchemy that compiles otherwise) is refused rather than
    cut wrongly."""
    head, values, rest = sql.partition(" VALUES ")
    placeholders = _PLACEHOLDER[paramstyle]
    end = _closing_parenthesis(rest) if rest.startswith("(") else -1
    group, tail = rest[: end + 1], rest[end + 1 :]
    if (
        not head.startswith("INSERT INTO ")
        or not values
        or " VALUES " in rest
        or end < 0
        or len(placeholders.findall(group.replace("%%", ""))) != parameters
        or placeholders.search(head.replace("%%", "") + tail.replace("%%", ""))
        or not (tail == "" or tail.startswith((" ON CONFLICT ", " RETURNING ")))
    ):
        shape = "INSERT ... VALUES (...) [ON CONFLICT or RETURNING ...]"
        raise UnsupportedStatement(f"DriverStatement repeats `{shape}`, not {sql!r}")
    return head + values, group, tail


def _closing_parenthesis(text: str) -> int:
    """The index of the parenthesis that closes the one `text` starts with (a PostgreSQL cast such as
    `%s::NUMERIC(10, 2)` has its own); -1 when none does."""
    depth = 0
    for index, char in enumerate(text):
        depth += {"(": 1, ")": -1}.get(char, 0)
        if depth == 0:
            return index
    return -1


def read_back(column: sa.Column[Any], dialect: sa.Dialect) -> Callable[[Any], Any]:
    """What SQLAlchemy makes of a value of `column` the driver returned: a query run at the driver's level
    (`exec_driver_sql`) skips the column types (a SQLite time comes back a string)."""
    process = column.type.dialect_impl(dialect).result_processor(dialect, None)
    return process if process is not None else lambda value: value
