"""`python -m models retrain` and `compare` on the service's own prediction log: a model goes stale, production's
labels train a candidate, and the comparison says the candidate is better."""

from __future__ import annotations

import getpass
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pandas as pd
import pytest
from starlette.testclient import TestClient

from models.__main__ import BAD_DATA_EXIT, main
from models.examples import FEATURES, drifted_reviews_table
from service.auth.keys import create_key
from service.store import CANDIDATE, load_model
from tests.models.test_train import synthetic_table, unique


def drifted_world(rows: int, seed: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows like the training table's, whose label now follows x2 alone: the first model goes stale."""
    table = drifted_reviews_table(rows, seed)
    records = table[FEATURES].astype(object).where(table[FEATURES].notna(), None).to_dict(orient="records")
    return records, table["bin"].tolist()


def predict_and_label(api: TestClient, model: str, rows: list[dict[str, Any]], labels: list[str]) -> None:
    for start in range(0, len(rows), 100):
        response = api.post("/predict", json={"model": model, "instances": rows[start : start + 100]})
        assert response.status_code == 200, response.text
        items = [
            {"prediction_id": p["id"], "label": label}
            for p, label in zip(response.json()["predictions"], labels[start : start + 100], strict=True)
        ]
        assert api.post("/feedback", json={"feedback": items}).json()["accepted"] == len(items)


@pytest.fixture(scope="module")
def stale_model(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A binary model trained from CSV on the original world; its name."""
    path = tmp_path_factory.mktemp("retrain") / "data.csv"
    synthetic_table().drop(columns=["multi", "tags", "path"]).to_csv(path, index=False)
    name = unique("user_stale")
    assert main(["train", "--name", name, "--task", "binary", "--data", str(path), "--target", "bin"]) == 0
    return name


def test_retrain_registers_a_candidate_that_compare_finds_better(
    stale_model: str,
    api: TestClient,
    reconfigure: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    reconfigure(models=stale_model)
    rows, labels = drifted_world(500, seed=7)
    predict_and_label(api, stale_model, rows, labels)
    served = load_model(stale_model)
    capsys.readouterr()

    assert main(["retrain", "--name", stale_model, "--since", "1h"]) == 0
    printed = capsys.readouterr().out
    (candidate,) = [m for m in bentoml.models.list(stale_model) if m.info.labels.get("stage") == CANDIDATE]
    assert f"{candidate.tag} is a candidate" in printed
    assert "time-based: the newest 100 labelled predictions" in printed
    assert load_model(stale_model).version == served.version  # `latest` skips the candidate: nothing serves it yet
    assert candidate.info.metadata["training"]["target"] == "bin"
    # the id-like time column of the file: clients keep sending it, to the candidate too once it is promoted
    assert candidate.info.metadata["ignored_columns"] == list(served.card.features.ignored) == ["when"]

    store = bentoml.get_current_service().log.stores.rollout
    assert not store.vetted(stale_model, str(candidate.tag.version))
    assert main(["compare", served.tag, str(candidate.tag), "--format", "json", "--margin", "0.1"]) == 0
    result = json.loads(capsys.readouterr().out)
    # compared: promoting the candidate now needs no `force` (tests/auth/test_admin.py)
    (compared,) = store.admin_actions(stale_model)
    assert (compared.caller, compared.action, compared.from_version, compared.to_version) == (
        f"cli:{getpass.getuser()}",
        "compare",
        served.version,
        str(candidate.tag.version),
    )
    assert store.vetted(stale_model, str(candidate.tag.version))
    # judged on what the candidate did not train on: its validation slice, the last request's 100 predictions
    assert result["labelled"] == 100 and result["since"] == candidate.info.metadata["training"]["trained_on_log_before"]
    assert result["b_is_better"] and result["b"]["accuracy"] > result["a"]["accuracy"] + 0.1
    newest = _served_labels(api, stale_model, rows[400:])
    stale_right = np.mean([p == t for p, t in zip(newest, labels[400:], strict=True)])
    assert result["a"]["accuracy"] == pytest.approx(stale_right)  # the served decisions, held against the labels
    assert 0 < result["agreement"] < 1 and result["disagreements"]

    assert main(["compare", str(candidate.tag), served.tag]) == 1  # the other way round: not better
    assert "B is not better by the margin" in capsys.readouterr().out


def test_retrain_leaves_out_the_labels_of_an_excluded_caller(
    tmp_path: Path,
    stale_model: str,
    api: TestClient,
    reconfigure: Callable[..., None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    """`mallory` flipped 30 of each request's 100 labels: a retraining without her learns from the other 70."""
    keys = tmp_path / "keys.json"
    app, honest, mallory = (create_key(keys, name, scopes) for name, scopes in
                            (("app", ("predict",)), ("honest", ("feedback",)), ("mallory", ("feedback",))))  # fmt: skip
    reconfigure(models=stale_model, api_keys_file=keys)
    since = datetime.now(UTC)
    rows, labels = drifted_world(300, seed=11)
    flipped = {"yes": "no", "no": "yes"}
    for start in range(0, len(rows), 100):
        answer = api.post(
            "/predict", json={"model": stale_model, "instances": rows[start : start + 100]}, headers=bearer(app)
        )
        assert answer.status_code == 200, answer.text
        ids = [p["id"] for p in answer.json()["predictions"]]
        truth = labels[start : start + 100]
        for key, items in (
            (honest, [{"prediction_id": i, "label": t} for i, t in zip(ids[:70], truth[:70], strict=True)]),
            (mallory, [{"prediction_id": i, "label": flipped[t]} for i, t in zip(ids[70:], truth[70:], strict=True)]),
        ):
            sent = api.post("/feedback", json={"feedback": items}, headers=bearer(key))
            assert sent.json()["accepted"] == len(items), sent.text
    capsys.readouterr()

    retrain = ["retrain", "--name", stale_model, "--since", since.isoformat()]
    assert main([*retrain, "--exclude-caller", "mallory"]) == 0
    assert "trained on 140 rows, validated on 70" in capsys.readouterr().out  # the last request's 70 validate
    assert main([*retrain, "--caller", "mallory"]) == 0
    assert "trained on 60 rows, validated on 30" in capsys.readouterr().out


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _served_labels(api: TestClient, model: str, rows: list[dict[str, Any]]) -> list[str]:
    response = api.post("/predict", json={"model": model, "instances": rows})
    return [p["label"] for p in response.json()["predictions"]]


def test_retrain_with_extra_rows_and_the_errors_it_refuses(
    stale_model: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    never_served = unique("user_unserved")
    assert main(["retrain", "--name", never_served]) == BAD_DATA_EXIT
    assert "not in the BentoML store" in capsys.readouterr().err

    bad = tmp_path / "extra.csv"
    pd.DataFrame({"x1": [1.0]}).to_csv(bad, index=False)
    assert main(["retrain", "--name", stale_model, "--data", str(bad)]) == BAD_DATA_EXIT
    assert "--data lacks columns ['x2', 'color', 'review', 'bin']" in capsys.readouterr().err

    assert main(["retrain", "--name", stale_model, "--since", "soon"]) == BAD_DATA_EXIT
    assert "--since" in capsys.readouterr().err
