"""Realized figures' store: aggregates by prediction time, exact over any range; on SQLite and on a real PostgreSQL
(bench/postgres.py)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from service.feedback.feedback_store import LabelWrite, OutcomeWrite
from service.feedback.stores import LogStores
from tests.feedback.helpers import T0, feedback, logged, prediction, request_record


def test_pairs_predictions_and_outcomes_are_counted_by_prediction_time(stores: LogStores) -> None:
    early, inside, other = (
        request_record(T0),
        request_record(T0 + timedelta(hours=2)),
        request_record(T0 + timedelta(hours=2), model="breast_cancer", decisions=["benign"], confidence=[0.6]),
    )
    logged(stores.predictions, early, inside, other)
    writes = [
        LabelWrite("0", prediction(stores.predictions, early.key, 0)),
        LabelWrite("0", prediction(stores.predictions, inside.key, 0)),
        LabelWrite("7", prediction(stores.predictions, inside.key, 1)),
        LabelWrite("2", prediction(stores.predictions, inside.key, 2)),
        LabelWrite("malignant", prediction(stores.predictions, other.key, 0)),
    ]
    outcomes = [
        OutcomeWrite("clicked", 1.0, prediction(stores.predictions, inside.key, 0)),
        OutcomeWrite("clicked", 2.0, prediction(stores.predictions, inside.key, 1)),
    ]
    feedback(stores.feedback, writes, outcomes, T0 + timedelta(days=1))
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    pairs = sorted((p.model, p.decision_key, p.truth_key, p.count, round(p.confidence_sum, 6)) for p in
                   stores.realized.pair_counts(since, until))  # fmt: skip
    assert pairs == [
        ("breast_cancer", "benign", "malignant", 1, 0.6),
        ("digits", "0", "0", 1, 0.9),
        ("digits", "1", "7", 1, 0.9),
        ("digits", "2", "2", 1, 0.9),
    ]
    assert len(stores.realized.pair_counts(since, until, model="breast_cancer")) == 1
    assert stores.realized.logged_predictions(since, until) == {("digits", "v1"): 3, ("breast_cancer", "v1"): 1}
    until_excluded = stores.realized.logged_predictions(T0, since, model="digits")
    assert until_excluded == {("digits", "v1"): 3}  # `until` is exclusive
    (total,) = stores.realized.outcome_totals(since, until, model="digits")
    assert (total.name, total.count, total.value_sum) == ("clicked", 2, 3.0)


def test_logged_predictions_count_exactly_across_minute_edges(stores: LogStores) -> None:
    """Whole minutes come from the per-minute counts, the partial ones from the requests: any range is exact."""
    rng = np.random.default_rng(7)
    offsets = np.sort(rng.uniform(0, 600, 60))  # ten minutes of requests of 1 to 4 rows, two versions
    records = [
        request_record(T0 + timedelta(seconds=float(s)), version=f"v{i % 2}", decisions=["0"] * int(1 + i % 4))
        for i, s in enumerate(offsets)
    ]
    logged(stores.predictions, *records[:30])
    logged(stores.predictions, *records[30:])  # two writes: the counts of a minute add up
    for start, stop in [(0, 600), (10.5, 130.25), (59.9, 60.1), (61, 61), (125, 599.999), (-60, 1000), (240, 300)]:
        since, until = T0 + timedelta(seconds=start), T0 + timedelta(seconds=stop)
        expected: dict[tuple[str, str], int] = {}
        for r in records:
            if since <= r.created_at < until:
                expected[(r.model, r.version)] = expected.get((r.model, r.version), 0) + r.rows
        assert stores.realized.logged_predictions(since, until) == expected, (start, stop)
