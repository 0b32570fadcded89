"""The request log's store, the same tests on SQLite and on a real PostgreSQL (bench/postgres.py)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest

from service.classifiers import DecisionKeys
from service.database.codecs import encode_floats, encode_keys
from service.feedback.feedback_store import LabelWrite, OutcomeWrite
from service.feedback.ids import first_key_at
from service.feedback.stores import LogStores
from tests.feedback.helpers import T0, decisions_of, feedback, logged, prediction, request_record


def test_requests_are_found_by_key(stores: LogStores) -> None:
    store = stores.predictions
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


@pytest.mark.parametrize(
    "keys",
    [
        ["0"],
        ["b", "a", "b", None, "a"],
        ['["even","loop"]', "[]", '["even","loop"]'],
        [f"c{i % 300}" for i in range(1000)],
    ],
)
def test_each_row_s_decision_and_confidence_read_back(stores: LogStores, keys: list[str | None]) -> None:
    store = stores.predictions
    confidence = np.linspace(0.5, 1.0, len(keys))
    record = request_record()._replace(
        rows=len(keys),
        decision_keys=encode_keys(decisions_of(keys)),
        confidence=encode_floats(confidence),
    )
    store.write_requests([record])
    found = store.find_predictions([(record.key, row) for row in range(len(keys))])
    assert [found[(record.key, row)].decision_key for row in range(len(keys))] == keys
    assert [found[(record.key, row)].confidence for row in range(len(keys))] == confidence.tolist()


def test_a_request_of_a_model_of_many_classes_stores_only_the_keys_it_used(stores: LogStores) -> None:
    store = stores.predictions
    classes = [f"class {i}" for i in range(1000)]
    decisions = DecisionKeys(classes, np.array([7, 999, 7]))
    encoded = encode_keys(decisions)
    assert len(encoded) < 100  # three codes and two names, not a thousand names
    record = request_record()._replace(rows=3, decision_keys=encoded, confidence=encode_floats(np.ones(3)))
    store.write_requests([record])
    found = store.find_predictions([(record.key, row) for row in range(3)])
    assert [found[(record.key, row)].decision_key for row in range(3)] == ["class 7", "class 999", "class 7"]


def test_retention_deletes_old_predictions_with_their_feedback(stores: LogStores) -> None:
    old, new = request_record(T0), request_record(T0 + timedelta(days=40))
    logged(stores.predictions, old, new)
    for record in (old, new):
        feedback(
            stores.feedback,
            [LabelWrite("0", prediction(stores.predictions, record.key, 0))],
            [OutcomeWrite("clicked", 1.0, prediction(stores.predictions, record.key, 0))],
            T0,
        )
    assert stores.predictions.delete_before(first_key_at((T0 + timedelta(days=30)).timestamp())) == 3
    assert stores.predictions.find_predictions([(old.key, 0), (new.key, 0)]).keys() == {(new.key, 0)}
    assert stores.predictions.prediction(new.key, 0)["label"] is not None  # type: ignore[index]
    assert stores.realized.pair_counts(T0 - timedelta(days=1), T0 + timedelta(days=50)) != []
    assert stores.realized.logged_predictions(T0 - timedelta(days=1), T0 + timedelta(days=50)) == {("digits", "v1"): 3}
    with stores.engine.connect() as connection:
        for table in ("labels", "label_history", "outcomes"):
            keys = connection.exec_driver_sql(f"SELECT DISTINCT key FROM {table}").scalars().all()
            assert keys == [new.key], table
