"""Shared test helpers: catalog data, a categorical user model, the in-process service's `/metrics`."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder
from starlette.testclient import TestClient

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]  # (sample name, labels) -> value


# the task of each default catalog model (CONTRACT.md's catalog table)
CATALOG_TASKS = {
    "breast_cancer": "binary",
    "digits": "multiclass",
    "digit_attributes": "multilabel",
    "digit_attributes_ovr": "multilabel",
    "digit_groups": "hierarchical",
}


def scrape(api: TestClient) -> Samples:
    """Every sample of the service's `/metrics`."""
    return {
        (sample.name, frozenset(sample.labels.items())): float(sample.value)
        for family in text_string_to_metric_families(api.get("/metrics").text)
        for sample in family.samples
    }


def digits_rows(n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """load_digits rows and integer targets (the first n)."""
    X, y = load_digits(return_X_y=True)
    return (X, y) if n is None else (X[:n], y[:n])


def cancer_rows(n: int | None = None) -> tuple[np.ndarray, list[str]]:
    """load_breast_cancer rows (the first n) and the feature names."""
    data = load_breast_cancer()
    return (data.data if n is None else data.data[:n]), list(data.feature_names)


def catalog_rows(name: str, n: int | None = None) -> np.ndarray:
    """Rows a catalog model takes: breast cancer rows for `breast_cancer`, digits for the others."""
    return cancer_rows(n)[0] if name == "breast_cancer" else digits_rows(n)[0]


def register_colors_model(name: str, handle_unknown: str = "ignore", ignored_columns: Sequence[str] = ()) -> str:
    """Registers a binary user model on a category (`color`: red, green or blue, one-hot encoded with
    `handle_unknown`) and a number (`size`), accepting `ignored_columns` in object rows; returns its tag. `yes` when
    red or size > 1."""
    from service.store import register_model

    rng = np.random.default_rng(0)
    colors = rng.choice(["red", "green", "blue"], 200)
    size = rng.normal(size=200)
    X = np.column_stack([colors, size]).astype(object)
    X[:, 1] = X[:, 1].astype(float)
    y = np.where((colors == "red") | (size > 1), "yes", "no")
    pipeline = make_pipeline(
        ColumnTransformer([("color", OneHotEncoder(handle_unknown=handle_unknown), [0])], remainder="passthrough"),
        LogisticRegression(),
    ).fit(X[:150], y[:150])
    return register_model(
        name,
        "binary",
        pipeline,
        X[150:],
        y[150:],
        feature_names=["color", "size"],
        categorical_features=["color"],
        ignored_columns=ignored_columns,
        positive_class="yes",
    )
