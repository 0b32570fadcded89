"""`python -m service.feedback`: the labels each caller sent, and voiding one caller's labels."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from service.database.engine import create_database_engine, migrate
from service.feedback.__main__ import main
from service.feedback.feedback_store import LabelWrite
from service.feedback.stores import LogStores
from tests.feedback.helpers import T0, feedback, logged, prediction, request_record


@pytest.fixture
def log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LogStores]:
    """A migrated SQLite log that the command reads through CLF_DATABASE_URL, with labels of two callers: nobody
    (no keys) labelled the first prediction; mallory relabelled it an hour later, and labelled the second."""
    url = f"sqlite:///{tmp_path / 'predictions.db'}"
    monkeypatch.setenv("CLF_DATABASE_URL", url)
    engine = create_database_engine(url)
    migrate(engine)
    stores = LogStores.over(engine)
    (key,) = logged(stores.predictions, request_record())
    first, second = prediction(stores.predictions, key, 0), prediction(stores.predictions, key, 1)
    feedback(stores.feedback, [LabelWrite("0", first)], [], T0)
    feedback(
        stores.feedback,
        [LabelWrite("9", first, caller="mallory"), LabelWrite("9", second, caller="mallory")],
        [],
        T0 + timedelta(hours=1),
    )
    yield stores
    engine.dispose()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_callers_lists_each_caller_s_labels(log: LogStores, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "callers")
    assert code == 0
    assert out.splitlines() == [
        "caller   labels  voided  first received             last received",
        "(none)   1       0       2026-11-01T12:00:00+00:00  2026-11-01T12:00:00+00:00",
        "mallory  2       0       2026-11-01T13:00:00+00:00  2026-11-01T13:00:00+00:00",
    ]


def test_void_says_what_it_did_and_the_callers_show_it(log: LogStores, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "void", "--caller", "mallory")
    assert code == 0
    assert out == "voided 2 labels of 'mallory': 1 predictions back to an earlier label, 1 left unlabelled\n"
    assert run(capsys, "callers")[1].splitlines()[2].split()[:3] == ["mallory", "2", "2"]
    code, out, _ = run(capsys, "void", "--caller", "mallory", "--since", "2026-11-01T00:00:00Z")
    assert (code, out.split(":")[0]) == (0, "voided 0 labels of 'mallory' received since 2026-11-01T00")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["void", "--caller", "mallory", "--since", "last week"], "ISO 8601")],
)
def test_a_bad_argument_exits_2_and_voids_nothing(
    log: LogStores, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(capsys, *args)
    assert (code, out) == (2, "") and message in err
    assert log.feedback.label_callers()[1].voided == 0


def test_a_missing_log_is_not_created(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("CLF_DATABASE_URL", raising=False)
    monkeypatch.setenv("CLF_DATA_DIR", str(tmp_path / "nowhere"))
    code, _, err = run(capsys, "void", "--caller", "mallory")
    assert code == 2 and "no prediction log" in err
    assert not (tmp_path / "nowhere").exists()
