"""`python -m service.export`: the joined log as CSV or JSON Lines, filtered, streamed page by page."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from models.catalog import DIGIT_GROUPS
from service import export
from service.database.engine import create_database_engine, migrate
from service.feedback.feedback_store import LabelWrite, OutcomeWrite
from service.feedback.stores import LogStores
from tests.feedback.helpers import T0, feedback, logged, prediction, request_record

FEATURES = {"names": ["f0", "f1"]}
MULTICLASS = {"classes": ["0", "1", "2"], "features": FEATURES, "metrics": {}}
MULTILABEL = {"classes": ["even", "prime", "loop"], "features": FEATURES, "decision": {"layout": "joint"}}
HIERARCHICAL = {
    "classes": ["0", "6", "8", "9", "1", "4", "7", "2", "3", "5"],
    "features": FEATURES,
    "decision": {"hierarchy": DIGIT_GROUPS},
}


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LogStores]:
    """A migrated SQLite log that the export reads through CLF_DATABASE_URL."""
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("CLF_DATABASE_URL", url)
    engine = create_database_engine(url)
    migrate(engine)
    stores = LogStores.over(engine)
    stores.rollout.remember_version("digits", "v1", "multiclass", MULTICLASS, T0)
    yield stores
    engine.dispose()


def run(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = export.main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def three_requests(stores: LogStores) -> list[str]:
    """Three digits requests an hour apart, two rows each; the second row of the first is labelled, with an outcome."""
    records = [
        request_record(T0 + timedelta(hours=h), decisions=["1", "2"], inputs=[[h, 0.5], [h, 1.5]], request_id=f"r{h}")
        for h in range(3)
    ]
    logged(stores.predictions, *records)
    first = prediction(stores.predictions, records[0].key, 1)
    feedback(
        stores.feedback,
        [LabelWrite("0", first)],
        [OutcomeWrite("clicked", 2.0, first)],
        T0 + timedelta(days=1),
    )
    return [record.key for record in records]


def test_jsonl_holds_every_prediction_joined_in_time_order(log: LogStores, capsys: pytest.CaptureFixture[str]) -> None:
    keys = three_requests(log)
    code, out, err = run("--model", "digits", "--format", "jsonl", capsys=capsys)
    assert code == 0 and "exported 6 predictions" in err
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert [row["id"] for row in rows] == [f"{key}-{row}" for key in keys for row in (0, 1)]
    labelled = rows[1]
    assert labelled == {
        "id": f"{keys[0]}-1",
        "model": "digits",
        "version": "v1",
        "predicted_at": T0.isoformat(),
        "request_id": "r0",
        "caller": None,
        "inputs": {"f0": 0.0, "f1": 1.5},
        "prediction": {"label": "2"},
        "label": {"label": "0"},
        "labelled_at": (T0 + timedelta(days=1)).isoformat(),
        "labelled_by": None,
        "outcomes": {"clicked": 2.0},
    }
    assert rows[0]["label"] is None and rows[0]["outcomes"] == {}


def test_csv_has_a_column_per_feature_and_the_label_in_the_model_s_form(
    log: LogStores, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    three_requests(log)
    output = tmp_path / "digits.csv"
    code, out, _ = run(
        "--model", "digits", "--format", "csv", "--output", str(output), "--labelled-only", capsys=capsys
    )
    assert code == 0 and out == ""
    (row,) = list(csv.DictReader(output.open()))
    assert list(row) == [
        *export.FIXED_COLUMNS, "f0", "f1", "prediction", "label", "labelled_at", "labelled_by", "outcomes"
    ]  # fmt: skip
    assert export.FIXED_COLUMNS[-1] == "caller"
    assert (row["f0"], row["f1"], row["label"], row["request_id"]) == ("0.0", "1.5", "0", "r0")
    assert orjson.loads(row["prediction"]) == {"label": "2"}
    assert orjson.loads(row["outcomes"]) == {"clicked": 2.0}


@pytest.mark.parametrize(
    ("task", "metadata", "truth", "columns", "expected"),
    [
        ("multilabel", MULTILABEL, '["even","loop"]', ["labels"], {"labels": "even|loop"}),
        ("hierarchical", HIERARCHICAL, "3", ["label", "path"], {"label": "3", "path": "curvy/3"}),
    ],
)
def test_csv_joins_label_sets_and_paths_as_training_reads_them(
    log: LogStores,
    capsys: pytest.CaptureFixture[str],
    task: str,
    metadata: dict[str, Any],
    truth: str,
    columns: list[str],
    expected: dict[str, str],
) -> None:
    log.rollout.remember_version("other", "v1", task, metadata, T0)
    (record,) = logged(log.predictions, request_record(model="other", decisions=[truth], inputs=[[1.0, 2.0]])).values()
    feedback(log.feedback, [LabelWrite(truth, prediction(log.predictions, record.key, 0))], [], T0)
    code, out, _ = run("--model", "other", "--format", "csv", capsys=capsys)
    assert code == 0
    (row,) = list(csv.DictReader(io.StringIO(out)))
    assert [c for c in row if c in ("label", "labels", "path")] == columns
    assert {c: row[c] for c in columns} == expected


def test_time_range_version_and_labels_filter(log: LogStores, capsys: pytest.CaptureFixture[str]) -> None:
    keys = three_requests(log)
    logged(log.predictions, request_record(T0 + timedelta(hours=1), version="v2"))
    log.rollout.remember_version("digits", "v2", "multiclass", MULTICLASS, T0)

    def ids(*args: str) -> list[str]:
        code, out, _ = run("--model", "digits", "--format", "jsonl", *args, capsys=capsys)
        assert code == 0
        return [orjson.loads(line)["id"] for line in out.splitlines()]

    since, until = (T0 + timedelta(minutes=30)).isoformat(), (T0 + timedelta(hours=2)).isoformat()
    assert ids("--since", since, "--until", until, "--version", "v1") == [f"{keys[1]}-0", f"{keys[1]}-1"]
    assert len(ids("--since", since, "--until", until)) == 5  # v2's three rows too
    assert ids("--labelled-only") == [f"{keys[0]}-1"]
    assert ids("--since", "1h") == []  # an age: everything here is older


def test_caller_filters_keep_or_leave_out_what_a_caller_sent(
    log: LogStores, capsys: pytest.CaptureFixture[str]
) -> None:
    """A prediction is a caller's when the caller asked for it or gave its current label."""
    by_app, by_mallory = (
        request_record(T0 + timedelta(hours=h), decisions=["1", "2"], inputs=[[h, 0.5]] * 2)._replace(caller=caller)
        for h, caller in ((0, "app"), (1, "mallory"))
    )
    logged(log.predictions, by_app, by_mallory)
    feedback(
        log.feedback,
        [
            LabelWrite("1", prediction(log.predictions, by_app.key, 0), caller="honest"),
            LabelWrite("0", prediction(log.predictions, by_app.key, 1), caller="mallory"),
            LabelWrite("1", prediction(log.predictions, by_mallory.key, 0), caller="honest"),
        ],
        [],
        T0 + timedelta(days=1),
    )

    def ids(*args: str) -> list[str]:
        code, out, _ = run("--model", "digits", "--format", "jsonl", *args, capsys=capsys)
        assert code == 0
        return [orjson.loads(line)["id"] for line in out.splitlines()]

    app_0, app_1, mallory_0, mallory_1 = (f"{r.key}-{row}" for r in (by_app, by_mallory) for row in (0, 1))
    assert ids("--exclude-caller", "mallory") == [app_0]
    assert ids("--caller", "mallory") == [app_1, mallory_0, mallory_1]
    assert ids("--caller", "honest", "--labelled-only") == [app_0, mallory_0]
    assert ids("--caller", "app", "--caller", "honest", "--exclude-caller", "mallory") == [app_0]
    code, out, _ = run("--model", "digits", "--format", "jsonl", "--caller", "mallory", capsys=capsys)
    rows = [orjson.loads(line) for line in out.splitlines()]
    assert [(row["caller"], row["labelled_by"]) for row in rows] == [("app", "mallory"), ("mallory", "honest"),
                                                                       ("mallory", None)]  # fmt: skip


@pytest.mark.parametrize(
    ("request_id", "written"),
    [
        *((formula, "'" + formula) for formula in ('=HYPERLINK("http://x","y")', "+1", "-2+3", "@SUM(A1)", "\t=1",
                                                   "\r=1")),
        ("r-1", "r-1"),  # only a leading character starts a formula
        ("r\r=1", "r\r=1"),  # a carriage return inside is quoted, not taken for the end of the row
    ],
)  # fmt: skip
def test_a_request_id_a_spreadsheet_would_run_is_written_to_csv_as_text(
    log: LogStores, capsys: pytest.CaptureFixture[str], tmp_path: Path, request_id: str, written: str
) -> None:
    logged(log.predictions, request_record(inputs=[[1.0, 2.0]] * 3, request_id=request_id))
    output = tmp_path / "digits.csv"  # a file: captured stdout would turn a carriage return into a newline
    code, _, _ = run("--model", "digits", "--format", "csv", "--output", str(output), capsys=capsys)
    assert code == 0
    with output.open(newline="") as file:
        assert {row["request_id"] for row in csv.DictReader(file)} == {written}
    code, out, _ = run("--model", "digits", "--format", "jsonl", capsys=capsys)
    assert {orjson.loads(line)["request_id"] for line in out.splitlines()} == {request_id}  # JSON is not a formula


def test_a_version_that_never_served_exits_2_naming_those_that_did(
    log: LogStores, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A version typed wrong (or copied from another store's README) is not an empty export that exits 0."""
    three_requests(log)
    log.rollout.remember_version("digits", "v2", "multiclass", MULTICLASS, T0 + timedelta(hours=1))
    output = tmp_path / "digits.jsonl"
    code, out, err = run(
        "--model", "digits", "--version", "k762qqhlp26nmax4", "--format", "jsonl", "--output", str(output),
        capsys=capsys,
    )  # fmt: skip
    assert code == 2 and out == "" and not output.exists()
    assert "version 'k762qqhlp26nmax4' of 'digits' has never been served with this prediction log" in err
    assert "the versions that have: v1, v2" in err


def test_rows_stream_one_page_at_a_time(log: LogStores, monkeypatch: pytest.MonkeyPatch) -> None:
    keys = three_requests(log)
    monkeypatch.setattr(export, "PAGE_REQUESTS", 1)
    pages: list[int] = []
    real_page = log.predictions.requests_page

    def counted(*args: Any, **kwargs: Any) -> Any:
        page = real_page(*args, **kwargs)
        pages.append(len(page))
        return page

    monkeypatch.setattr(log.predictions, "requests_page", counted)
    stream = export.rows(log, export.Versions(), "digits", export.key_range(None, None))
    first = next(stream)
    assert first["id"] == f"{keys[0]}-0" and pages == [1]  # one page read for the first row
    assert len([first, *stream]) == 6 and pages == [1, 1, 1, 0]


def test_the_progress_bar_does_not_change_the_output(log: LogStores, tmp_path: Path) -> None:
    three_requests(log)
    args = export.arguments(["--model", "digits", "--format", "jsonl"])
    plain, with_bar = io.StringIO(), io.StringIO()
    settings = export.Settings()
    assert export.export(args, settings, plain, progress=False) == 6
    assert export.export(args, settings, with_bar, progress=True) == 6
    assert plain.getvalue() == with_bar.getvalue()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope", "--format", "csv"], "never been served"),
        (["--model", "digits", "--format", "csv", "--since", "last week"], "ISO 8601"),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    log: LogStores, capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str], message: str
) -> None:
    output = tmp_path / "out.csv"
    code, out, err = run(*args, "--output", str(output), capsys=capsys)
    assert code == 2 and message in err and out == ""
    assert not output.exists()


def test_a_missing_log_is_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLF_DATABASE_URL", raising=False)
    monkeypatch.setenv("CLF_DATA_DIR", str(tmp_path / "nowhere"))
    code, _, err = run("--model", "digits", "--format", "jsonl", capsys=capsys)
    assert code == 2 and "no prediction log" in err
    assert not (tmp_path / "nowhere").exists()


def test_a_log_at_an_older_revision_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_database_engine(url)
    migrate(engine, "0001")
    engine.dispose()
    monkeypatch.setenv("CLF_DATABASE_URL", url)
    code, _, err = run("--model", "digits", "--format", "jsonl", capsys=capsys)
    assert code == 2 and "revision 0001" in err


def test_csv_refuses_versions_with_other_features(log: LogStores, capsys: pytest.CaptureFixture[str]) -> None:
    three_requests(log)
    log.rollout.remember_version("digits", "v3", "multiclass", {**MULTICLASS, "features": {"names": ["g0", "g1"]}}, T0)
    logged(log.predictions, request_record(T0 + timedelta(hours=5), version="v3", inputs=[[1.0, 2.0]] * 3))
    code, _, err = run("--model", "digits", "--format", "csv", capsys=capsys)
    assert code == 2 and "--version" in err
    code, out, _ = run("--model", "digits", "--format", "jsonl", capsys=capsys)
    assert code == 0 and len(out.splitlines()) == 9


def test_times_are_utc(log: LogStores, capsys: pytest.CaptureFixture[str]) -> None:
    three_requests(log)
    code, out, _ = run("--model", "digits", "--format", "jsonl", "--until", "2026-11-01T12:30:00+02:00", capsys=capsys)
    assert code == 0 and out == ""  # 10:30 UTC: before the first prediction, 12:00 UTC
    assert datetime.fromisoformat("2026-11-01T12:30:00+02:00").astimezone(UTC) < T0
