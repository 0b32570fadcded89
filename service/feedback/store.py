"""Queries of the prediction log, beside its tables (`schema.py`): one code path for SQLite and PostgreSQL."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from ..database.codecs import decode_float, decode_key
from ..database.dialect import insert, upsert
from ..database.driver import DriverStatement, read_back
from ..database.engine import writing
from ..database.schema import (
    admin_actions,
    label_history,
    labels,
    model_versions,
    outcomes,
    prediction_counts,
    prediction_requests,
    served_versions,
    shadow_predictions,
)
from .ids import first_key_at, issued_at

DELETE_CHUNK = 5000  # requests per retention delete: SQLite holds its write lock for one chunk at a time
SHADOW_LOOKUP_KEYS = 500  # request keys per lookup of the labels a shadow's decisions arrived after
# labels a prediction's history keeps, the last ones: a client resending labels (1,000 in one request) adds no more
LABEL_HISTORY_LENGTH = 20
HISTORY_TRIM_KEYS = 500  # request keys per statement that trims their predictions' histories
VOID_CHUNK = 500  # predictions per lookup when a void sets their current labels again
Prediction = tuple[str, int]  # (request key, row)


@dataclass(frozen=True)
class RequestRecord:
    """One `/predict` request as the writer inserts it; JSON columns already encoded."""

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
class Rollout:
    """What the workers sharing the log serve, as the admin routes set it: model -> version promoted, and
    model -> shadow version. A model that is in neither serves its newest non-candidate version, `CLF_SHADOW`'s
    shadow if any."""

    promoted: dict[str, str] = field(default_factory=dict)
    shadows: dict[str, str] = field(default_factory=dict)


AdminActionKind = Literal["promote", "shadow", "stop_shadow", "compare"]


@dataclass(frozen=True)
class AdminAction:
    """Who changed what a model serves or shadows, or compared two of its versions, and when: a row of
    `admin_actions` (schema.py says what `from_version` and `to_version` are for each action)."""

    at: datetime
    caller: str
    action: AdminActionKind
    model: str
    from_version: str | None
    to_version: str | None


@dataclass(frozen=True)
class ShadowRecord:
    """A shadow version's decisions on one logged request, as the writer inserts them."""

    key: str
    model: str
    version: str
    rows: int
    decision_keys: bytes
    confidence: bytes


@dataclass(frozen=True)
class LoggedPrediction:
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


@dataclass(frozen=True)
class LabelWrite:
    truth_key: str
    prediction: LoggedPrediction
    caller: str | None = None  # the API key's name; None without keys


@dataclass(frozen=True)
class OutcomeWrite:
    name: str
    value: float
    prediction: LoggedPrediction
    caller: str | None = None


@dataclass(frozen=True)
class Stored:
    """Which of the stored labels were a prediction's first, and which outcomes were new."""

    first_labels: set[Prediction]
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


@dataclass(frozen=True)
class PairCount:
    """Labelled predictions of one model version with one (decision, label) pair."""

    model: str
    version: str
    decision_key: str | None
    truth_key: str
    count: int
    confidence_sum: float


@dataclass(frozen=True)
class OutcomeTotal:
    model: str
    version: str
    name: str
    count: int
    value_sum: float


class LogStore:
    """The prediction log's reads and writes over one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        dialect = engine.dialect
        self._read_time = read_back(prediction_requests.c.created_at, dialect)
        self._insert_requests = DriverStatement(prediction_requests.insert(), dialect)
        self._insert_shadows = DriverStatement(shadow_predictions.insert(), dialect)
        self._count_minutes = DriverStatement(
            upsert(dialect, prediction_counts, ("model", "version", "minute"), add=("rows",)), dialect
        )
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

    # --- the prediction log ------------------------------------------------------------------------------------

    def write_requests(self, records: Sequence[RequestRecord]) -> None:
        """Insert logged requests, and add their rows to the per-minute counts, in one transaction."""
        counts: dict[tuple[str, str, float], int] = {}
        for record in records:
            minute = (record.model, record.version, record.created_at.timestamp() // 60)
            counts[minute] = counts.get(minute, 0) + record.rows
        with writing(self.engine) as connection:
            self._insert_requests.run(connection, records)
            self._count_minutes.run(
                connection,
                [
                    {"model": m, "version": v, "minute": datetime.fromtimestamp(minute * 60, UTC), "rows": n}
                    for (m, v, minute), n in counts.items()
                ],
            )

    def remember_version(self, model: str, version: str, task: str, metadata: Mapping[str, Any], now: datetime) -> None:
        """Record a served model version (once): feedback and realized metrics read it when no worker serves it."""
        statement = insert(self.engine.dialect, model_versions)
        statement = statement.on_conflict_do_nothing(index_elements=["model", "version"])
        row = {"model": model, "version": version, "task": task, "metadata": orjson.dumps(metadata).decode()}
        with writing(self.engine) as connection:
            connection.execute(statement, {**row, "first_served_at": now})

    def promote(self, action: AdminAction) -> None:
        """Make `action.to_version` the version every worker and replica of this log serves as `action.model`, and
        record the action, in one transaction."""
        statement = upsert(self.engine.dialect, served_versions, ("model",), replace=("version", "promoted_at"))
        row = {"model": action.model, "version": action.to_version, "promoted_at": action.at}
        with writing(self.engine) as connection:
            connection.execute(statement, row)
            connection.execute(admin_actions.insert(), asdict(action))

    def set_shadow(self, action: AdminAction) -> None:
        """Make `action.to_version` the shadow of `action.model` on every worker and replica of this log (None: stop
        it), and record the action, in one transaction."""
        replace = ("shadow_version", "shadow_set_at")
        statement = upsert(self.engine.dialect, served_versions, ("model",), replace=replace)
        row = {"model": action.model, "shadow_version": action.to_version, "shadow_set_at": action.at}
        with writing(self.engine) as connection:
            connection.execute(statement, row)
            connection.execute(admin_actions.insert(), asdict(action))

    def record(self, action: AdminAction) -> None:
        """Record an action that changes nothing served (a comparison)."""
        with writing(self.engine) as connection:
            connection.execute(admin_actions.insert(), asdict(action))

    def admin_actions(self, model: str) -> list[AdminAction]:
        """The actions recorded on `model`, oldest first."""
        c = admin_actions.c
        query = (
            sa.select(c.at, c.caller, c.action, c.model, c.from_version, c.to_version)
            .where(c.model == model)
            .order_by(c.at, c.id)
        )
        with self.engine.connect() as connection:
            return [AdminAction(**row._mapping) for row in connection.execute(query)]

    def vetted(self, model: str, version: str) -> bool:
        """Whether `version` of `model` was compared with another version (either side), or shadowed: set as the
        shadow through the admin route, or its decisions logged as a shadow's (`CLF_SHADOW` included)."""
        c = admin_actions.c
        compared = sa.and_(c.action == "compare", sa.or_(c.from_version == version, c.to_version == version))
        shadowed = sa.and_(c.action == "shadow", c.to_version == version)
        recorded = sa.exists().where(c.model == model, sa.or_(compared, shadowed))
        s = shadow_predictions.c
        scored = sa.exists().where(s.model == model, s.version == version)
        with self.engine.connect() as connection:
            return bool(connection.execute(sa.select(sa.or_(recorded, scored))).scalar())

    def rollout(self) -> Rollout:
        """The versions promoted and the shadows set through the admin routes, by model, in one read."""
        c = served_versions.c
        with self.engine.connect() as connection:
            found = connection.execute(sa.select(c.model, c.version, c.shadow_version)).all()
        return Rollout(
            promoted={str(model): str(version) for model, version, _ in found if version is not None},
            shadows={str(model): str(shadow) for model, _, shadow in found if shadow is not None},
        )

    def write_shadows(self, records: Sequence[ShadowRecord]) -> None:
        """Insert shadow versions' decisions on logged requests (after their requests: same key), and give them to
        the labels that arrived first."""
        with writing(self.engine) as connection:
            self._insert_shadows.run(connection, records)
            self._label_shadowed(connection, records)

    def _label_shadowed(self, connection: sa.Connection, records: Sequence[ShadowRecord]) -> None:
        by_key = {record.key: record for record in records}
        c = labels.c
        keys = list(by_key)
        found: list[tuple[str, int]] = []
        for start in range(0, len(keys), SHADOW_LOOKUP_KEYS):
            chunk = keys[start : start + SHADOW_LOOKUP_KEYS]
            query = sa.select(c.key, c.row).where(c.key.in_(chunk), c.shadow_version.is_(None))
            found += [(str(key), int(row)) for key, row in connection.execute(query)]
        updates = []
        for key, row in found:
            record = by_key[key]
            if row < record.rows:
                codes, distinct = record.decision_keys[4 * row : 4 * row + 4], record.decision_keys[4 * record.rows :]
                updates.append(
                    {
                        "at_key": key,
                        "at_row": row,
                        "to_version": record.version,
                        "to_key": decode_key(codes, distinct),
                        "to_confidence": decode_float(record.confidence[8 * row : 8 * row + 8]),
                    }
                )
        if updates:
            statement = (
                sa.update(labels)
                .where(c.key == sa.bindparam("at_key"), c.row == sa.bindparam("at_row"))
                .values(
                    shadow_version=sa.bindparam("to_version"),
                    shadow_decision_key=sa.bindparam("to_key"),
                    shadow_confidence=sa.bindparam("to_confidence"),
                )
            )
            connection.execute(statement, updates)

    def version(self, model: str, version: str) -> tuple[str, dict[str, Any]] | None:
        """(task, metadata) of a model version ever served, or None."""
        query = sa.select(model_versions.c.task, model_versions.c.metadata).where(
            model_versions.c.model == model, model_versions.c.version == version
        )
        with self.engine.connect() as connection:
            found = connection.execute(query).first()
        return None if found is None else (found.task, orjson.loads(found.metadata))

    def models(self) -> set[str]:
        """Names of every model whose versions were ever served with this log."""
        with self.engine.connect() as connection:
            return set(connection.execute(sa.select(model_versions.c.model).distinct()).scalars())

    def versions(self, model: str) -> list[str]:
        """The versions of `model` ever served with this log, first served first."""
        query = (
            sa.select(model_versions.c.version)
            .where(model_versions.c.model == model)
            .order_by(model_versions.c.first_served_at, model_versions.c.version)
        )
        with self.engine.connect() as connection:
            return list(connection.execute(query).scalars())

    def find_predictions(self, wanted: Iterable[Prediction]) -> dict[Prediction, LoggedPrediction]:
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
            predictions[(key, row)] = LoggedPrediction(
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
        kept_from = _minute(datetime.fromtimestamp(issued_at(first_kept_key), UTC))
        with writing(self.engine) as connection:
            connection.execute(sa.delete(prediction_counts).where(prediction_counts.c.minute < kept_from))
        return deleted

    # --- feedback ----------------------------------------------------------------------------------------------

    def store_feedback(
        self, label_writes: Sequence[LabelWrite], outcome_writes: Sequence[OutcomeWrite], now: datetime
    ) -> Stored:
        """Store one request's labels and outcomes (see `store_feedback_groups`)."""
        (stored,) = self.store_feedback_groups([(label_writes, outcome_writes)], now)
        return stored

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
        first_labels: set[Prediction] = set()
        new_outcomes: set[tuple[str, int, str]] = set()
        with writing(self.engine) as connection:
            if label_writes:
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
                self._trim_history(connection, list({w.prediction.key for w in label_writes}))
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
                first_labels = {(k, r) for k, r in connection.execute(firsts).all()}
            if outcome_writes:
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
                new_outcomes = {(k, r, n) for k, r, n in connection.execute(news).all()}
        stored = []
        for group_labels, group_outcomes in groups:
            mine = {(w.prediction.key, w.prediction.row) for w in group_labels} & first_labels
            reported_here = {(w.prediction.key, w.prediction.row, w.name) for w in group_outcomes} & new_outcomes
            first_labels -= mine
            new_outcomes -= reported_here
            stored.append(Stored(mine, reported_here))
        return stored

    def _trim_history(self, connection: sa.Connection, keys: Sequence[str]) -> None:
        """Delete all but the last `LABEL_HISTORY_LENGTH` history labels of the predictions of `keys`' requests.

        One cheap count finds the predictions over the cap (mostly none); only those are trimmed. A transaction
        sees the labels committed before it: writers labelling one prediction at the same moment (PostgreSQL) can
        leave a few more, which its next label trims."""
        crowded = []
        for start in range(0, len(keys), HISTORY_TRIM_KEYS):
            chunk = keys[start : start + HISTORY_TRIM_KEYS]
            sql = _crowded_histories_sql(len(chunk), self.engine.dialect.positional)
            crowded += [{"k": key, "r": row} for key, row in connection.exec_driver_sql(sql, tuple(chunk))]
        if crowded:
            connection.execute(self._delete_older_history, crowded)

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

    # --- provenance --------------------------------------------------------------------------------------------

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

    def _recompute_labels(self, connection: sa.Connection, predictions: Sequence[Prediction]) -> tuple[int, int]:
        """Make each prediction's current label its latest label that is not void, or delete it when none is left;
        returns (predictions whose label changed back to an earlier one, predictions left unlabelled)."""
        h, c = label_history.c, labels.c
        restored = unlabelled = 0
        for start in range(0, len(predictions), VOID_CHUNK):
            chunk = set(predictions[start : start + VOID_CHUNK])
            keys = sorted({key for key, _ in chunk})
            latest: dict[Prediction, Any] = {}
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

    # --- realized metrics --------------------------------------------------------------------------------------

    def pair_counts(self, since: datetime, until: datetime, model: str | None = None) -> list[PairCount]:
        """Labelled predictions made in [since, until), counted by model, version, decision and label; a shadow
        version's decisions on them count under the shadow's version."""
        c = labels.c
        found = []
        served = (c.version, c.decision_key, c.confidence)
        shadowed = (c.shadow_version, c.shadow_decision_key, c.shadow_confidence)
        for version, decision, confidence in (served, shadowed):
            query = (
                sa.select(c.model, version, decision, c.truth_key, sa.func.count(), sa.func.sum(confidence))
                .where(c.predicted_at >= since, c.predicted_at < until, version.is_not(None))
                .group_by(c.model, version, decision, c.truth_key)
            )
            if model is not None:
                query = query.where(c.model == model)
            with self.engine.connect() as connection:
                found += [PairCount(*row) for row in connection.execute(query)]
        return found

    def logged_predictions(
        self, since: datetime, until: datetime, model: str | None = None
    ) -> dict[tuple[str, str], int]:
        """Logged predictions made in [since, until) by (model, version): whole minutes from the per-minute counts,
        the partial minutes at either end from the requests themselves."""
        first_whole, end_whole = _minute(since + timedelta(minutes=1) - timedelta(microseconds=1)), _minute(until)
        totals: dict[tuple[str, str], int] = {}
        with self.engine.connect() as connection:
            if first_whole < end_whole:
                c = prediction_counts.c
                query = (
                    sa.select(c.model, c.version, sa.func.sum(c.rows))
                    .where(c.minute >= first_whole, c.minute < end_whole)
                    .group_by(c.model, c.version)
                )
                self._add_counts(connection, query, c.model, model, totals)
                edges = [(since, first_whole), (end_whole, until)]
            else:
                edges = [(since, until)]
            r = prediction_requests.c
            for start, stop in edges:
                if start < stop:
                    query = (
                        sa.select(r.model, r.version, sa.func.sum(r.rows))
                        # keys sort by issue time (milliseconds): the primary key's range, no index of its own
                        .where(r.key >= first_key_at(start.timestamp()), r.key < first_key_at(stop.timestamp()))
                        .group_by(r.model, r.version)
                    )
                    self._add_counts(connection, query, r.model, model, totals)
        return totals

    @staticmethod
    def _add_counts(
        connection: sa.Connection,
        query: sa.Select[Any],
        column: Any,
        model: str | None,
        totals: dict[tuple[str, str], int],
    ) -> None:
        if model is not None:
            query = query.where(column == model)
        for name, version, rows in connection.execute(query):
            totals[(name, version)] = totals.get((name, version), 0) + int(rows)

    def outcome_totals(self, since: datetime, until: datetime, model: str | None = None) -> list[OutcomeTotal]:
        """Outcomes of the predictions made in [since, until), by model, version and outcome name."""
        c = outcomes.c
        query = (
            sa.select(c.model, c.version, c.name, sa.func.count(), sa.func.sum(c.value))
            .where(c.predicted_at >= since, c.predicted_at < until)
            .group_by(c.model, c.version, c.name)
        )
        if model is not None:
            query = query.where(c.model == model)
        with self.engine.connect() as connection:
            return [OutcomeTotal(*row) for row in connection.execute(query)]

    # --- export ------------------------------------------------------------------------------------------------

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

    def feedback_of(self, keys: Sequence[str]) -> tuple[dict[Prediction, Any], dict[Prediction, dict[str, float]]]:
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
        by_prediction: dict[Prediction, dict[str, float]] = {}
        for found in reported:
            by_prediction.setdefault((found.key, found.row), {})[found.name] = found.value
        return {(found.key, found.row): found for found in current}, by_prediction

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


def _last_of_each(writes: Sequence[LabelWrite], count: int) -> list[LabelWrite]:
    """`writes` in order, without all but the last `count` of each prediction's."""
    seen: dict[Prediction, int] = {}
    kept = []
    for write in reversed(writes):
        prediction = (write.prediction.key, write.prediction.row)
        seen[prediction] = seen.get(prediction, 0) + 1
        if seen[prediction] <= count:
            kept.append(write)
    return kept[::-1]


def _minute(moment: datetime) -> datetime:
    """The start of the minute `moment` is in."""
    return moment.replace(second=0, microsecond=0)


@functools.lru_cache(maxsize=256)
def _crowded_histories_sql(count: int, qmark: bool) -> str:
    """The predictions of `count` request keys whose label history is longer than `LABEL_HISTORY_LENGTH`, in the
    driver's own parameter style (a SQLAlchemy `IN` of hundreds of keys cost four times the query)."""
    markers = ", ".join(["?" if qmark else "%s"] * count)
    return (
        f'SELECT "key", "row" FROM label_history WHERE "key" IN ({markers}) '
        f'GROUP BY "key", "row" HAVING count(*) > {LABEL_HISTORY_LENGTH}'
    )


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
