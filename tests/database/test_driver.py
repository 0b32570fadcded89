"""The driver-level insert (`DriverStatement`) stores what SQLAlchemy's own insert would, on SQLite and on a real
PostgreSQL (bench/postgres.py)."""

from __future__ import annotations

import sqlalchemy as sa

from service.database.driver import DriverStatement
from service.database.engine import migrate, writing
from service.database.schema import label_history, prediction_requests
from tests.feedback.helpers import T0, request_record


def test_the_driver_level_insert_stores_what_sqlalchemy_would(engine: sa.Engine) -> None:
    """The log's hot insert skips SQLAlchemy's per-row handling; the stored values must not differ (a SQLite time
    is a string: a different format would compare wrongly)."""
    migrate(engine)
    ours, theirs = request_record(T0, inputs=[[1.5, 2.0]] * 3), request_record(T0, inputs=[[1.5, 2.0]] * 3)
    with writing(engine) as connection:
        DriverStatement(prediction_requests.insert(), engine.dialect).run(connection, [ours])
    with engine.begin() as connection:
        connection.execute(prediction_requests.insert(), [vars(theirs)])
    with engine.connect() as connection:
        raw = {
            row[0]: tuple(row[1:])
            for row in connection.exec_driver_sql(
                "SELECT key, model, version, created_at, request_id, rows, decision_keys, confidence, options, "
                "decisions, inputs FROM prediction_requests"
            )
        }
    assert raw[ours.key] == raw[theirs.key]


def test_rows_beyond_a_statement_go_in_whole_statements_and_one_for_the_rest(engine: sa.Engine) -> None:
    """Mappings of some of the table's columns, more rows than one statement carries: every row stored once."""
    migrate(engine)
    columns = ["key", "row", "truth_key", "received_at", "caller"]
    statement = DriverStatement(label_history.insert(), engine.dialect, columns)
    sent = [
        {"key": "k", "row": i, "truth_key": str(i), "received_at": T0, "caller": None}
        for i in range(2 * statement.rows_per_statement + 1)
    ]
    with writing(engine) as connection:
        statement.run(connection, sent)
    h = label_history.c
    with engine.connect() as connection:
        found = connection.execute(sa.select(h.row, h.truth_key, h.received_at).order_by(h.row)).all()
    assert [tuple(row) for row in found] == [(i, str(i), T0) for i in range(len(sent))]
