"""`python -m models train`: a user's table, every task kind, to a registered model served on raw rows."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from models.__main__ import BAD_DATA_EXIT, main
from models.card import VALIDATION_CAVEAT
from models.dataset import DataError, prepare, read_table
from models.examples import reviews_table
from models.training import TrainingOptions, split
from service.classifiers import ROOT, Options
from service.store import load_model
from tests.helpers import scrape
from tests.test_signals_http import model_series

synthetic_table = reviews_table  # the table docs/loop.md's walkthrough writes (`python -m models example-data reviews`)


def unique(prefix: str) -> str:
    """A model name no other test registers: the store is shared by the session."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


TARGETS = {"binary": "bin", "multiclass": "multi", "multilabel": "tags", "hierarchical": "path"}


@pytest.fixture(scope="module")
def csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("train") / "data.csv"
    synthetic_table().to_csv(path, index=False)
    return path


def train_args(name: str, task: str, data: Path, *extra: str) -> list[str]:
    others = ",".join(column for t, column in TARGETS.items() if t != task)
    return [
        "train", "--name", name, "--task", task, "--data", str(data), "--target", TARGETS[task],
        "--drop", others, "--text", "review", *extra,
    ]  # fmt: skip


def versions(name: str) -> list[Any]:
    try:
        return list(bentoml.models.list(name))
    except bentoml.exceptions.NotFound:
        return []


@pytest.mark.parametrize(
    "task, extra",
    [
        ("binary", ()),
        ("multiclass", ("--estimator", "hist-gradient-boosting")),
        ("multilabel", ()),
        ("multilabel", ("--multilabel-strategy", "joint", "--estimator", "random-forest")),
        ("hierarchical", ("--class-weight", "balanced")),
    ],
)
def test_every_task_kind_trains_registers_and_prints_its_card(
    csv: Path, task: str, extra: tuple[str, ...], capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique(f"user_{task}")
    assert main(train_args(name, task, csv, *extra)) == 0
    printed = capsys.readouterr().out
    (stored,) = versions(name)
    model = load_model(str(stored.tag))
    metadata = model.card.to_metadata()  # as stored
    assert f"Model {stored.tag} ({task})" in printed
    assert metadata["features"]["text"] == ["review"] and metadata["features"]["categorical"] == ["color"]
    assert "review" not in metadata["monitored_features"] and "when" not in metadata["features"]["names"]
    assert metadata["metrics"]["accuracy"] > 0.6  # learnable targets: far above the majority class (at most 0.55)
    assert f"Validation: accuracy {metadata['metrics']['accuracy']:.3f}" in printed
    assert VALIDATION_CAVEAT in printed  # the card says its figures are in sample for the tuned decision
    if task == "hierarchical":
        hierarchy = metadata["decision"]["hierarchy"]
        assert hierarchy[ROOT] == ["bad", "good"] and hierarchy["meh"] == ["poor", "soso"]
    if task == "multilabel":
        layout = "joint" if "joint" in extra else "per_label"
        assert metadata["decision"]["layout"] == layout
        assert "big >= " in printed and "pos >= " in printed


def test_the_served_model_takes_raw_rows_with_strings_unseen_categories_and_gaps(
    csv: Path, api: TestClient, reconfigure: Callable[..., None], capsys: pytest.CaptureFixture[str]
) -> None:
    name = unique("user_served")
    assert main(train_args(name, "binary", csv, "--positive-class", "yes")) == 0
    capsys.readouterr()
    reconfigure(models=name)
    rows = [
        {"x1": 2.0, "x2": 0.1, "color": "red", "review": "love it works perfectly every single day"},
        {"x1": -2.0, "x2": None, "color": "purple", "review": "terrible broken item and no refund so far"},
        {"x1": 0.0, "x2": 0.0, "color": None, "review": None},
    ]
    response = api.post("/predict", json={"model": name, "instances": rows})
    assert response.status_code == 200, response.text
    labels = [p["label"] for p in response.json()["predictions"]]
    assert labels[:2] == ["yes", "no"]
    wrong = api.post("/predict", json={"model": name, "instances": [{**rows[0], "x1": "high"}]})
    assert wrong.status_code == 400 and wrong.json()["error"]["field"] == "instances[0].x1"


# --- rows shaped like the training file --------------------------------------------------------------------------


@dataclass(frozen=True)
class FileModels:
    """A user's file with an id and a time column besides the features and targets, and a model of every task kind
    trained from it: task -> (name, printed card)."""

    table: pd.DataFrame
    models: dict[str, tuple[str, str]]


def ignored_by(task: str) -> list[str]:
    """The file's columns a model of `task` does not use, in the file's order: the id (left out as one), the time
    column and the other tasks' targets (`--drop`)."""
    return ["customer", "when", *(column for t, column in TARGETS.items() if t != task)]


@pytest.fixture(scope="module")
def file_models(tmp_path_factory: pytest.TempPathFactory) -> FileModels:
    table = synthetic_table()
    table.insert(0, "customer", [f"c-{i:04d}" for i in range(len(table))])
    path = tmp_path_factory.mktemp("records") / "records.csv"
    table.to_csv(path, index=False)
    models = {}
    for task in TARGETS:
        name, printed = unique(f"user_records_{task}"), io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert main(train_args(name, task, path, "--time-column", "when")) == 0
        models[task] = (name, printed.getvalue())
    return FileModels(pd.read_csv(path), models)


def file_rows(table: pd.DataFrame, task: str, n: int = 40) -> list[dict[str, Any]]:
    """The file's newest `n` rows (the held-out ones: validation is time-based) as JSON objects, minus the target."""
    return list(json.loads(table.tail(n).drop(columns=[TARGETS[task]]).to_json(orient="records")))


def answers(response: Any) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [{k: v for k, v in p.items() if k != "id"} for p in response.json()["predictions"]]


@pytest.mark.parametrize("task", list(TARGETS))
def test_rows_of_the_training_file_minus_the_target_are_served_like_the_features_alone(
    file_models: FileModels, task: str, api: TestClient, reconfigure: Callable[..., None]
) -> None:
    name, printed = file_models.models[task]
    metadata = load_model(name).card.to_metadata()
    assert metadata["ignored_columns"] == ignored_by(task)
    assert f"  ignored columns (accepted in rows, not used): {', '.join(ignored_by(task))}" in printed
    reconfigure(models=name)
    card = api.get(f"/models/{name}").json()
    assert card["ignored_columns"] == ignored_by(task)
    assert [m["ignored_columns"] for m in api.get("/models").json()["models"]] == [ignored_by(task)]
    rows = file_rows(file_models.table, task)
    features = card["features"]["names"]
    assert set(rows[0]) == {*features, *ignored_by(task)}
    as_in_the_file = answers(api.post("/predict", json={"model": name, "instances": rows}))
    features_only = [{k: row[k] for k in features} for row in rows]
    assert as_in_the_file == answers(api.post("/predict", json={"model": name, "instances": features_only}))


@pytest.mark.parametrize(
    ("key", "why"), [("whn", "a typo of the time column"), ("churned", "never a column"), ("bin", "the target")]
)
def test_a_key_that_is_no_feature_and_no_ignored_column_is_a_400_naming_it(
    file_models: FileModels, key: str, why: str, api: TestClient, reconfigure: Callable[..., None]
) -> None:
    name, _ = file_models.models["binary"]
    reconfigure(models=name)
    rows = file_rows(file_models.table, "binary", 3)
    rows[2][key] = "2026-01-30 00:00:00"
    response = api.post("/predict", json={"model": name, "instances": rows})
    assert response.status_code == 400, why
    error = response.json()["error"]
    assert error["code"] == "invalid_input" and error["field"] == f"instances[2].{key}"
    assert f"row 2 has unknown feature '{key}'" in error["message"] and "'customer'" in error["message"]


GARBAGE: list[Any] = [1e308, -1e308, "not a time", None, "", [1, {"nested": None}], {"a": 1}, True]


def test_values_of_ignored_columns_reach_neither_the_model_nor_the_signals_nor_the_log(
    file_models: FileModels, api: TestClient, reconfigure: Callable[..., None]
) -> None:
    """The same rows twice: with garbage in every ignored column, then without them. The answers, the input faults
    counted, the drift and reconstruction-error bins' counts (the PSIs' inputs), the rows and the decisions counted
    are the same, no series names an ignored column, and the prediction log keeps the features only."""
    name, _ = file_models.models["binary"]
    reconfigure(models=name)
    ignored = ignored_by("binary")
    rows = file_rows(file_models.table, "binary")
    rows[0]["x1"] = 50.0  # out of the training range: an input fault on both sends
    garbage = [
        {**row, **{c: GARBAGE[(i + j) % len(GARBAGE)] for j, c in enumerate(ignored)}} for i, row in enumerate(rows)
    ]
    features_only = [{k: v for k, v in row.items() if k not in ignored} for row in rows]
    signals = (
        "classifier_input_issues_total",
        "classifier_drift_bin_rows_total",
        "classifier_reconstruction_bin_rows_total",
        "classifier_rows_total",
        "classifier_predictions_total",
    )
    seen: list[dict[str, Any]] = []
    ids: list[str] = []
    for instances in (garbage, features_only):
        before = scrape(api)
        response = api.post("/predict", json={"model": name, "instances": instances})
        after = scrape(api)
        seen.append({"answers": answers(response), **{s: model_series(before, after, s, name) for s in signals}})
        ids.append(response.json()["predictions"][0]["id"])
    assert seen[0] == seen[1]
    issues = seen[0]["classifier_input_issues_total"]
    assert issues[frozenset({("feature", "x1"), ("kind", "out_of_range")})] == 1 and sum(issues.values()) > 1
    assert sum(seen[0]["classifier_drift_bin_rows_total"].values()) > 0
    assert sum(seen[0]["classifier_reconstruction_bin_rows_total"].values()) == len(rows)
    assert not [labels for _, labels in after if {("feature", c) for c in ignored} & labels]
    logged = api.get(f"/predictions/{ids[0]}").json()["inputs"]  # the row with garbage, as the log keeps it
    assert set(logged) == set(features_only[0])


def test_time_based_validation_holds_out_the_newest_rows() -> None:
    data = prepare(synthetic_table(), "binary", "bin", drop=["multi", "tags", "path"], time_column="when")
    assert "when" not in data.X.columns
    rows = split(data, 0.25)
    assert data.times is not None
    assert data.times.iloc[rows.train].max() < data.times.iloc[rows.validation].min()
    assert len(rows.validation) == 175 and rows.how.startswith("time-based")


def test_thresholds_are_tuned_for_the_chosen_objective(csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    name = unique("user_recall")
    assert main(train_args(name, "binary", csv, "--optimize", "precision-at-recall=0.98")) == 0
    printed = capsys.readouterr().out
    (stored,) = versions(name)
    model = load_model(str(stored.tag))
    assert model.card.decision.objective == "precision-at-recall=0.98"
    assert "tuned on validation for precision-at-recall=0.98" in printed
    data = prepare(pd.read_csv(csv), "binary", "bin", text=["review"], drop=["multi", "tags", "path"])
    validation = data.X.iloc[split(data, TrainingOptions().validation_share).validation]
    truth = data.y[split(data, TrainingOptions().validation_share).validation]
    decided = [r["label"] for r in model.task.decide(model.task.score(validation), Options()).records()]
    positives = truth == "yes"
    recall = np.mean(np.asarray(decided)[positives] == "yes")
    assert recall >= 0.98


def test_columns_are_detected_by_kind_and_ids_left_out() -> None:
    words = np.random.default_rng(1).choice(["red", "fast", "old", "box", "item", "late", "fine", "ok"], (700, 6))
    table = synthetic_table().assign(order_id=[f"o-{i}" for i in range(700)], note=[" ".join(w) for w in words])
    data = prepare(table, "multiclass", "multi", drop=["bin", "tags", "path"])
    assert data.columns.numeric == ("x1", "x2")
    assert data.columns.categorical == ("color", "review")  # five sentences over and over: categories
    assert data.columns.text == ("note",)
    assert "when" not in data.X.columns and "order_id" not in data.X.columns
    assert any("order_id" in note for note in data.notes)


def test_json_lines_are_read_like_csv(tmp_path: Path) -> None:
    table = synthetic_table(50)
    path = tmp_path / "data.jsonl"
    table.to_json(path, orient="records", lines=True)
    assert list(read_table(path).columns) == list(table.columns)


def _bad(tmp_path: Path, table: pd.DataFrame) -> Path:
    path = tmp_path / "bad.csv"
    table.to_csv(path, index=False)
    return path


BAD_FILES: dict[str, tuple[Callable[[pd.DataFrame], pd.DataFrame], str, tuple[str, ...], str]] = {
    "missing target": (lambda t: t.drop(columns=["bin"]), "binary", (), "--target names ['bin']"),
    "unknown column": (lambda t: t, "binary", ("--categorical", "colour"), "--categorical names ['colour']"),
    "one class only": (lambda t: t.assign(bin="yes"), "binary", (), "one class only ('yes')"),
    "three classes for binary": (lambda t: t.assign(bin=t["multi"]), "binary", (), "use --task multiclass"),
    "a label on every row": (lambda t: t.assign(tags="warm|" + t["tags"]), "multilabel", (), "set on every row"),
    "no labels anywhere": (lambda t: t.assign(tags=""), "multilabel", (), "holds no labels on any row"),
    "a node under two parents": (
        lambda t: t.assign(path=t["path"].str.replace("good/fine", "good/meh")),
        "hierarchical",
        (),
        "'meh' sits under both",
    ),
    "a label that is a parent": (
        lambda t: t.assign(path=t["path"].where(t.index % 7 != 0, "bad")),
        "hierarchical",
        (),
        "'bad' is the label of some rows and the parent of others",
    ),
    "bad time column": (lambda t: t.assign(when="soon"), "binary", ("--time-column", "when"), "are not times"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_file_exits_2_with_a_clear_message_and_registers_nothing(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, task, extra, message = BAD_FILES[case]
    path = _bad(tmp_path, change(synthetic_table(200)))
    name = unique("user_bad")
    assert main(train_args(name, task, path, *extra)) == BAD_DATA_EXIT
    err = capsys.readouterr().err
    assert message in err and "nothing was registered" in err
    assert versions(name) == []


def test_an_unreadable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_table(tmp_path / "absent.csv")
    (tmp_path / "data.xlsx").write_bytes(b"")
    with pytest.raises(DataError, match="unknown file type '.xlsx'"):
        read_table(tmp_path / "data.xlsx")
