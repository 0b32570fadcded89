"""A stored model damaged after registration: that one model answers 503 and `/readyz` says which and why, while every
other model keeps serving. The damage is done to a registered model's files in the test's BentoML store."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
import skops.io
import yaml
from sklearn.linear_model import LogisticRegression
from starlette.testclient import TestClient

from models.__main__ import servable
from service import store
from service.classifiers import InvalidModelError
from service.store import check_stored, load_model, register_model
from tests.helpers import digits_rows
from tests.monitoring.test_metrics import unique
from tests.test_http import assert_error, digits_body


def register_digits(name: str, classes: int = 10) -> str:
    """A small digits classifier over the digits `0`..`classes - 1`, registered as a new version of `name`."""
    X, y = digits_rows(600)
    keep = y < classes
    X, labels = X[keep], np.array([str(t) for t in y[keep]])
    cut = 2 * len(X) // 3
    estimator = LogisticRegression(max_iter=300).fit(X[:cut], labels[:cut])
    return register_model(name, "multiclass", estimator, X[cut:], labels[cut:], feature_names=digits_feature_names())


def digits_feature_names() -> list[str]:
    return [f"pixel_{i}" for i in range(64)]


def folder(tag: str) -> Path:
    return Path(bentoml.models.get(tag).path)


def edit_metadata(tag: str, change: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the version's model.yaml with `change` applied to its metadata."""
    path = folder(tag) / "model.yaml"
    document = yaml.safe_load(path.read_text())
    change(document["metadata"])
    path.write_text(yaml.safe_dump(document))


def truncate(tag: str) -> None:
    estimator = folder(tag) / "estimator-0.skops"
    estimator.write_bytes(estimator.read_bytes()[: estimator.stat().st_size // 2])


def overwrite_with_noise(tag: str) -> None:
    estimator = folder(tag) / "estimator-0.skops"
    estimator.write_bytes(os.urandom(estimator.stat().st_size))


def corrupt_inside(tag: str) -> None:
    """Flip bytes in the middle of the zip: its directory still reads, a member does not."""
    estimator = folder(tag) / "estimator-0.skops"
    data = bytearray(estimator.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
    estimator.write_bytes(bytes(data))


def delete_estimator(tag: str) -> None:
    (folder(tag) / "estimator-0.skops").unlink()


def swap_in_fewer_features(tag: str) -> None:
    """An estimator fitted on 63 features, where the metadata names 64: a file replaced after registration."""
    X, y = digits_rows(300)
    estimator = LogisticRegression(max_iter=300).fit(X[:, :63], [str(t) for t in y])
    (folder(tag) / "estimator-0.skops").write_bytes(skops.io.dumps(estimator))


def drop_metadata(key: str) -> Callable[[str], None]:
    return lambda tag: edit_metadata(tag, lambda metadata: metadata.pop(key))


DAMAGES: dict[str, tuple[Callable[[str], None], str]] = {
    # damage -> what /readyz must say of it
    "truncated file": (truncate, "estimator-0.skops is not a readable skops file"),
    "noise for a file": (overwrite_with_noise, "estimator-0.skops is not a readable skops file"),
    "corrupt member": (corrupt_inside, "estimator-0.skops"),
    "missing file": (delete_estimator, "estimator-0.skops is missing"),
    "metadata without classes": (drop_metadata("classes"), "the metadata lacks 'classes'"),
    "metadata without features": (drop_metadata("features"), "the metadata lacks 'features'"),
    "metadata without trained_at": (drop_metadata("trained_at"), "the metadata lacks 'trained_at'"),
    "metadata without reference_profile": (drop_metadata("reference_profile"), "lacks 'reference_profile'"),
    "metadata without task": (drop_metadata("task"), "the metadata lacks 'task'"),
    "n_features_in_ differs": (swap_in_fewer_features, "fitted on 63 features; the metadata names 64"),
    "metadata with an unknown task": (
        lambda tag: edit_metadata(tag, lambda metadata: metadata.update(task="regression")),
        "unknown task 'regression'",
    ),
    "feature names of the wrong type": (
        lambda tag: edit_metadata(tag, lambda metadata: metadata["features"].update(names="pixel_0")),
        "the metadata's 'features.names' is not a list of strings: 'pixel_0'",
    ),
    "calibration without its map": (
        lambda tag: edit_metadata(tag, lambda metadata: metadata["calibration"].pop("correct")),
        "the metadata lacks 'calibration.correct'",
    ),
    "a numeric feature profiled as text": (
        lambda tag: edit_metadata(tag, lambda metadata: metadata["reference_profile"]["pixel_0"].update(kind="text")),
        "the metadata's 'reference_profile.pixel_0' is not a numeric feature's profile",
    ),
    "reference rows that are not a count": (
        lambda tag: edit_metadata(tag, lambda metadata: metadata["reference_rows"].update(training="many")),
        "the metadata's 'reference_rows.training' is not a count: 'many'",
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_model_is_unavailable_and_the_others_serve(
    api: TestClient, reconfigure: Callable[..., None], damage: str
) -> None:
    name = unique("damaged")
    tag = register_digits(name)
    damaged, reason = DAMAGES[damage]
    damaged(tag)

    reconfigure(models=("digits", name, "breast_cancer"))

    unavailable = api.post("/predict", json={**digits_body(1), "model": name})
    assert "/readyz" in assert_error(unavailable, 503, "model_unavailable", "model")["message"]
    assert_error(api.get(f"/models/{name}"), 503, "model_unavailable")
    assert api.post("/predict", json=digits_body(2)).status_code == 200
    assert [m["name"] for m in api.get("/models").json()["models"]] == ["breast_cancer", "digits"]
    ready = assert_error(api.get("/readyz"), 503, "unavailable")
    assert f"model '{name}' failed to load: {tag}: " in ready["message"], ready["message"]
    assert reason in ready["message"] and "1 of 3 configured models" in ready["message"]
    assert "/" not in ready["message"].split(": ", 1)[1].replace("/readyz", "")  # no file paths for clients
    assert api.get("/livez").status_code == 200


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_every_damage_is_an_invalid_model_for_every_caller_of_the_store(damage: str) -> None:
    # promotion, shadows and the `models` commands catch InvalidModelError: nothing else may escape the store
    tag = register_digits(unique("damaged"))
    DAMAGES[damage][0](tag)
    with pytest.raises(InvalidModelError):
        load_model(tag)


def test_a_model_that_cannot_be_described_is_unavailable_not_a_500_later(
    api: TestClient, reconfigure: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    # the last line of defence: whatever fails while a model is prepared for serving stays that model's failure
    name = unique("undescribable")
    register_digits(name)

    def broken_card(model: Any, monitored_features: int) -> dict[str, Any]:
        if model.name == name:
            raise RuntimeError("a bug in the model card")
        return real_card(model, monitored_features)

    from service import serving

    real_card = serving.describe_model
    monkeypatch.setattr(serving, "describe_model", broken_card)
    reconfigure(models=("digits", name))
    assert_error(api.post("/predict", json={**digits_body(1), "model": name}), 503, "model_unavailable")
    assert "RuntimeError: a bug in the model card" in assert_error(api.get("/readyz"), 503, "unavailable")["message"]
    assert api.post("/predict", json=digits_body(1)).status_code == 200


def test_latest_is_resolved_once_so_estimators_and_metadata_are_one_version(monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("moving")
    first = register_digits(name, classes=10)
    registered: list[str] = []
    read_file = store._load_estimator

    def register_while_reading(path: Path, trusted: set[str]) -> Any:
        if not registered:  # a registration lands between resolving `latest` and reading the estimator files
            registered.append(register_digits(name, classes=5))
        return read_file(path, trusted)

    monkeypatch.setattr(store, "_load_estimator", register_while_reading)
    loaded = load_model(f"{name}:latest")
    assert registered and loaded.tag == first
    estimator = loaded.task.estimator  # type: ignore[attr-defined]  # a multiclass task's one estimator
    assert [str(c) for c in estimator.classes_] == loaded.task.classes == [str(d) for d in range(10)]
    monkeypatch.setattr(store, "_load_estimator", read_file)
    newer = load_model(name)
    assert newer.tag == registered[0] and newer.task.classes == [str(d) for d in range(5)]


def test_a_frame_model_whose_metadata_renames_a_feature_fails_to_load() -> None:
    pd = pytest.importorskip("pandas")
    X, y = digits_rows(300)
    frame = pd.DataFrame(X, columns=digits_feature_names())
    labels = [str(t) for t in y]
    estimator = LogisticRegression(max_iter=300).fit(frame[:200], labels[:200])
    tag = register_model(unique("renamed"), "multiclass", estimator, frame[200:], labels[200:])

    def rename(metadata: dict[str, Any]) -> None:
        metadata["features"]["names"][0] = "pixel_first"
        metadata["reference_profile"]["pixel_first"] = metadata["reference_profile"].pop("pixel_0")

    edit_metadata(tag, rename)  # a card consistent in itself: only the estimator knows the feature by another name
    with pytest.raises(InvalidModelError, match="other feature names"):
        load_model(tag)


# the damages a model's record shows (model.yaml and the folder's listing), which `check_stored` finds without
# reading an estimator; the others are found by the worker's load (above)
RECORD_DAMAGES = ["missing file", "metadata without trained_at", "metadata without reference_profile",
                  "metadata without task", "metadata with an unknown task", "feature names of the wrong type",
                  "calibration without its map", "a numeric feature profiled as text",
                  "reference rows that are not a count"]  # fmt: skip


@pytest.mark.parametrize("damage", RECORD_DAMAGES)
def test_the_record_check_finds_what_the_record_shows_as_the_load_does(damage: str) -> None:
    tag = register_digits(unique("damaged"))
    damaged, reason = DAMAGES[damage]
    damaged(tag)
    with pytest.raises(InvalidModelError, match=re.escape(reason)):
        check_stored(tag)
    assert not servable(tag.split(":")[0])  # `python -m models ensure` would retrain a catalog model so damaged


def test_ensure_checks_a_model_by_its_record_without_loading_an_estimator(monkeypatch: pytest.MonkeyPatch) -> None:
    name = unique("recorded")
    tag = register_digits(name)

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("an estimator was read")

    monkeypatch.setattr(skops.io, "load", no_load)
    monkeypatch.setattr(skops.io, "get_untrusted_types", no_load)
    assert servable(name)
    edit_metadata(tag, lambda metadata: metadata.update(sklearn_version="1.0.2"))
    assert not servable(name)  # trained with another scikit-learn: retrained, as before


def test_ensure_retrains_a_model_registered_before_its_reference_rows_were_kept() -> None:
    """Without them its drift, collapse and accuracy alerts have no threshold (docs/monitoring.md: What each alert
    means)."""
    name = unique("unrowed")
    tag = register_digits(name)
    assert servable(name)
    edit_metadata(tag, lambda metadata: metadata.pop("reference_rows"))
    assert not servable(name)
