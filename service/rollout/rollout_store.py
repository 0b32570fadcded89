"""Rollout's queries: the model versions ever served (`model_versions`), what every worker and replica serves and
shadows (`served_versions`), who changed it or compared two versions (`admin_actions`), and the shadows' decisions
on logged requests (`shadow_predictions`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Literal

import orjson
import sqlalchemy as sa

from ..database.codecs import decode_float, decode_key
from ..database.dialect import insert, upsert
from ..database.driver import DriverStatement
from ..database.engine import writing
from ..database.schema import admin_actions, labels, model_versions, served_versions, shadow_predictions

SHADOW_LOOKUP_KEYS = 500  # request keys per lookup of the labels a shadow's decisions arrived after


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


class RolloutStore:
    """Model versions, what is served and shadowed, admin actions and shadows' decisions, over one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._insert_shadows = DriverStatement(shadow_predictions.insert(), engine.dialect)

    def remember_version(self, model: str, version: str, task: str, metadata: Mapping[str, Any], now: datetime) -> None:
        """Record a served model version (once): feedback and realized metrics read it when no worker serves it."""
        statement = insert(self.engine.dialect, model_versions)
        statement = statement.on_conflict_do_nothing(index_elements=["model", "version"])
        row = {"model": model, "version": version, "task": task, "metadata": orjson.dumps(metadata).decode()}
        with writing(self.engine) as connection:
            connection.execute(statement, {**row, "first_served_at": now})

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

    def promote(self, action: AdminAction) -> None:
        """Make `action.to_version` the version every worker and replica of this log serves as `action.model`, and
        record the action, in one transaction."""
        self._serve(action, {"version": action.to_version, "promoted_at": action.at})

    def set_shadow(self, action: AdminAction) -> None:
        """Make `action.to_version` the shadow of `action.model` on every worker and replica of this log (None: stop
        it), and record the action, in one transaction."""
        self._serve(action, {"shadow_version": action.to_version, "shadow_set_at": action.at})

    def _serve(self, action: AdminAction, changes: dict[str, Any]) -> None:
        """Set `changes` in the row of `action.model` and record the action, in one transaction."""
        statement = upsert(self.engine.dialect, served_versions, ("model",), replace=tuple(changes))
        with writing(self.engine) as connection:
            connection.execute(statement, {"model": action.model, **changes})
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
        """Give the shadows' decisions on labelled rows to their labels (a label that arrives later takes them from
        `PredictionStore.find_predictions`). This store writes `labels` here only: in the shadows' own transaction,
        so a label never misses the decisions written with it."""
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
