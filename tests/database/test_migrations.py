"""The log's migrations build the declared schema, keep what older versions wrote, and run once however many
workers start together; on SQLite and on a real PostgreSQL (bench/postgres.py)."""

from __future__ import annotations

import threading
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from service.database.engine import current_revision, head_revision, migrate
from service.database.schema import label_history, labels, metadata, prediction_requests
from service.feedback.feedback_store import LabelWrite, VoidResult
from service.feedback.stores import LogStores
from tests.feedback.helpers import T0, feedback, prediction, request_record


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
        connection.execute(prediction_requests.insert(), [_without(old._asdict(), "caller")])
    assert "labels" not in sa.inspect(engine).get_table_names()
    migrate(engine)
    stores = LogStores.over(engine)
    assert [prediction(stores.predictions, old.key, row).decision_key for row in range(3)] == ["0", "1", "2"]
    feedback(stores.feedback, [LabelWrite("0", prediction(stores.predictions, old.key, 0))], [], T0)
    assert stores.predictions.prediction(old.key, 0)["label"]["truth_key"] == "0"  # type: ignore[index]


def test_upgrading_from_0003_keeps_feedback_with_no_caller(engine: sa.Engine) -> None:
    """0005 adds who sent each prediction, label and outcome: what was stored before is kept, sent by nobody."""
    migrate(engine, "0003")
    old = request_record()
    label = {
        "key": old.key, "row": 0, "model": "digits", "version": "v1", "predicted_at": T0, "decision_key": "0",
        "confidence": 0.9, "truth_key": "7", "first_batch": "b", "first_labelled_at": T0, "labelled_at": T0,
    }  # fmt: skip
    with engine.begin() as connection:
        connection.execute(prediction_requests.insert(), [_without(old._asdict(), "caller")])
        connection.execute(labels.insert(), [label])
        connection.execute(label_history.insert(), [{"key": old.key, "row": 0, "truth_key": "7", "received_at": T0}])
    migrate(engine)
    stores = LogStores.over(engine)
    found = stores.predictions.prediction(old.key, 0)
    assert found is not None
    assert (found["request"]["caller"], found["label"]["truth_key"], found["label"]["caller"]) == (None, "7", None)
    assert [(h["caller"], h["voided_at"]) for h in found["history"]] == [(None, None)]
    assert stores.feedback.void_labels("anyone", None, T0) == VoidResult(voided=0, restored=0, unlabelled=0)


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
