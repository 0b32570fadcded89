"""The request log's queries: each answered `/predict` request (`prediction_requests`) and the predictions it made
per minute (`prediction_counts`). The writer thread inserts them; feedback finds its predictions here, and
`GET /predictions/{id}` and the export read them back. Retention deletes a prediction with all that refers to it."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import sqlalchemy as sa

from ..database.codecs import decode_float, decode_key
from ..database.dialect import upsert
from ..database.driver import DriverStatement, read_back
from ..database.engine import writing
from ..database.schema import (
    label_history,
    labels,
    outcomes,
    prediction_counts,
    prediction_requests,
    shadow_predictions,
)
from .ids import issued_at

KEYS_PER_QUERY = 1000  # within SQLite's and PostgreSQL's bounds on a statement's parameters
DELETE_CHUNK = 5000  # requests per retention delete: SQLite holds its write lock for one chunk at a time
PredictionKey = tuple[str, int]  # (request key, row)


class RequestRecord(NamedTuple):
    """One `/predict` request as the writer inserts it; JSON columns already encoded. A tuple: the prediction log
    queues its fields in a plain one (`log.Queued`) and names them only to insert them."""

    key: str
    model: str
    version: str
    created_at: datetime
    request_id: str | None
    rows: int
    decision_keys: bytes
    confidence: bytes
    options: str
    decisions: str
    inputs: bytes | None
    caller: str | None = None  # the API key's name; None without keys


@dataclass(frozen=True)
class LoggedDecision:
    """What feedback needs of a logged prediction: who answered it, when, and the model's own decision and its
    confidence. `row` may be past its request's `rows`: an id that was never issued."""

    key: str
    row: int
    model: str
    version: str
    created_at: datetime
    rows: int  # of its request
    decision_key: str | None
    confidence: float
    shadow_version: str | None = None  # a shadow's decision on the same row, when it was logged
    shadow_decision_key: str | None = None
    shadow_confidence: float | None = None


class PredictionStore:
    """The logged requests and their per-minute counts, over one engine.

    A request's key is the key of everything about its predictions: the reads that take a prediction's shadow
    decision (`find_predictions`) or feedback (`prediction`) along, and retention, read or delete those rows too,
    each in one transaction."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self._read_time = read_back(prediction_requests.c.created_at, dialect)
        self._insert_requests = DriverStatement(prediction_requests.insert(), dialect)
        self._count_minutes = DriverStatement(
            upsert(dialect, prediction_counts, ("model", "version", "minute"), add=("rows",)), dialect
        )

    def write_requests(self, records: Sequence[RequestRecord], skip_written: bool = False) -> None:
        """Insert logged requests, and add their rows to the per-minute counts, in one transaction. `skip_written`:
        leave out those already in the log (a batch sent again after its writer died, perhaps once committed)."""
        with writing(self.engine) as connection:
            if skip_written:
                written = self._written_keys(connection, [record.key for record in records])
                records = [record for record in records if record.key not in written]
            counts: dict[tuple[str, str, float], int] = {}
            for record in records:
                minute = (record.model, record.version, record.created_at.timestamp() // 60)
                counts[minute] = counts.get(minute, 0) + record.rows
            self._insert_requests.run(connection, records)
            self._count_minutes.run(
                connection,
                [
                    {"model": m, "version": v, "minute": datetime.fromtimestamp(minute * 60, UTC), "rows": n}
                    for (m, v, minute), n in counts.items()
                ],
            )

    @staticmethod
    def _written_keys(connection: sa.Connection, keys: Sequence[str]) -> set[str]:
        key = prediction_requests.c.key
        found: set[str] = set()
        for start in range(0, len(keys), KEYS_PER_QUERY):
            found.update(
                connection.execute(sa.select(key).where(key.in_(keys[start : start + KEYS_PER_QUERY]))).scalars()
            )
        return found

    def find_predictions(self, wanted: Iterable[PredictionKey]) -> dict[PredictionKey, LoggedDecision]:
        """The predictions among `wanted` whose request is logged. Each reads only its own row's bytes of the
        request's decision keys and confidences (a label of a 1,000-row request needs 12 bytes, not 12 KB)."""
        wanted = sorted(set(wanted))
        if not wanted:
            return {}
        with self.engine.connect() as connection:
            found = connection.exec_driver_sql(
                _find_predictions_sql(len(wanted), self.engine.dialect.positional),
                tuple(value for prediction in wanted for value in prediction),
            ).all()
        predictions = {}
        for key, row, model, version, created_at, rows, code, distinct, confidence, *shadow in found:
            issued = row < rows
            shadow_version, shadow_code, shadow_distinct, shadow_confidence = shadow
            shadowed = issued and shadow_version is not None
            predictions[(key, row)] = LoggedDecision(
                key,
                row,
                model,
                version,
                self._read_time(created_at),
                rows,
                decode_key(bytes(code), bytes(distinct)) if issued else None,
                decode_float(bytes(confidence)) if issued else float("nan"),
                shadow_version if shadowed else None,
                decode_key(bytes(shadow_code), bytes(shadow_distinct)) if shadowed else None,
                decode_float(bytes(shadow_confidence)) if shadowed else None,
            )
        return predictions

    def prediction(self, key: str, row: int) -> dict[str, Any] | None:
        """A logged prediction with its request's columns, current label, label history and outcomes; None if absent."""
        t = prediction_requests
        with self.engine.connect() as connection:
            request = connection.execute(sa.select(t).where(t.c.key == key)).first()
            if request is None or row >= request.rows:
                return None
            current = connection.execute(
                sa.select(labels.c.truth_key, labels.c.labelled_at, labels.c.caller).where(
                    labels.c.key == key, labels.c.row == row
                )
            ).first()
            h = label_history.c
            history = connection.execute(
                sa.select(h.truth_key, h.received_at, h.caller, h.voided_at)
                .where(h.key == key, h.row == row)
                .order_by(h.id)
            ).all()
            reported = connection.execute(
                sa.select(outcomes.c.name, outcomes.c.value, outcomes.c.received_at, outcomes.c.caller)
                .where(outcomes.c.key == key, outcomes.c.row == row)
                .order_by(outcomes.c.name)
            ).all()
        return {
            "request": request._asdict(),
            "label": None if current is None else current._asdict(),
            "history": [h._asdict() for h in history],
            "outcomes": [o._asdict() for o in reported],
        }

    def requests_page(
        self,
        model: str,
        after_key: str,
        until_key: str,
        limit: int,
        version: str | None = None,
        with_inputs: bool = True,
    ) -> list[Any]:
        """Up to `limit` logged requests of `model` with keys in (after_key, until_key), in key (time) order."""
        t = prediction_requests
        columns = [c for c in t.c if with_inputs or c.name != "inputs"]
        query = (
            sa.select(*columns)
            .where(t.c.model == model, t.c.key > after_key, t.c.key < until_key)
            .order_by(t.c.key)
            .limit(limit)
        )
        if version is not None:
            query = query.where(t.c.version == version)
        with self.engine.connect() as connection:
            return list(connection.execute(query))

    def count_logged(self, model: str, after_key: str, until_key: str, version: str | None = None) -> int:
        """Predictions of `model` logged with keys in (after_key, until_key)."""
        t = prediction_requests
        query = sa.select(sa.func.coalesce(sa.func.sum(t.c.rows), 0)).where(
            t.c.model == model, t.c.key > after_key, t.c.key < until_key
        )
        if version is not None:
            query = query.where(t.c.version == version)
        with self.engine.connect() as connection:
            return int(connection.execute(query).scalar_one())

    def delete_before(self, first_kept_key: str) -> int:
        """Delete every prediction whose request key sorts before `first_kept_key`, with its labels and outcomes;
        returns the number of predictions deleted. Keys are time-ordered, so this is a range of the index."""
        deleted = 0
        t = prediction_requests
        while True:
            with writing(self.engine) as connection:
                chunk = connection.execute(
                    sa.select(t.c.key, t.c.rows).where(t.c.key < first_kept_key).order_by(t.c.key).limit(DELETE_CHUNK)
                ).all()
                if not chunk:
                    break
                last = chunk[-1].key
                for table in (t, labels, label_history, outcomes, shadow_predictions):
                    connection.execute(sa.delete(table).where(table.c.key <= last))
                deleted += sum(row.rows for row in chunk)
        kept_from = minute_start(datetime.fromtimestamp(issued_at(first_kept_key), UTC))
        with writing(self.engine) as connection:
            connection.execute(sa.delete(prediction_counts).where(prediction_counts.c.minute < kept_from))
        return deleted


def minute_start(moment: datetime) -> datetime:
    """The start of the minute `moment` is in: a key of `prediction_counts`."""
    return moment.replace(second=0, microsecond=0)


@functools.lru_cache(maxsize=256)
def _find_predictions_sql(count: int, qmark: bool) -> str:
    """`find_predictions`' query for `count` predictions, in the driver's own parameter style: SQLAlchemy compiled
    a VALUES list afresh on every call, which cost more than the query."""
    marker = "?" if qmark else "%s"
    wanted = ", ".join(f"({marker}, CAST({marker} AS INTEGER))" for _ in range(count))
    return (
        f'WITH wanted ("key", "row") AS (VALUES {wanted}) '
        'SELECT wanted."key", wanted."row", p.model, p.version, p.created_at, p.rows, '
        'substr(p.decision_keys, wanted."row" * 4 + 1, 4), substr(p.decision_keys, p.rows * 4 + 1), '
        'substr(p.confidence, wanted."row" * 8 + 1, 8), '
        's.version, substr(s.decision_keys, wanted."row" * 4 + 1, 4), substr(s.decision_keys, s.rows * 4 + 1), '
        'substr(s.confidence, wanted."row" * 8 + 1, 8) '
        'FROM wanted JOIN prediction_requests AS p ON p."key" = wanted."key" '
        'LEFT JOIN shadow_predictions AS s ON s."key" = wanted."key"'
    )
