"""The driver-level insert (`DriverStatement`) stores what SQLAlchemy's own executemany would, on SQLite and on a
real PostgreSQL (bench/postgres.py), whatever the values hold; and it refuses a statement it would cut wrongly."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from service.database.dialect import insert, upsert
from service.database.driver import DriverStatement, UnsupportedStatement
from service.database.engine import migrate, writing
from service.database.schema import label_history, labels, prediction_counts, prediction_requests
from tests.feedback.helpers import T0, request_record

# what a value may hold that a statement cut at " VALUES " and counted by parentheses must not trip on
AWKWARD = ["plain", "it's", 'say "hi"', "a (b", "c) d", "((", "))", " VALUES ", "x) VALUES (?, %s, %%s", "é 中", ""]


def stored(engine: sa.Engine, sql: str) -> dict[Any, tuple[Any, ...]]:
    """Rows as the driver returns them, by their first column: what is on disk, before any column type reads it
    (a SQLite time is a string, and a different format would compare wrongly)."""
    with engine.connect() as connection:
        return {row[0]: tuple(row[1:]) for row in connection.exec_driver_sql(sql)}


def test_requests_store_what_sqlalchemy_would(engine: sa.Engine) -> None:
    """The log's hot insert, with NULLs and awkward text in its string columns."""
    migrate(engine)
    ours, theirs = [], []
    for index, text in enumerate(AWKWARD):
        for into in (ours, theirs):
            record = request_record(T0 + timedelta(seconds=index), inputs=[[1.5, 2.0]] * 3, request_id=text or None)
            into.append({**record._asdict(), "options": f'{{"note": "{text}"}}', "caller": text or None})
    ours[0]["inputs"] = theirs[0]["inputs"] = None
    with writing(engine) as connection:
        DriverStatement(prediction_requests.insert(), engine.dialect).run(connection, ours)
    with engine.begin() as connection:
        connection.execute(prediction_requests.insert(), theirs)
    raw = stored(
        engine,
        "SELECT key, model, version, created_at, request_id, rows, decision_keys, confidence, options, decisions, "
        "inputs, caller FROM prediction_requests",
    )
    assert len(raw) == 2 * len(AWKWARD)
    for mine, sqlalchemy_s in zip(ours, theirs, strict=True):
        assert raw[mine["key"]] == raw[sqlalchemy_s["key"]]
    assert {row[3] for row in raw.values()} == {text or None for text in AWKWARD}  # every value arrived as sent


def label_rows(prefix: str, truth: str) -> list[dict[str, Any]]:
    return [
        {
            "key": f"{prefix}{index:031d}",
            "row": index,
            "model": "m",
            "version": "v1",
            "predicted_at": T0,
            "decision_key": text or None,
            "confidence": 0.25 * (index % 4),
            "truth_key": f"{truth}{text}",
            "first_batch": "b",
            "first_labelled_at": T0,
            "labelled_at": T0 + timedelta(minutes=index),
            "shadow_version": None if index % 2 else "v2",
            "shadow_decision_key": None if index % 2 else text,
            "shadow_confidence": None if index % 2 else 0.5,
            "caller": None if index % 3 else text,
        }
        for index, text in enumerate(AWKWARD)
    ]


def test_an_upsert_stores_and_replaces_what_sqlalchemy_would(engine: sa.Engine) -> None:
    """The feedback upsert (`... ON CONFLICT ... DO UPDATE`): first inserts, then replacements of the same keys,
    more rows than one statement carries."""
    migrate(engine)
    statement = upsert(engine.dialect, labels, ("key", "row"), ("truth_key", "labelled_at", "caller"))
    driver = DriverStatement(statement, engine.dialect)
    assert len(AWKWARD) > driver.rows_per_statement  # whole statements and a last, shorter one
    for truth in ("first ", "second "):
        with writing(engine) as connection:
            driver.run(connection, label_rows("o", truth))
        with engine.begin() as connection:
            connection.execute(statement, label_rows("t", truth))
    raw = stored(engine, "SELECT key, row, " + ", ".join(c.name for c in labels.c if c.name not in ("key", "row"))
                 + " FROM labels")  # fmt: skip
    assert len(raw) == 2 * len(AWKWARD)
    for index in range(len(AWKWARD)):
        assert raw[f"o{index:031d}"] == raw[f"t{index:031d}"]
        assert raw[f"o{index:031d}"][labels.c.keys().index("truth_key") - 1].startswith("second ")


def test_counts_add_up_as_sqlalchemy_would(engine: sa.Engine) -> None:
    """The per-minute counts: an upsert whose update adds the new value to the stored one."""
    migrate(engine)
    statement = upsert(engine.dialect, prediction_counts, ("model", "version", "minute"), add=("rows",))
    driver = DriverStatement(statement, engine.dialect)
    for rows in (3, 4):
        with writing(engine) as connection:
            driver.run(connection, [{"model": "o", "version": "v (1)", "minute": T0, "rows": rows}])
        with engine.begin() as connection:
            connection.execute(statement, [{"model": "t", "version": "v (1)", "minute": T0, "rows": rows}])
    raw = stored(engine, "SELECT model, version, minute, rows FROM prediction_counts")
    assert raw["o"] == raw["t"] and raw["o"][2] == 7


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


@pytest.mark.parametrize("dialect", [sqlite.dialect(), postgresql.psycopg.dialect()], ids=["sqlite", "postgresql"])
@pytest.mark.parametrize(
    "statement",
    [
        lambda d: prediction_counts.insert().values(
            [{"model": m, "version": "v", "minute": T0, "rows": 1} for m in "ab"]
        ),
        lambda d: insert(d, prediction_counts).on_conflict_do_update(
            index_elements=["model"], set_={"rows": prediction_counts.c.rows + sa.bindparam("extra")}
        ),
        lambda d: sa.select(prediction_counts),
        lambda d: prediction_counts.update().values(rows=1),
        lambda d: prediction_counts.insert().from_select(
            ["model", "version", "minute", "rows"], sa.select(prediction_counts)
        ),
    ],
    ids=["several rows", "a parameter after the row", "select", "update", "insert from select"],
)
def test_a_statement_of_another_shape_is_refused(statement: Any, dialect: sa.Dialect) -> None:
    with pytest.raises(UnsupportedStatement, match="DriverStatement repeats"):
        DriverStatement(statement(dialect), dialect)
