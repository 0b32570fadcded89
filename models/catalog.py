"""Recipes of the default catalog, trained from datasets bundled with scikit-learn, with fixed seeds.

Each recipe splits its data into training and a stratified held-out validation part, fits, and registers
through `service.store.register_model`, so the catalog takes the same path as a user's model.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from service.classifiers import ROOT, fit_hierarchy
from service.store import register_model

SEED = 0
VALIDATION_SHARE = 0.25

DIGIT_GROUPS = {
    ROOT: ["round", "straight", "curvy"],
    "round": ["0", "6", "8", "9"],
    "straight": ["1", "4", "7"],
    "curvy": ["2", "3", "5"],
}
DIGIT_ATTRIBUTES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "even": lambda d: d % 2 == 0,
    "prime": lambda d: np.isin(d, [2, 3, 5, 7]),
    "large": lambda d: d >= 5,
    "loop": lambda d: np.isin(d, [0, 6, 8, 9]),
}
DIGIT_FEATURES = [f"pixel_{i}" for i in range(64)]


def _linear() -> Pipeline:
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=SEED))


def _digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X, y


def _split(X: np.ndarray, y: np.ndarray, stratify: np.ndarray) -> list[np.ndarray]:
    return train_test_split(X, y, test_size=VALIDATION_SHARE, random_state=SEED, stratify=stratify)  # type: ignore[no-any-return]


def breast_cancer() -> str:
    data = load_breast_cancer()
    y = data.target_names[data.target]  # 'malignant' / 'benign'
    X_train, X_val, y_train, y_val = _split(data.data, y, y)
    model = _linear().fit(X_train, y_train)
    return register_model(
        "breast_cancer",
        "binary",
        model,
        X_val,
        y_val,
        X_train=X_train,
        y_train=y_train,
        feature_names=list(data.feature_names),
        positive_class="malignant",
    )


def digits() -> str:
    X, y = _digits()
    X_train, X_val, y_train, y_val = _split(X, y.astype(str), y)
    model = RandomForestClassifier(n_estimators=100, random_state=SEED).fit(X_train, y_train)
    return register_model(
        "digits", "multiclass", model, X_val, y_val, X_train=X_train, y_train=y_train, feature_names=DIGIT_FEATURES
    )


def _attributes() -> tuple[list[np.ndarray], list[str]]:
    X, y = _digits()
    Y = np.column_stack([rule(y) for rule in DIGIT_ATTRIBUTES.values()]).astype(int)
    return _split(X, Y, y), list(DIGIT_ATTRIBUTES)


def _register_attributes(name: str, estimator: Any) -> str:
    (X_train, X_val, Y_train, Y_val), labels = _attributes()
    fitted = estimator(X_train, Y_train, labels)
    return register_model(
        name, "multilabel", fitted, X_val, Y_val, X_train=X_train, y_train=Y_train,
        feature_names=DIGIT_FEATURES, labels=labels,
    )  # fmt: skip


def digit_attributes() -> str:
    """One multi-output forest scores every label."""
    return _register_attributes(
        "digit_attributes", lambda X, Y, _labels: RandomForestClassifier(n_estimators=100, random_state=SEED).fit(X, Y)
    )


def digit_attributes_ovr() -> str:
    """One logistic regression per label."""
    return _register_attributes(
        "digit_attributes_ovr",
        lambda X, Y, labels: {label: _linear().fit(X, Y[:, j]) for j, label in enumerate(labels)},
    )


def digit_groups() -> str:
    X, y = _digits()
    X_train, X_val, y_train, y_val = _split(X, y.astype(str), y)
    nodes = fit_hierarchy(lambda _node: _linear(), X_train, y_train, DIGIT_GROUPS)
    return register_model(
        "digit_groups",
        "hierarchical",
        nodes,
        X_val,
        y_val,
        X_train=X_train,
        y_train=y_train,
        feature_names=DIGIT_FEATURES,
        hierarchy=DIGIT_GROUPS,
    )


def held_out_rows(name: str) -> np.ndarray:
    """The validation rows a catalog model was measured on: rows it never trained on."""
    return held_out(name)[0]


def held_out(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The validation rows of a catalog model and their labels in the model's own form: class names (binary,
    multiclass), leaf names (hierarchical), or a rows x labels 0/1 matrix in `DIGIT_ATTRIBUTES` order."""
    if name == "breast_cancer":
        data = load_breast_cancer()
        y = data.target_names[data.target]
        _, X_val, _, y_val = _split(data.data, y, y)
        return X_val, y_val
    X, y = _digits()
    _, X_val, _, y_val = _split(X, y, y)
    if name in ("digit_attributes", "digit_attributes_ovr"):
        return X_val, np.column_stack([rule(y_val) for rule in DIGIT_ATTRIBUTES.values()]).astype(int)
    return X_val, y_val.astype(str)


CATALOG: dict[str, Callable[[], str]] = {
    "breast_cancer": breast_cancer,
    "digits": digits,
    "digit_attributes": digit_attributes,
    "digit_attributes_ovr": digit_attributes_ovr,
    "digit_groups": digit_groups,
}
