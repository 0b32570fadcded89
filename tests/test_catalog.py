"""The default catalog through the API: served probabilities are the estimators' own, digits is accurate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import bentoml
import numpy as np
import pytest
from prometheus_client import CollectorRegistry
from starlette.testclient import TestClient

import models.__main__
from models.__main__ import main as models_main
from models.__main__ import servable
from models.catalog import CATALOG
from service.classifiers.evaluation import CALIBRATION_FOLDS
from service.monitoring.metrics import Metrics
from service.monitoring.monitor import ModelMonitor
from service.settings import DEFAULT_CATALOG, MonitoringConfig
from service.store import load_model, read_estimators
from tests.helpers import catalog_rows, digits_rows

ROWS = 60
MONITORING_DOCS = Path(__file__).resolve().parents[1] / "docs" / "monitoring.md"


def predict(api: TestClient, model: str, X: np.ndarray, **options: Any) -> list[dict[str, Any]]:
    response = api.post("/predict", json={"model": model, "instances": X.tolist(), "options": options})
    assert response.status_code == 200, response.text
    return list(response.json()["predictions"])


def test_catalog_recipes_are_the_served_default() -> None:
    assert tuple(CATALOG) == DEFAULT_CATALOG


def assert_rounding_equal(got: object, expected: object) -> None:
    """Equal to the last bits: linear models are served as one matrix product (service/classifiers/linear.py),
    which rounds differently from `predict_proba` (and gets 1 - p of a p near 1 more precisely)."""
    np.testing.assert_allclose(np.asarray(got, dtype=float), np.asarray(expected, dtype=float), rtol=1e-9, atol=1e-12)


def test_binary_probabilities_are_the_estimators(api: TestClient, catalog: dict[str, str]) -> None:
    X = catalog_rows("breast_cancer", ROWS)
    estimator = read_estimators(catalog["breast_cancer"])["model"]
    expected = estimator.predict_proba(X)
    served = predict(api, "breast_cancer", X, return_probabilities=True)
    classes = list(estimator.classes_)
    got = np.array([[p["probabilities"][c] for c in classes] for p in served])
    assert_rounding_equal(got, expected)
    assert_rounding_equal([p["score"] for p in served], expected[:, classes.index("malignant")])


def test_multiclass_probabilities_are_the_estimators(api: TestClient, catalog: dict[str, str]) -> None:
    X = catalog_rows("digits", ROWS)
    estimator = read_estimators(catalog["digits"])["model"]
    expected = estimator.predict_proba(X)
    served = predict(api, "digits", X, return_probabilities=True)
    got = np.array([[p["probabilities"][str(c)] for c in estimator.classes_] for p in served])
    assert_rounding_equal(got, expected)


def test_joint_multilabel_probabilities_are_the_estimators(api: TestClient, catalog: dict[str, str]) -> None:
    X = catalog_rows("digit_attributes", ROWS)
    estimator = read_estimators(catalog["digit_attributes"])["model"]
    outputs = estimator.predict_proba(X)  # scikit-learn's list of (rows, 2) arrays, one per label
    expected = np.column_stack(
        [out[:, list(cls).index(1)] for out, cls in zip(outputs, estimator.classes_, strict=True)]
    )
    served = predict(api, "digit_attributes", X, return_probabilities=True)
    got = np.array([[p["probabilities"][label] for label in ("even", "prime", "large", "loop")] for p in served])
    assert_rounding_equal(got, expected)


def test_per_label_multilabel_probabilities_are_the_estimators(api: TestClient, catalog: dict[str, str]) -> None:
    X = catalog_rows("digit_attributes_ovr", ROWS)
    estimators = read_estimators(catalog["digit_attributes_ovr"])
    served = predict(api, "digit_attributes_ovr", X, return_probabilities=True)
    for label, estimator in estimators.items():
        expected = estimator.predict_proba(X)[:, list(estimator.classes_).index(1)]
        assert_rounding_equal([p["probabilities"][label] for p in served], expected)


def test_hierarchical_probabilities_are_the_node_estimators(api: TestClient, catalog: dict[str, str]) -> None:
    X = catalog_rows("digit_groups", ROWS)
    nodes = read_estimators(catalog["digit_groups"])
    served = predict(api, "digit_groups", X, return_probabilities=True)
    root = nodes["__root__"]
    top = root.predict_proba(X)
    groups = np.array([str(root.classes_[k]) for k in top.argmax(axis=1)])
    assert [p["path"][0]["label"] for p in served] == groups.tolist()
    for i, p in enumerate(served):
        assert list(p["probabilities"][0]) == list(map(str, root.classes_))
        assert_rounding_equal(list(p["probabilities"][0].values()), top[i])
    for group in set(groups.tolist()):
        rows = np.flatnonzero(groups == group)  # the service asks each node once, for the rows that reached it
        child = nodes[group]
        below = child.predict_proba(X[rows])
        for k, i in enumerate(rows.tolist()):
            assert list(served[i]["probabilities"][1]) == list(map(str, child.classes_))
            assert_rounding_equal(list(served[i]["probabilities"][1].values()), below[k])
            assert_rounding_equal(served[i]["path"][1]["confidence"], top[i].max() * below[k].max())


def test_digits_accuracy_through_the_api(api: TestClient) -> None:
    X, y = digits_rows()
    labels = [p["label"] for start in range(0, len(X), 1000) for p in predict(api, "digits", X[start : start + 1000])]
    accuracy = float(np.mean(np.array(labels) == y.astype(str)))
    assert accuracy >= 0.95


def test_ensure_registers_only_missing_models(catalog: dict[str, str]) -> None:
    assert models_main(["ensure"]) == 0
    assert {name: str(bentoml.models.get(f"{name}:latest").tag) for name in CATALOG} == catalog
    assert not servable("no_such_model")


def test_ensure_retrains_a_catalog_model_whose_rows_were_split_otherwise(
    catalog: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store filled before the recipe's split changed (its versions record another split, or none: a version of
    the old train/validation recipe) gets new versions from `make catalog`: `ensure` finds the stored one stale."""
    assert servable("breast_cancer")
    monkeypatch.setattr(models.__main__, "SPLIT_RECIPE", "train 0.75 / validation 0.25, stratified, seed 0")
    assert not servable("breast_cancer")


def test_ensure_retrains_a_catalog_model_whose_calibration_was_not_cross_fitted(
    catalog: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A catalog version calibrated on its calibration rows alone (or over other folds) is stale: its estimate
    carries that small split's sampling luck."""
    assert load_model(catalog["breast_cancer"]).card.calibration.folds == CALIBRATION_FOLDS  # type: ignore[union-attr]
    monkeypatch.setattr(models.__main__, "CALIBRATION_FOLDS", CALIBRATION_FOLDS + 1)
    assert not servable("breast_cancer")


def test_docs_state_the_drift_series_of_each_catalog_model(catalog: dict[str, str], tmp_path: Path) -> None:
    """docs/monitoring.md "Drift across replicas": per model, watched features, drift bins, series per instance (a
    counter and a reference gauge per bin) and decided labels per level, as a monitor of the registered model has
    them."""
    section = MONITORING_DOCS.read_text().split("\n## Drift across replicas\n", 1)[1].split("\n## ", 1)[0]
    stated = {cells[0]: cells[2:] for line in section.splitlines() if (cells := line.strip("| ").split(" | "))}
    for name, tag in catalog.items():
        model = load_model(tag)
        metrics = Metrics.create(CollectorRegistry())
        monitor = ModelMonitor(name, model.version, model.card, metrics, MonitoringConfig(), tmp_path / name)
        bins = len(monitor.inputs.bins())
        levels = {level: len(folder.names) for level, folder in monitor.level_labels.items()}
        labels = (
            str(levels[""])
            if len(levels) == 1
            else ", ".join(f"{count} (level {level})" for level, count in levels.items() if level)
        )
        assert stated[name] == [str(len(monitor.inputs.feature_order)), str(bins), str(2 * bins), labels], name
