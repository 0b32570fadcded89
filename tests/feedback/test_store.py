"""The prediction log's store, the same tests on SQLite and on a real PostgreSQL (tests/postgres.py)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.classifiers import DecisionKeys
from service.database.codecs import encode_floats, encode_keys
from service.database.engine import create_database_engine, current_revision, head_revision, migrate
from service.database.schema import label_history, labels, metadata, prediction_requests
from service.feedback.ids import first_key_at
from service.feedback.store import (
    LABEL_HISTORY_LENGTH,
    AdminAction,
    CallerLabels,
    LabelWrite,
    LogStore,
    OutcomeWrite,
    ShadowRecord,
    VoidResult,
)
from tests.feedback.helpers import T0, decisions_of, logged, prediction, request_record


@pytest.fixture
def engine(database_url: str) -> Iterator[sa.Engine]:
    engine = create_database_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def store(engine: sa.Engine) -> LogStore:
    migrate(engine)
    return LogStore(engine)


# --- migrations ----------------------------------------------------------------------------------------------------


def test_migrations_build_exactly_the_declared_schema(engine: sa.Engine) -> None:
    migrate(engine)
    assert current_revision(engine) == head_revision()
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_upgrading_keeps_a_log_written_by_an_older_version(engine: sa.Engine) -> None:
    migrate(engine, "0001")  # the first release's schema: the prediction log, no feedback tables
    old = request_record()
    with engine.begin() as connection:
        connection.execute(prediction_requests.insert(), [_without(vars(old), "caller")])
    assert "labels" not in sa.inspect(engine).get_table_names()
    migrate(engine)
    store = LogStore(engine)
    assert [prediction(store, old.key, row).decision_key for row in range(3)] == ["0", "1", "2"]
    store.store_feedback([LabelWrite("0", prediction(store, old.key, 0))], [], T0)
    assert store.prediction(old.key, 0)["label"]["truth_key"] == "0"  # type: ignore[index]


def test_upgrading_from_0003_keeps_feedback_with_no_caller(engine: sa.Engine) -> None:
    """0005 adds who sent each prediction, label and outcome: what was stored before is kept, sent by nobody."""
    migrate(engine, "0003")
    old = request_record()
    label = {
        "key": old.key, "row": 0, "model": "digits", "version": "v1", "predicted_at": T0, "decision_key": "0",
        "confidence": 0.9, "truth_key": "7", "first_batch": "b", "first_labelled_at": T0, "labelled_at": T0,
    }  # fmt: skip
    with engine.begin() as connection:
        connection.execute(prediction_requests.insert(), [_without(vars(old), "caller")])
        connection.execute(labels.insert(), [label])
        connection.execute(label_history.insert(), [{"key": old.key, "row": 0, "truth_key": "7", "received_at": T0}])
    migrate(engine)
    store = LogStore(engine)
    found = store.prediction(old.key, 0)
    assert found is not None
    assert (found["request"]["caller"], found["label"]["truth_key"], found["label"]["caller"]) == (None, "7", None)
    assert [(h["caller"], h["voided_at"]) for h in found["history"]] == [(None, None)]
    assert store.void_labels("anyone", None, T0) == VoidResult(voided=0, restored=0, unlabelled=0)


def _without(row: dict[str, Any], *columns: str) -> dict[str, Any]:
    """A row without the columns an older schema lacks."""
    return {name: value for name, value in row.items() if name not in columns}


def test_workers_starting_together_migrate_once(engine: sa.Engine) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            migrate(engine)
        except BaseException as exc:  # noqa: BLE001 -- collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert errors == []
    assert current_revision(engine) == head_revision()


# --- the log -------------------------------------------------------------------------------------------------------


def test_requests_are_found_by_key(store: LogStore) -> None:
    written = logged(store, request_record(), request_record(T0 + timedelta(seconds=1), decisions=["5"]))
    keys = list(written)
    result = {key: p for (key, _), p in store.find_predictions([(k, 0) for k in [*keys, "0" * 32]]).items()}
    assert set(result) == set(keys)
    second = result[keys[1]]
    assert (second.model, second.version, second.rows, second.decision_key) == ("digits", "v1", 1, "5")
    assert second.created_at == T0 + timedelta(seconds=1)  # an aware UTC time, on both databases
    assert second.confidence == 0.9
    beyond = store.find_predictions([(keys[1], 1)])[(keys[1], 1)]  # a row the request did not have
    assert (beyond.rows, beyond.decision_key) == (1, None)


def test_a_model_version_is_remembered_once(store: LogStore) -> None:
    store.remember_version("digits", "v1", "multiclass", {"classes": ["0", "1"]}, T0)
    store.remember_version("digits", "v1", "multiclass", {"classes": ["changed"]}, T0 + timedelta(days=1))
    assert store.version("digits", "v1") == ("multiclass", {"classes": ["0", "1"]})
    assert store.version("digits", "v2") is None
    assert store.models() == {"digits"}


# --- feedback ------------------------------------------------------------------------------------------------------


def test_first_label_then_relabel_keeps_the_history(store: LogStore) -> None:
    (key,) = logged(store, request_record())
    first = store.store_feedback([LabelWrite("7", prediction(store, key, 1))], [], T0 + timedelta(minutes=5))
    assert first.first_labels == {(key, 1)}
    again = store.store_feedback([LabelWrite("1", prediction(store, key, 1))], [], T0 + timedelta(minutes=9))
    assert again.first_labels == set()
    logged_prediction = store.prediction(key, 1)
    assert logged_prediction is not None
    assert logged_prediction["label"]["truth_key"] == "1"
    assert logged_prediction["label"]["labelled_at"] == T0 + timedelta(minutes=9)
    assert [h["truth_key"] for h in logged_prediction["history"]] == ["7", "1"]
    assert store.prediction(key, 0)["label"] is None  # type: ignore[index]
    assert store.prediction(key, 3) is None  # the request had 3 rows


def test_a_prediction_keeps_only_the_last_labels_of_its_history(store: LogStore) -> None:
    """Label history is capped per prediction, within one call and across calls; other predictions keep theirs."""
    (key,) = logged(store, request_record())
    many, few = prediction(store, key, 0), prediction(store, key, 1)
    sent = [str(i % 10) for i in range(LABEL_HISTORY_LENGTH + 15)]
    store.store_feedback(
        [*(LabelWrite(label, many) for label in sent), LabelWrite("3", few), LabelWrite("4", few)], [], T0
    )
    history = [h["truth_key"] for h in store.prediction(key, 0)["history"]]  # type: ignore[index]
    assert history == sent[-LABEL_HISTORY_LENGTH:]
    store.store_feedback([LabelWrite("9", many)], [], T0 + timedelta(minutes=1))
    history = [h["truth_key"] for h in store.prediction(key, 0)["history"]]  # type: ignore[index]
    assert history == [*sent[-LABEL_HISTORY_LENGTH + 1 :], "9"]
    assert [h["truth_key"] for h in store.prediction(key, 1)["history"]] == ["3", "4"]  # type: ignore[index]
    assert store.prediction(key, 0)["label"]["truth_key"] == "9"  # type: ignore[index]


def test_a_resent_outcome_replaces_its_value(store: LogStore) -> None:
    (key,) = logged(store, request_record())
    new = store.store_feedback([], [OutcomeWrite("played", 30.0, prediction(store, key, 0))], T0)
    assert new.new_outcomes == {(key, 0, "played")}
    resent = store.store_feedback(
        [],
        [
            OutcomeWrite("played", 45.0, prediction(store, key, 0)),
            OutcomeWrite("clicked", 1.0, prediction(store, key, 0)),
        ],
        T0,
    )
    assert resent.new_outcomes == {(key, 0, "clicked")}
    outcomes = store.prediction(key, 0)["outcomes"]  # type: ignore[index]
    assert [(o["name"], o["value"]) for o in outcomes] == [("clicked", 1.0), ("played", 45.0)]


def test_two_items_for_one_prediction_in_one_batch_keep_the_last(store: LogStore) -> None:
    (key,) = logged(store, request_record())
    stored = store.store_feedback(
        [LabelWrite("3", prediction(store, key, 0)), LabelWrite("4", prediction(store, key, 0))], [], T0
    )
    assert stored.first_labels == {(key, 0)}
    assert store.prediction(key, 0)["label"]["truth_key"] == "4"  # type: ignore[index]


def test_concurrent_first_labels_agree_on_which_was_first(store: LogStore) -> None:
    (key,) = logged(store, request_record())
    target = prediction(store, key, 2)
    results = []
    barrier = threading.Barrier(4)

    def label(truth: str) -> None:
        barrier.wait()
        results.append(store.store_feedback([LabelWrite(truth, target)], [], T0))

    threads = [threading.Thread(target=label, args=(str(i),)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert sum(len(r.first_labels) for r in results) == 1
    assert len(store.prediction(key, 2)["history"]) == 4  # type: ignore[index]


# --- provenance: who sent what, and voiding one caller's labels ---------------------------------------------------


def test_the_caller_of_a_prediction_of_its_labels_and_of_its_outcomes_is_kept(store: LogStore) -> None:
    (key,) = logged(store, replace(request_record(), caller="checkout"))
    target = prediction(store, key, 0)
    store.store_feedback(
        [LabelWrite("3", target, caller="labeller")], [OutcomeWrite("clicked", 1.0, target, caller="shop")], T0
    )
    store.store_feedback([LabelWrite("4", target, caller="reviewer")], [], T0 + timedelta(minutes=1))
    found = store.prediction(key, 0)
    assert found is not None
    assert (found["request"]["caller"], found["label"]["caller"]) == ("checkout", "reviewer")
    assert [(h["truth_key"], h["caller"]) for h in found["history"]] == [("3", "labeller"), ("4", "reviewer")]
    assert [(o["name"], o["caller"]) for o in found["outcomes"]] == [("clicked", "shop")]
    current, _ = store.feedback_of([key])
    assert current[(key, 0)].caller == "reviewer"


def test_voiding_a_caller_s_labels_restores_the_label_before_them_and_keeps_them_in_the_history(
    store: LogStore,
) -> None:
    (key,) = logged(store, request_record(decisions=["0", "1", "2"]))
    first, second, third = (prediction(store, key, row) for row in range(3))
    store.store_feedback([LabelWrite("0", first, caller="honest"), LabelWrite("5", third, caller="mallory")], [], T0)
    later = T0 + timedelta(hours=1)
    store.store_feedback(
        [LabelWrite("9", first, caller="mallory"), LabelWrite("9", second, caller="mallory")], [], later
    )
    assert store.pair_counts(T0, later) != []

    voided_at = T0 + timedelta(hours=2)
    result = store.void_labels("mallory", T0 + timedelta(minutes=30), voided_at)
    assert result == VoidResult(voided=2, restored=1, unlabelled=1)
    pairs = {(p.decision_key, p.truth_key): p.count for p in store.pair_counts(T0, later)}
    assert pairs == {("0", "0"): 1, ("2", "5"): 1}  # the first back to the honest label; the third's is older
    restored = store.prediction(key, 0)
    assert restored is not None
    assert (restored["label"]["truth_key"], restored["label"]["caller"]) == ("0", "honest")
    assert restored["label"]["labelled_at"] == T0
    assert [(h["truth_key"], h["caller"], h["voided_at"]) for h in restored["history"]] == [
        ("0", "honest", None),
        ("9", "mallory", voided_at),
    ]
    assert store.prediction(key, 1)["label"] is None  # type: ignore[index]
    current, _ = store.feedback_of([key])
    assert set(current) == {(key, 0), (key, 2)}
    assert store.void_labels("mallory", T0 + timedelta(minutes=30), voided_at) == VoidResult(0, 0, 0)

    everything = store.void_labels("mallory", None, voided_at)
    assert everything == VoidResult(voided=1, restored=0, unlabelled=1)
    assert {(p.decision_key, p.truth_key) for p in store.pair_counts(T0, later)} == {("0", "0")}
    relabelled = store.store_feedback([LabelWrite("1", second, caller="honest")], [], voided_at)
    assert relabelled.first_labels == {(key, 1)}  # a label after a void counts again


def test_callers_are_listed_with_their_labels(store: LogStore) -> None:
    (key,) = logged(store, request_record())
    first, second = prediction(store, key, 0), prediction(store, key, 1)
    store.store_feedback([LabelWrite("0", first), LabelWrite("1", second, caller="mallory")], [], T0)
    store.store_feedback([LabelWrite("9", first, caller="mallory")], [], T0 + timedelta(hours=1))
    store.void_labels("mallory", T0 + timedelta(minutes=30), T0 + timedelta(hours=2))
    assert store.label_callers() == [
        CallerLabels(None, labels=1, voided=0, first_received=T0, last_received=T0),
        CallerLabels("mallory", labels=2, voided=1, first_received=T0, last_received=T0 + timedelta(hours=1)),
    ]


# --- realized figures and retention --------------------------------------------------------------------------------


def test_pairs_predictions_and_outcomes_are_counted_by_prediction_time(store: LogStore) -> None:
    early, inside, other = (
        request_record(T0),
        request_record(T0 + timedelta(hours=2)),
        request_record(T0 + timedelta(hours=2), model="breast_cancer", decisions=["benign"], confidence=[0.6]),
    )
    logged(store, early, inside, other)
    writes = [
        LabelWrite("0", prediction(store, early.key, 0)),
        LabelWrite("0", prediction(store, inside.key, 0)),
        LabelWrite("7", prediction(store, inside.key, 1)),
        LabelWrite("2", prediction(store, inside.key, 2)),
        LabelWrite("malignant", prediction(store, other.key, 0)),
    ]
    outcomes = [
        OutcomeWrite("clicked", 1.0, prediction(store, inside.key, 0)),
        OutcomeWrite("clicked", 2.0, prediction(store, inside.key, 1)),
    ]
    store.store_feedback(writes, outcomes, T0 + timedelta(days=1))
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=3)
    pairs = sorted((p.model, p.decision_key, p.truth_key, p.count, round(p.confidence_sum, 6)) for p in
                   store.pair_counts(since, until))  # fmt: skip
    assert pairs == [
        ("breast_cancer", "benign", "malignant", 1, 0.6),
        ("digits", "0", "0", 1, 0.9),
        ("digits", "1", "7", 1, 0.9),
        ("digits", "2", "2", 1, 0.9),
    ]
    assert len(store.pair_counts(since, until, model="breast_cancer")) == 1
    assert store.logged_predictions(since, until) == {("digits", "v1"): 3, ("breast_cancer", "v1"): 1}
    assert store.logged_predictions(T0, since, model="digits") == {("digits", "v1"): 3}  # `until` is exclusive
    (total,) = store.outcome_totals(since, until, model="digits")
    assert (total.name, total.count, total.value_sum) == ("clicked", 2, 3.0)


def test_retention_deletes_old_predictions_with_their_feedback(store: LogStore) -> None:
    old, new = request_record(T0), request_record(T0 + timedelta(days=40))
    logged(store, old, new)
    for record in (old, new):
        store.store_feedback(
            [LabelWrite("0", prediction(store, record.key, 0))],
            [OutcomeWrite("clicked", 1.0, prediction(store, record.key, 0))],
            T0,
        )
    assert store.delete_before(first_key_at((T0 + timedelta(days=30)).timestamp())) == 3
    assert store.find_predictions([(old.key, 0), (new.key, 0)]).keys() == {(new.key, 0)}
    assert store.prediction(new.key, 0)["label"] is not None  # type: ignore[index]
    assert store.pair_counts(T0 - timedelta(days=1), T0 + timedelta(days=50)) != []
    assert store.logged_predictions(T0 - timedelta(days=1), T0 + timedelta(days=50)) == {("digits", "v1"): 3}
    with store.engine.connect() as connection:
        for table in ("labels", "label_history", "outcomes"):
            keys = connection.exec_driver_sql(f"SELECT DISTINCT key FROM {table}").scalars().all()
            assert keys == [new.key], table


def test_logged_predictions_count_exactly_across_minute_edges(store: LogStore) -> None:
    """Whole minutes come from the per-minute counts, the partial ones from the requests: any range is exact."""
    rng = np.random.default_rng(7)
    offsets = np.sort(rng.uniform(0, 600, 60))  # ten minutes of requests of 1 to 4 rows, two versions
    records = [
        request_record(T0 + timedelta(seconds=float(s)), version=f"v{i % 2}", decisions=["0"] * int(1 + i % 4))
        for i, s in enumerate(offsets)
    ]
    logged(store, *records[:30])
    logged(store, *records[30:])  # two writes: the counts of a minute add up
    for start, stop in [(0, 600), (10.5, 130.25), (59.9, 60.1), (61, 61), (125, 599.999), (-60, 1000), (240, 300)]:
        since, until = T0 + timedelta(seconds=start), T0 + timedelta(seconds=stop)
        expected: dict[tuple[str, str], int] = {}
        for r in records:
            if since <= r.created_at < until:
                expected[(r.model, r.version)] = expected.get((r.model, r.version), 0) + r.rows
        assert store.logged_predictions(since, until) == expected, (start, stop)


@pytest.mark.parametrize(
    "keys",
    [
        ["0"],
        ["b", "a", "b", None, "a"],
        ['["even","loop"]', "[]", '["even","loop"]'],
        [f"c{i % 300}" for i in range(1000)],
    ],
)
def test_each_row_s_decision_and_confidence_read_back(store: LogStore, keys: list[str | None]) -> None:
    confidence = np.linspace(0.5, 1.0, len(keys))
    record = replace(
        request_record(),
        rows=len(keys),
        decision_keys=encode_keys(decisions_of(keys)),
        confidence=encode_floats(confidence),
    )
    store.write_requests([record])
    found = store.find_predictions([(record.key, row) for row in range(len(keys))])
    assert [found[(record.key, row)].decision_key for row in range(len(keys))] == keys
    assert [found[(record.key, row)].confidence for row in range(len(keys))] == confidence.tolist()


def test_the_driver_level_insert_stores_what_sqlalchemy_would(store: LogStore) -> None:
    """The log's hot insert skips SQLAlchemy's per-row handling; the stored values must not differ (a SQLite time
    is a string: a different format would compare wrongly)."""
    ours, theirs = request_record(T0, inputs=[[1.5, 2.0]] * 3), request_record(T0, inputs=[[1.5, 2.0]] * 3)
    store.write_requests([ours])
    with store.engine.begin() as connection:
        connection.execute(prediction_requests.insert(), [vars(theirs)])
    with store.engine.connect() as connection:
        raw = {
            row[0]: tuple(row[1:])
            for row in connection.exec_driver_sql(
                "SELECT key, model, version, created_at, request_id, rows, decision_keys, confidence, options, "
                "decisions, inputs FROM prediction_requests"
            )
        }
    assert raw[ours.key] == raw[theirs.key]


def test_requests_written_together_keep_their_own_results(store: LogStore) -> None:
    """A group commit: one transaction, but each request learns which labels and outcomes it was first with."""
    (key,) = logged(store, request_record())
    target, other = prediction(store, key, 0), prediction(store, key, 1)
    first, second = store.store_feedback_groups(
        [
            ([LabelWrite("3", target)], [OutcomeWrite("clicked", 1.0, target)]),
            ([LabelWrite("4", target), LabelWrite("5", other)], [OutcomeWrite("clicked", 2.0, target)]),
        ],
        T0,
    )
    assert (first.first_labels, first.new_outcomes) == ({(key, 0)}, {(key, 0, "clicked")})
    assert (second.first_labels, second.new_outcomes) == ({(key, 1)}, set())
    logged_target = store.prediction(key, 0)
    assert logged_target is not None
    assert logged_target["label"]["truth_key"] == "4"  # the later request's
    assert [h["truth_key"] for h in logged_target["history"]] == ["3", "4"]
    assert [(o["name"], o["value"]) for o in logged_target["outcomes"]] == [("clicked", 2.0)]


def test_a_request_of_a_model_of_many_classes_stores_only_the_keys_it_used(store: LogStore) -> None:
    classes = [f"class {i}" for i in range(1000)]
    decisions = DecisionKeys(classes, np.array([7, 999, 7]))
    encoded = encode_keys(decisions)
    assert len(encoded) < 100  # three codes and two names, not a thousand names
    record = replace(request_record(), rows=3, decision_keys=encoded, confidence=encode_floats(np.ones(3)))
    store.write_requests([record])
    found = store.find_predictions([(record.key, row) for row in range(3)])
    assert [found[(record.key, row)].decision_key for row in range(3)] == ["class 7", "class 999", "class 7"]


def test_a_label_that_arrived_before_the_shadows_decisions_gets_them(store: LogStore) -> None:
    (key,) = logged(store, request_record(decisions=["0", "1", "2"]))
    store.store_feedback([LabelWrite("1", prediction(store, key, 1))], [], T0 + timedelta(minutes=1))
    shadow = ShadowRecord(key, "digits", "v2", 3, encode_keys(decisions_of(["0", "7", "2"])), encode_floats(np.ones(3)))
    store.write_shadows([shadow])
    pairs = {(p.version, p.decision_key, p.truth_key): p.count for p in store.pair_counts(T0, T0 + timedelta(hours=1))}
    assert pairs == {("v1", "1", "1"): 1, ("v2", "7", "1"): 1}  # the served version right, its shadow wrong
    relabelled = store.store_feedback([LabelWrite("7", prediction(store, key, 1))], [], T0 + timedelta(minutes=2))
    assert relabelled.first_labels == set()
    pairs = {(p.version, p.decision_key, p.truth_key): p.count for p in store.pair_counts(T0, T0 + timedelta(hours=1))}
    assert pairs == {("v1", "1", "7"): 1, ("v2", "7", "7"): 1}  # a relabel keeps the shadow's decision


# --- admin actions -------------------------------------------------------------------------------------------------


def test_admin_actions_are_recorded_beside_the_served_version(store: LogStore) -> None:
    promoted = AdminAction(T0, "key:ops", "promote", "digits", "v1", "v2")
    shadowed = AdminAction(T0 + timedelta(minutes=1), "client:127.0.0.1", "shadow", "digits", None, "v3")
    stopped = AdminAction(T0 + timedelta(minutes=2), "cli:alice", "stop_shadow", "digits", "v3", None)
    store.promote(promoted)
    store.set_shadow(shadowed)
    assert store.rollout().promoted == {"digits": "v2"} and store.rollout().shadows == {"digits": "v3"}
    store.set_shadow(stopped)
    assert store.rollout().shadows == {}
    other = AdminAction(T0, "key:ops", "promote", "breast_cancer", None, "v9")
    store.promote(other)
    assert store.admin_actions("digits") == [promoted, shadowed, stopped]
    assert store.admin_actions("breast_cancer") == [other]


def test_a_version_is_vetted_once_compared_or_shadowed(store: LogStore) -> None:
    assert not store.vetted("digits", "v2")
    store.record(AdminAction(T0, "cli:alice", "compare", "digits", "v1", "v2"))
    assert store.vetted("digits", "v2") and store.vetted("digits", "v1")  # either side of a comparison
    assert not store.vetted("breast_cancer", "v2")
    store.set_shadow(AdminAction(T0, "key:ops", "shadow", "digits", None, "v3"))  # the route
    assert store.vetted("digits", "v3")
    (key,) = logged(store, request_record())  # CLF_SHADOW: its decisions in the log
    store.write_shadows([ShadowRecord(key, "digits", "v4", 3, encode_keys(decisions_of(["0", "1", "2"])),
                                      encode_floats(np.ones(3)))])  # fmt: skip
    assert store.vetted("digits", "v4")
    store.promote(AdminAction(T0, "key:ops", "promote", "digits", "v1", "v5"))
    assert not store.vetted("digits", "v5")  # a promotion is no evidence
