"""Realized figures' queries: aggregates over a time range of the labelled predictions (`labels`), their outcomes
(`outcomes`) and the logged predictions (`prediction_counts`, `prediction_requests`). Reads only: the copies and
counts the other stores write (schema.py) make each figure an aggregate, never a scan of the whole log."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..database.schema import labels, outcomes, prediction_counts, prediction_requests
from .ids import first_key_at
from .prediction_store import minute_start


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


class RealizedStore:
    """The aggregates realized figures and take rates read, over one engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

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
        first_whole, end_whole = (
            minute_start(since + timedelta(minutes=1) - timedelta(microseconds=1)),
            minute_start(until),
        )
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
