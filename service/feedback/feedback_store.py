"""Feedback's queries: each logged prediction's current label (`labels`), every label received (`label_history`)
and its outcomes (`outcomes`). Feedback requests store theirs in one transaction per group; a caller's labels can be
voided; the export reads the current ones back."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ..database.dialect import upsert
from ..database.driver import DriverStatement
from ..database.engine import writing
from ..database.schema import label_history, labels, outcomes
from .prediction_store import LoggedDecision, PredictionKey

# labels a prediction's history keeps, the last ones: a client resending labels (1,000 in one request) adds no more
LABEL_HISTORY_LENGTH = 20
HISTORY_TRIM_PREDICTIONS = 500  # predictions per statement that finds the histories over the cap
VOID_CHUNK = 500  # predictions per lookup when a void sets their current labels again


@dataclass(frozen=True)
class LabelWrite:
    truth_key: str
    prediction: LoggedDecision
    caller: str | None = None  # the API key's name; None without keys


@dataclass(frozen=True)
class OutcomeWrite:
    name: str
    value: float
    prediction: LoggedDecision
    caller: str | None = None


@dataclass(frozen=True)
class Stored:
    """Which of the stored labels were a prediction's first, and which outcomes were new."""

    first_labels: set[PredictionKey]
    new_outcomes: set[tuple[str, int, str]]


@dataclass(frozen=True)
class VoidResult:
    """What voiding a caller's labels did: labels marked void, and of the predictions they were about, those whose
    current label is now an earlier one and those left with none."""

    voided: int
    restored: int
    unlabelled: int


@dataclass(frozen=True)
class CallerLabels:
    """The labels one caller sent (None: without keys), voided ones included, and when."""

    caller: str | None
    labels: int
    voided: int
    first_received: datetime
    last_received: datetime


class FeedbackStore:
    """Labels, their history and outcomes, over one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self._insert_history = DriverStatement(
            label_history.insert(), dialect, ["key", "row", "truth_key", "received_at", "caller"]
        )
        self._upsert_labels = DriverStatement(
            upsert(dialect, labels, ("key", "row"), ("truth_key", "labelled_at", "caller")), dialect
        )
        self._upsert_outcomes = DriverStatement(
            upsert(dialect, outcomes, ("key", "row", "name"), ("value", "received_at", "caller")), dialect
        )
        h = label_history.c
        one_prediction = (h.key == sa.bindparam("k"), h.row == sa.bindparam("r"))
        oldest_kept = (
            sa.select(h.id).where(*one_prediction).order_by(h.id.desc()).limit(1).offset(LABEL_HISTORY_LENGTH - 1)
        )
        self._delete_older_history = sa.delete(label_history).where(
            *one_prediction, h.id < oldest_kept.scalar_subquery()
        )

    def store_feedback_groups(
        self, groups: Sequence[tuple[Sequence[LabelWrite], Sequence[OutcomeWrite]]], now: datetime
    ) -> list[Stored]:
        """Store the labels (current and history) and outcomes of several requests in one transaction, committed
        when this returns; one `Stored` per request, in order.

        A prediction's label is replaced by a later one (the history keeps both); an outcome's value likewise.
        A label is a prediction's first when its row's `first_batch` is this call's own random token (an upsert
        keeps the first writer's), so concurrent writers agree on which was first; within the call, the first
        request that labels it has it. Outcomes likewise.
        """
        batch = os.urandom(8).hex()
        label_writes = [w for group in groups for w in group[0]]
        outcome_writes = [w for group in groups for w in group[1]]
        first_labels: set[PredictionKey] = set()
        new_outcomes: set[tuple[str, int, str]] = set()
        with writing(self.engine) as connection:
            if label_writes:
                first_labels = self._store_labels(connection, label_writes, batch, now)
            if outcome_writes:
                new_outcomes = self._store_outcomes(connection, outcome_writes, batch, now)
        return _by_request(groups, first_labels, new_outcomes)

    def _store_labels(
        self, connection: sa.Connection, label_writes: Sequence[LabelWrite], batch: str, now: datetime
    ) -> set[PredictionKey]:
        """Add the labels to their predictions' histories (trimmed to the last ones) and make each prediction's last
        one its current label; returns the predictions `batch` labelled first."""
        self._insert_history.run(
            connection,
            [
                {
                    "key": w.prediction.key,
                    "row": w.prediction.row,
                    "truth_key": w.truth_key,
                    "received_at": now,
                    "caller": w.caller,
                }
                for w in _last_of_each(label_writes, LABEL_HISTORY_LENGTH)
            ],
        )
        self._trim_history(connection, list({(w.prediction.key, w.prediction.row) for w in label_writes}))
        # one prediction may be labelled twice: the last label is its current one
        latest = {(w.prediction.key, w.prediction.row): w for w in label_writes}
        self._upsert_labels.run(
            connection,
            [
                {
                    "key": w.prediction.key,
                    "row": w.prediction.row,
                    "model": w.prediction.model,
                    "version": w.prediction.version,
                    "predicted_at": w.prediction.created_at,
                    "decision_key": w.prediction.decision_key,
                    "confidence": w.prediction.confidence,
                    "truth_key": w.truth_key,
                    "first_batch": batch,
                    "first_labelled_at": now,
                    "labelled_at": now,
                    "shadow_version": w.prediction.shadow_version,
                    "shadow_decision_key": w.prediction.shadow_decision_key,
                    "shadow_confidence": w.prediction.shadow_confidence,
                    "caller": w.caller,
                }
                for w in latest.values()
            ],
        )
        c = labels.c
        firsts = sa.select(c.key, c.row).where(c.first_batch == batch)
        return {(k, r) for k, r in connection.execute(firsts).all()}

    def _store_outcomes(
        self, connection: sa.Connection, outcome_writes: Sequence[OutcomeWrite], batch: str, now: datetime
    ) -> set[tuple[str, int, str]]:
        """Set each outcome to its last value; returns the outcomes `batch` reported first."""
        reported = {(w.prediction.key, w.prediction.row, w.name): w for w in outcome_writes}
        self._upsert_outcomes.run(
            connection,
            [
                {
                    "key": w.prediction.key,
                    "row": w.prediction.row,
                    "name": w.name,
                    "model": w.prediction.model,
                    "version": w.prediction.version,
                    "predicted_at": w.prediction.created_at,
                    "value": w.value,
                    "first_batch": batch,
                    "received_at": now,
                    "caller": w.caller,
                }
                for w in reported.values()
            ],
        )
        o = outcomes.c
        news = sa.select(o.key, o.row, o.name).where(o.first_batch == batch)
        return {(k, r, n) for k, r, n in connection.execute(news).all()}

    def _trim_history(self, connection: sa.Connection, predictions: Sequence[PredictionKey]) -> None:
        """Delete all but the last `LABEL_HISTORY_LENGTH` history labels of `predictions`.

        One count over the labelled predictions' own histories (the (key, row) index) finds those over the cap,
        mostly none; only those are trimmed. Counting by request key instead read the history of every row of each
        request touched, a cost that grew with every label stored. A transaction sees the labels committed before
        it: writers labelling one prediction at the same moment (PostgreSQL) can leave a few more, which its next
        label trims."""
        crowded = []
        for start in range(0, len(predictions), HISTORY_TRIM_PREDICTIONS):
            chunk = predictions[start : start + HISTORY_TRIM_PREDICTIONS]
            sql = _crowded_histories_sql(len(chunk), self.engine.dialect.positional)
            parameters = tuple(value for prediction in chunk for value in prediction)
            crowded += [{"k": key, "r": row} for key, row in connection.exec_driver_sql(sql, parameters)]
        if crowded:
            connection.execute(self._delete_older_history, crowded)

    def void_labels(self, caller: str, since: datetime | None, now: datetime) -> VoidResult:
        """Void the labels `caller` sent since `since` (all when None), in one transaction: they stay in the history,
        marked `voided_at=now`, and each prediction they were about takes back its latest label that is not void,
        or has none. Realized figures, the export and retraining read current labels only, so a voided label no
        longer counts anywhere."""
        h = label_history.c
        chosen = sa.and_(h.caller == caller, h.voided_at.is_(None))
        if since is not None:
            chosen = sa.and_(chosen, h.received_at >= since)
        with writing(self.engine) as connection:
            if connection.dialect.name == "postgresql":  # SQLite takes one writer at a time already
                # feedback committed while the void reads would be overwritten by an older label: it waits instead
                connection.exec_driver_sql("LOCK TABLE labels IN SHARE ROW EXCLUSIVE MODE")
            touched = [
                (str(k), int(r)) for k, r in connection.execute(sa.select(h.key, h.row).where(chosen).distinct())
            ]
            voided = connection.execute(sa.update(label_history).where(chosen).values(voided_at=now)).rowcount
            restored, unlabelled = self._recompute_labels(connection, touched)
        return VoidResult(voided, restored, unlabelled)

    def _recompute_labels(self, connection: sa.Connection, predictions: Sequence[PredictionKey]) -> tuple[int, int]:
        """Make each prediction's current label its latest label that is not void, or delete it when none is left;
        returns (predictions whose label changed back to an earlier one, predictions left unlabelled)."""
        h, c = label_history.c, labels.c
        restored = unlabelled = 0
        for start in range(0, len(predictions), VOID_CHUNK):
            chunk = set(predictions[start : start + VOID_CHUNK])
            keys = sorted({key for key, _ in chunk})
            latest: dict[PredictionKey, Any] = {}
            found = connection.execute(
                sa.select(h.key, h.row, h.truth_key, h.received_at, h.caller)
                .where(h.key.in_(keys), h.voided_at.is_(None))
                .order_by(h.id)
            )
            for entry in found:
                if (entry.key, entry.row) in chunk:
                    latest[(entry.key, entry.row)] = entry  # ordered by id: the last one wins
            current = {
                (key, row): (truth, caller)
                for key, row, truth, caller in connection.execute(
                    sa.select(c.key, c.row, c.truth_key, c.caller).where(c.key.in_(keys))
                )
                if (key, row) in chunk
            }
            gone = [{"at_key": k, "at_row": r} for k, r in sorted(chunk) if (k, r) not in latest and (k, r) in current]
            back = [
                {"at_key": k, "at_row": r, "to_truth": e.truth_key, "to_caller": e.caller, "to_time": e.received_at}
                for (k, r), e in latest.items()
                if current.get((k, r)) != (e.truth_key, e.caller)
            ]
            where = sa.and_(c.key == sa.bindparam("at_key"), c.row == sa.bindparam("at_row"))
            if gone:
                connection.execute(sa.delete(labels).where(where), gone)
            if back:
                connection.execute(
                    sa.update(labels)
                    .where(where)
                    .values(
                        truth_key=sa.bindparam("to_truth"),
                        caller=sa.bindparam("to_caller"),
                        labelled_at=sa.bindparam("to_time"),
                    ),
                    back,
                )
            restored, unlabelled = restored + len(back), unlabelled + len(gone)
        return restored, unlabelled

    def label_callers(self) -> list[CallerLabels]:
        """Each caller's labels (voided ones included), the caller None (no keys) first, then by name."""
        h = label_history.c
        query = sa.select(
            h.caller,
            sa.func.count(),
            sa.func.count(h.voided_at),
            sa.func.min(h.received_at),
            sa.func.max(h.received_at),
        ).group_by(h.caller)
        with self.engine.connect() as connection:
            found = [
                CallerLabels(caller, count, voided, first, last)
                for caller, count, voided, first, last in connection.execute(query)
            ]
        return sorted(found, key=lambda c: (c.caller is not None, c.caller or ""))

    def feedback_of(
        self, keys: Sequence[str]
    ) -> tuple[dict[PredictionKey, Any], dict[PredictionKey, dict[str, float]]]:
        """Current labels (truth key, labelled_at, caller) and outcomes ({name: value}) of the predictions of `keys`."""
        c = labels.c
        with self.engine.connect() as connection:
            current = connection.execute(
                sa.select(c.key, c.row, c.truth_key, c.labelled_at, c.caller).where(c.key.in_(keys))
            ).all()
            reported = connection.execute(
                sa.select(outcomes.c.key, outcomes.c.row, outcomes.c.name, outcomes.c.value).where(
                    outcomes.c.key.in_(keys)
                )
            ).all()
        by_prediction: dict[PredictionKey, dict[str, float]] = {}
        for found in reported:
            by_prediction.setdefault((found.key, found.row), {})[found.name] = found.value
        return {(found.key, found.row): found for found in current}, by_prediction


def _last_of_each(writes: Sequence[LabelWrite], count: int) -> list[LabelWrite]:
    """`writes` in order, without all but the last `count` of each prediction's."""
    seen: dict[PredictionKey, int] = {}
    kept = []
    for write in reversed(writes):
        prediction = (write.prediction.key, write.prediction.row)
        seen[prediction] = seen.get(prediction, 0) + 1
        if seen[prediction] <= count:
            kept.append(write)
    return kept[::-1]


def _by_request(
    groups: Sequence[tuple[Sequence[LabelWrite], Sequence[OutcomeWrite]]],
    first_labels: set[PredictionKey],
    new_outcomes: set[tuple[str, int, str]],
) -> list[Stored]:
    """What each request of `groups` stored first, in order: a label or outcome two requests sent is the first
    one's."""
    unclaimed_labels, unclaimed_outcomes = set(first_labels), set(new_outcomes)
    stored = []
    for group_labels, group_outcomes in groups:
        mine = {(w.prediction.key, w.prediction.row) for w in group_labels} & unclaimed_labels
        reported_here = {(w.prediction.key, w.prediction.row, w.name) for w in group_outcomes} & unclaimed_outcomes
        unclaimed_labels -= mine
        unclaimed_outcomes -= reported_here
        stored.append(Stored(mine, reported_here))
    return stored


@functools.lru_cache(maxsize=256)
def _crowded_histories_sql(count: int, qmark: bool) -> str:
    """Which of `count` predictions (key, row) have a label history longer than `LABEL_HISTORY_LENGTH`, in the
    driver's own parameter style (SQLAlchemy compiled a VALUES list afresh on every call)."""
    marker = "?" if qmark else "%s"
    wanted = ", ".join(f"({marker}, CAST({marker} AS INTEGER))" for _ in range(count))
    return (
        f'WITH wanted ("key", "row") AS (VALUES {wanted}) '
        'SELECT h."key", h."row" FROM wanted '
        'JOIN label_history AS h ON h."key" = wanted."key" AND h."row" = wanted."row" '
        f'GROUP BY h."key", h."row" HAVING count(*) > {LABEL_HISTORY_LENGTH}'
    )
