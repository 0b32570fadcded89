"""`python -m models` for a new user: what the store holds (`list`), docs/loop.md's example tables (`example-data`), a
labelled file through a running service (`replay`), and the positive class said before training."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from starlette.testclient import TestClient

from bench.servers import free_port
from models.__main__ import BAD_DATA_EXIT, main
from models.catalog import CATALOG
from models.dataset import DataError, prepare
from models.examples import drifted_reviews_table, reviews_table
from models.replay import HttpClient, replay
from models.training import TrainingOptions, fit_and_register, split
from service.store import load_model
from tests.models.test_train import unique

TARGETS = ["bin", "multi", "tags", "path"]


def train_reviews(name: str, path: Path, *extra: str) -> list[str]:
    """`train` arguments for docs/loop.md's binary model of the reviews table."""
    return ["train", "--name", name, "--task", "binary", "--data", str(path), "--target", "bin",
            "--drop", "multi,tags,path", *extra]  # fmt: skip


@pytest.fixture(scope="module")
def reviews_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("examples") / "reviews.csv"
    assert main(["example-data", "reviews", str(path)]) == 0
    return path


def test_example_data_writes_the_same_small_tables_every_time(tmp_path: Path) -> None:
    for example, rows in (("reviews", 700), ("reviews-drifted", 500)):
        first, second = tmp_path / f"{example}-1.csv", tmp_path / f"{example}-2.csv"
        assert main(["example-data", example, str(first)]) == 0
        assert main(["example-data", example, str(second)]) == 0
        assert first.read_bytes() == second.read_bytes() and len(pd.read_csv(first)) == rows
    reviews = pd.read_csv(tmp_path / "reviews-1.csv")
    assert list(reviews.columns) == ["x1", "x2", "color", "review", "when", *TARGETS]
    drifted = pd.read_csv(tmp_path / "reviews-drifted-1.csv")
    assert list(drifted.columns) == ["x1", "x2", "color", "review", "when", "bin"]
    assert (drifted["bin"] == drifted["x2"].fillna(0).gt(0).map({True: "yes", False: "no"})).all()
    assert pd.to_datetime(drifted["when"]).min() > pd.to_datetime(reviews["when"]).max()


def stored_rows(out: str) -> dict[str, list[str]]:
    """`list`'s table: version -> its cells (model, version, stage, task, trained at)."""
    header, *lines = out.splitlines()
    assert header.split() == ["model", "version", "stage", "task", "trained", "at"]
    return {cells[1]: cells for cells in (line.split() for line in lines)}


def test_list_shows_every_version_with_its_stage_task_and_trained_at(
    reviews_csv: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What `compare` needs: the served version and the candidate, told apart, with their task and age."""
    name = unique("user_listed")
    assert main(train_reviews(name, reviews_csv)) == 0
    served = load_model(name)
    data = prepare(pd.read_csv(reviews_csv), "binary", "bin", drop=["multi", "tags", "path"])
    candidate = fit_and_register(name, data, split(data, 0.2), TrainingOptions(), lambda _: None, candidate=True)
    capsys.readouterr()

    assert main(["list", name]) == 0
    rows = stored_rows(capsys.readouterr().out)
    candidate_version = candidate.tag.split(":")[1]
    assert list(rows) == [served.version, candidate_version]  # oldest first
    assert rows[served.version] == [
        name,
        served.version,
        "-",
        "binary",
        served.card.trained_at.isoformat(timespec="seconds"),
    ]
    assert rows[candidate_version][2:4] == ["candidate", "binary"]

    assert main(["list"]) == 0  # every model of the store
    assert {served.version, candidate_version} <= set(stored_rows(capsys.readouterr().out))


def test_list_catalog_keeps_the_catalog_names_and_an_unknown_name_exits_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["list", "--catalog"]) == 0
    assert capsys.readouterr().out.split() == list(CATALOG)
    assert main(["list", "no_such_model"]) == BAD_DATA_EXIT
    assert "no version of no_such_model in the BentoML store" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("classes", "given", "line"),
    [
        (("cat", "dog"), None, "'dog' (by default: the second of 'cat', 'dog' in sort order; "
                               "--positive-class 'cat' to choose the other)"),
        (("no", "yes"), None, "'yes' (by default: its name says positive; --positive-class 'no' to choose the other)"),
        (("cat", "dog"), "cat", "'cat' (as asked)"),
    ],
)  # fmt: skip
def test_the_positive_class_and_why_it_is_that_one(classes: tuple[str, str], given: str | None, line: str) -> None:
    table = reviews_table(200).assign(bin=lambda t: t["bin"].map({"no": classes[0], "yes": classes[1]}))
    data = prepare(table, "binary", "bin", positive_class=given, drop=["multi", "tags", "path"])
    assert data.positive_class_line() == f"positive class: {line}"
    assert prepare(table, "multiclass", "multi", drop=["bin", "tags", "path"]).positive_class_line() is None


def test_train_says_the_default_positive_class_before_it_trains(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The default is the second label in sort order: a user whose positive class sorts first hears it at once, not
    after reading the card's decision line."""
    path = tmp_path / "pets.csv"
    reviews_table(200).assign(bin=lambda t: t["bin"].map({"no": "cat", "yes": "dog"})).to_csv(path, index=False)
    caplog.set_level(logging.INFO)
    assert main(train_reviews(unique("user_pets"), path)) == 0
    messages = [record.getMessage() for record in caplog.records]
    said = messages.index(
        "positive class: 'dog' (by default: the second of 'cat', 'dog' in sort order; "
        "--positive-class 'cat' to choose the other)"
    )
    (registered,) = [i for i, message in enumerate(messages) if message.startswith("registered user_pets_")]
    assert said < registered


class InProcess:
    """`replay`'s client over the in-process service."""

    def __init__(self, api: TestClient) -> None:
        self.api = api

    def get(self, path: str) -> dict[str, Any]:
        return self._answer(self.api.get(path))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self._answer(self.api.post(path, json=body))

    def _answer(self, response: Any) -> dict[str, Any]:
        if response.status_code != 200:
            raise DataError(f"answered {response.status_code}: {response.text}")
        answer: dict[str, Any] = response.json()
        return answer


def test_replay_predicts_a_labelled_file_and_sends_its_labels(
    reviews_csv: Path, api: TestClient, reconfigure: Callable[..., None], tmp_path: Path
) -> None:
    name = unique("user_replayed")
    assert main(train_reviews(name, reviews_csv)) == 0
    reconfigure(models=name)
    table = drifted_reviews_table(150)
    table.loc[3, "bin"] = None  # a row without a label: predicted, not labelled

    done = replay(InProcess(api), name, table, "bin")
    assert (done.predictions, done.labelled, done.version) == (150, 149, load_model(name).version)
    decided = [p["label"] for p in api.post("/predict", json={"model": name, "instances": _rows(table)}).json()[
        "predictions"
    ]]  # fmt: skip
    assert done.right == sum(d == t for d, t in zip(decided, table["bin"], strict=True))
    assert 0 < done.right < 149  # the drifted world: the model trained on the original one is often wrong

    with pytest.raises(DataError, match="'nope' is not a column"):
        replay(InProcess(api), name, table, "nope")
    with pytest.raises(DataError, match="404"):
        replay(InProcess(api), "no_such_model", table, "bin")
    with pytest.raises(DataError, match="100 labels refused; the first: .*'maybe'"):  # the first request's
        replay(InProcess(api), name, table.assign(bin="maybe"), "bin")


def _rows(table: pd.DataFrame) -> list[dict[str, Any]]:
    return list(json.loads(table.drop(columns=["bin"]).to_json(orient="records")))


def test_replay_without_a_service_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "drifted.csv"
    drifted_reviews_table(30).to_csv(path, index=False)
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with pytest.raises(DataError, match=f"no service answers at {url}"):
        replay(HttpClient(url), "reviews", pd.read_csv(path), "bin")
    args = ["replay", "--url", url, "--name", "reviews", "--data", str(path), "--target", "bin"]
    assert main(args) == BAD_DATA_EXIT
    assert "make serve" in capsys.readouterr().err
