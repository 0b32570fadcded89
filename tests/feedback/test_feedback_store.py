"""Feedback's store (labels, their history, outcomes), the same tests on SQLite and on a real PostgreSQL
(bench/postgres.py)."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from service.feedback.feedback_store import (
    LABEL_HISTORY_LENGTH,
    CallerLabels,
    LabelWrite,
    OutcomeWrite,
    VoidResult,
    _crowded_histories_sql,
)
from service.feedback.stores import LogStores
from tests.feedback.helpers import T0, feedback, logged, prediction, request_record


def test_first_label_then_relabel_keeps_the_history(stores: LogStores) -> None:
    (key,) = logged(stores.predictions, request_record())
    first = feedback(
        stores.feedback, [LabelWrite("7", prediction(stores.predictions, key, 1))], [], T0 + timedelta(minutes=5)
    )
    assert first.first_labels == {(key, 1)}
    again = feedback(
        stores.feedback, [LabelWrite("1", prediction(stores.predictions, key, 1))], [], T0 + timedelta(minutes=9)
    )
    assert again.first_labels == set()
    logged_prediction = stores.predictions.prediction(key, 1)
    assert logged_prediction is not None
    assert logged_prediction["label"]["truth_key"] == "1"
    assert logged_prediction["label"]["labelled_at"] == T0 + timedelta(minutes=9)
    assert [h["truth_key"] for h in logged_prediction["history"]] == ["7", "1"]
    assert stores.predictions.prediction(key, 0)["label"] is None  # type: ignore[index]
    assert stores.predictions.prediction(key, 3) is None  # the request had 3 rows


def test_a_prediction_keeps_only_the_last_labels_of_its_history(stores: LogStores) -> None:
    """Label history is capped per prediction, within one call and across calls; other predictions keep theirs."""
    (key,) = logged(stores.predictions, request_record())
    many, few = prediction(stores.predictions, key, 0), prediction(stores.predictions, key, 1)
    sent = [str(i % 10) for i in range(LABEL_HISTORY_LENGTH + 15)]
    feedback(
        stores.feedback,
        [*(LabelWrite(label, many) for label in sent), LabelWrite("3", few), LabelWrite("4", few)],
        [],
        T0,
    )
    history = [h["truth_key"] for h in stores.predictions.prediction(key, 0)["history"]]  # type: ignore[index]
    assert history == sent[-LABEL_HISTORY_LENGTH:]
    feedback(stores.feedback, [LabelWrite("9", many)], [], T0 + timedelta(minutes=1))
    history = [h["truth_key"] for h in stores.predictions.prediction(key, 0)["history"]]  # type: ignore[index]
    assert history == [*sent[-LABEL_HISTORY_LENGTH + 1 :], "9"]
    assert [h["truth_key"] for h in stores.predictions.prediction(key, 1)["history"]] == ["3", "4"]  # type: ignore[index]
    assert stores.predictions.prediction(key, 0)["label"]["truth_key"] == "9"  # type: ignore[index]


def test_the_history_cap_counts_only_the_labelled_predictions_histories(stores: LogStores) -> None:
    """Each batch counts the histories of the predictions it labels, through the (key, row) index: counted by
    request key, it read every row's history of each request touched, more with every label stored."""
    engine = stores.feedback.engine
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's planner chooses by the table's size; SQLite's plan is fixed")
    with engine.connect() as connection:
        plan = connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + _crowded_histories_sql(2, qmark=True), ("a", 0, "b", 1)
        ).all()
    assert any("INDEX" in detail and "(key=? AND row=?)" in detail for *_, detail in plan), plan


def test_a_resent_outcome_replaces_its_value(stores: LogStores) -> None:
    (key,) = logged(stores.predictions, request_record())
    new = feedback(stores.feedback, [], [OutcomeWrite("played", 30.0, prediction(stores.predictions, key, 0))], T0)
    assert new.new_outcomes == {(key, 0, "played")}
    resent = feedback(
        stores.feedback,
        [],
        [
            OutcomeWrite("played", 45.0, prediction(stores.predictions, key, 0)),
            OutcomeWrite("clicked", 1.0, prediction(stores.predictions, key, 0)),
        ],
        T0,
    )
    assert resent.new_outcomes == {(key, 0, "clicked")}
    outcomes = stores.predictions.prediction(key, 0)["outcomes"]  # type: ignore[index]
    assert [(o["name"], o["value"]) for o in outcomes] == [("clicked", 1.0), ("played", 45.0)]


def test_two_items_for_one_prediction_in_one_batch_keep_the_last(stores: LogStores) -> None:
    (key,) = logged(stores.predictions, request_record())
    stored = feedback(
        stores.feedback,
        [
            LabelWrite("3", prediction(stores.predictions, key, 0)),
            LabelWrite("4", prediction(stores.predictions, key, 0)),
        ],
        [],
        T0,
    )
    assert stored.first_labels == {(key, 0)}
    assert stores.predictions.prediction(key, 0)["label"]["truth_key"] == "4"  # type: ignore[index]


def test_requests_written_together_keep_their_own_results(stores: LogStores) -> None:
    """A group commit: one transaction, but each request learns which labels and outcomes it was first with."""
    (key,) = logged(stores.predictions, request_record())
    target, other = prediction(stores.predictions, key, 0), prediction(stores.predictions, key, 1)
    first, second = stores.feedback.store_feedback_groups(
        [
            ([LabelWrite("3", target)], [OutcomeWrite("clicked", 1.0, target)]),
            ([LabelWrite("4", target), LabelWrite("5", other)], [OutcomeWrite("clicked", 2.0, target)]),
        ],
        T0,
    )
    assert (first.first_labels, first.new_outcomes) == ({(key, 0)}, {(key, 0, "clicked")})
    assert (second.first_labels, second.new_outcomes) == ({(key, 1)}, set())
    logged_target = stores.predictions.prediction(key, 0)
    assert logged_target is not None
    assert logged_target["label"]["truth_key"] == "4"  # the later request's
    assert [h["truth_key"] for h in logged_target["history"]] == ["3", "4"]
    assert [(o["name"], o["value"]) for o in logged_target["outcomes"]] == [("clicked", 2.0)]


def test_concurrent_first_labels_agree_on_which_was_first(stores: LogStores) -> None:
    (key,) = logged(stores.predictions, request_record())
    target = prediction(stores.predictions, key, 2)
    results = []
    barrier = threading.Barrier(4)

    def label(truth: str) -> None:
        barrier.wait()
        results.append(feedback(stores.feedback, [LabelWrite(truth, target)], [], T0))

    threads = [threading.Thread(target=label, args=(str(i),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sum(len(r.first_labels) for r in results) == 1
    assert len(stores.predictions.prediction(key, 2)["history"]) == 4  # type: ignore[index]


def test_the_caller_of_a_prediction_of_its_labels_and_of_its_outcomes_is_kept(stores: LogStores) -> None:
    (key,) = logged(stores.predictions, request_record()._replace(caller="checkout"))
    target = prediction(stores.predictions, key, 0)
    feedback(
        stores.feedback,
        [LabelWrite("3", target, caller="labeller")],
        [OutcomeWrite("clicked", 1.0, target, caller="shop")],
        T0,
    )
    feedback(stores.feedback, [LabelWrite("4", target, caller="reviewer")], [], T0 + timedelta(minutes=1))
    found = stores.predictions.prediction(key, 0)
    assert found is not None
    assert (found["request"]["caller"], found["label"]["caller"]) == ("checkout", "reviewer")
    assert [(h["truth_key"], h["caller"]) for h in found["history"]] == [("3", "labeller"), ("4", "reviewer")]
    assert [(o["name"], o["caller"]) for o in found["outcomes"]] == [("clicked", "shop")]
    current, _ = stores.feedback.feedback_of([key])
    assert current[(key, 0)].caller == "reviewer"


def test_voiding_a_caller_s_labels_restores_the_label_before_them_and_keeps_them_in_the_history(
    stores: LogStores,
) -> None:
    (key,) = logged(stores.predictions, request_record(decisions=["0", "1", "2"]))
    first, second, third = (prediction(stores.predictions, key, row) for row in range(3))
    feedback(
        stores.feedback, [LabelWrite("0", first, caller="honest"), LabelWrite("5", third, caller="mallory")], [], T0
    )
    later = T0 + timedelta(hours=1)
    feedback(
        stores.feedback,
        [LabelWrite("9", first, caller="mallory"), LabelWrite("9", second, caller="mallory")],
        [],
        later,
    )
    assert stores.realized.pair_counts(T0, later) != []

    voided_at = T0 + timedelta(hours=2)
    result = stores.feedback.void_labels("mallory", T0 + timedelta(minutes=30), voided_at)
    assert result == VoidResult(voided=2, restored=1, unlabelled=1)
    pairs = {(p.decision_key, p.truth_key): p.count for p in stores.realized.pair_counts(T0, later)}
    assert pairs == {("0", "0"): 1, ("2", "5"): 1}  # the first back to the honest label; the third's is older
    restored = stores.predictions.prediction(key, 0)
    assert restored is not None
    assert (restored["label"]["truth_key"], restored["label"]["caller"]) == ("0", "honest")
    assert restored["label"]["labelled_at"] == T0
    assert [(h["truth_key"], h["caller"], h["voided_at"]) for h in restored["history"]] == [
        ("0", "honest", None),
        ("9", "mallory", voided_at),
    ]
    assert stores.predictions.prediction(key, 1)["label"] is None  # type: ignore[index]
    current, _ = stores.feedback.feedback_of([key])
    assert set(current) == {(key, 0), (key, 2)}
    assert stores.feedback.void_labels("mallory", T0 + timedelta(minutes=30), voided_at) == VoidResult(0, 0, 0)

    everything = stores.feedback.void_labels("mallory", None, voided_at)
    assert everything == VoidResult(voided=1, restored=0, unlabelled=1)
    assert {(p.decision_key, p.truth_key) for p in stores.realized.pair_counts(T0, later)} == {("0", "0")}
    relabelled = feedback(stores.feedback, [LabelWrite("1", second, caller="honest")], [], voided_at)
    assert relabelled.first_labels == {(key, 1)}  # a label after a void counts again


def test_callers_are_listed_with_their_labels(stores: LogStores) -> None:
    (key,) = logged(stores.predictions, request_record())
    first, second = prediction(stores.predictions, key, 0), prediction(stores.predictions, key, 1)
    feedback(stores.feedback, [LabelWrite("0", first), LabelWrite("1", second, caller="mallory")], [], T0)
    feedback(stores.feedback, [LabelWrite("9", first, caller="mallory")], [], T0 + timedelta(hours=1))
    stores.feedback.void_labels("mallory", T0 + timedelta(minutes=30), T0 + timedelta(hours=2))
    assert stores.feedback.label_callers() == [
        CallerLabels(None, labels=1, voided=0, first_received=T0, last_received=T0),
        CallerLabels("mallory", labels=2, voided=1, first_received=T0, last_received=T0 + timedelta(hours=1)),
    ]
