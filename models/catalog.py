"""Recipes of the default catalog, trained from datasets bundled with scikit-learn, with fixed seeds.

Each data set is split once (`catalog_split`) into three parts: the estimator trains on the training rows;
registration (`service.store.register_model`, the same path as a user's model) tunes the thresholds and measures
the validation metrics on the calibration rows, and fits the calibration map on them and on the training rows out
of fold (each scored by the recipe refitted without it); the evaluation rows are never read at registration, so
figures measured on them (`evaluation_rows`: the scorecard's traffic) are out of sample for the estimator and for
everything registration fitted.

scikit-learn is imported by the recipes that load data and train, not at import: `python -m models ensure` (every
`make serve`) reads the catalog's names and `SPLIT_RECIPE` to check the store, and trains only what is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from service.classifiers import ROOT, fit_hierarchy
from service.store import register_model

if TYPE_CHECKING:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.pipeline import Pipeline

SEED = 0
# shares of each data set's rows: the estimator's training rows; registration's calibration rows (thresholds,
# calibration map, validation metrics, prediction reference); evaluation rows, never read at registration
TRAIN_SHARE, CALIBRATION_SHARE, EVALUATION_SHARE = 0.6, 0.2, 0.2
# how a catalog version's rows were split, recorded in its metadata (`training.split`): `python -m models ensure`
# re-registers a version split otherwise, so a store filled by an older recipe gets versions this split describes
SPLIT_RECIPE = (
    f"train {TRAIN_SHARE} / calibration {CALIBRATION_SHARE} / evaluation {EVALUATION_SHARE}, "
    f"stratified by class (the multilabel models by digit), seed {SEED}"
)

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


@dataclass(frozen=True)
class CatalogSplit:
    """A catalog model's rows, their labels in the model's own form, and the indices of the three disjoint parts."""

    X: np.ndarray
    y: np.ndarray
    train: np.ndarray
    calibration: np.ndarray
    evaluation: np.ndarray

    def rows(self, part: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.X[part], self.y[part]


def catalog_split(name: str) -> CatalogSplit:
    """The rows of catalog model `name` split train / calibration / evaluation, the same on every call: the one
    place registration and `evaluation_rows` take the parts from.

    Labels in the model's own form: class names (binary, multiclass), leaf names (hierarchical), or a rows x labels
    0/1 matrix in `DIGIT_ATTRIBUTES` order (multilabel). Stratified by class; the multilabel models by digit: their
    labels are a function of it, so each label set keeps its share in every part, and the digits models share one
    split (the same rows in the same order).
    """
    from sklearn.model_selection import train_test_split

    X, y, strata = _labelled(name)
    rows = np.arange(len(X))
    rest, evaluation = train_test_split(rows, test_size=EVALUATION_SHARE, random_state=SEED, stratify=strata)
    train, calibration = train_test_split(
        rest, test_size=CALIBRATION_SHARE / (1 - EVALUATION_SHARE), random_state=SEED, stratify=strata[rest]
    )
    return CatalogSplit(X, y, train, calibration, evaluation)


def evaluation_rows(name: str) -> tuple[np.ndarray, np.ndarray]:
    """The evaluation rows of catalog model `name` and their labels (in the model's own form: `catalog_split`):
    rows registration never read, so figures measured on them are out of sample for the estimator, the tuned
    thresholds and the calibration map alike."""
    split = catalog_split(name)
    return split.rows(split.evaluation)


def _labelled(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A catalog model's rows, its labels, and the classes its split is stratified by."""
    from sklearn.datasets import load_breast_cancer, load_digits

    if name not in CATALOG:
        raise ValueError(f"unknown catalog model {name!r}; known: {', '.join(CATALOG)}")
    if name == "breast_cancer":
        data = load_breast_cancer()
        y = data.target_names[data.target]  # 'malignant' / 'benign'
        return data.data, y, y
    X, digit = load_digits(return_X_y=True)
    if name in ("digit_attributes", "digit_attributes_ovr"):
        return X, np.column_stack([rule(digit) for rule in DIGIT_ATTRIBUTES.values()]).astype(int), digit
    return X, digit.astype(str), digit


def _register(name: str, task: str, fit: Callable[[np.ndarray, np.ndarray], Any], **params: Any) -> str:
    """Fit on the training rows, register with the calibration rows as the validation set and `fit` to refit
    with (the confidence calibration is cross-fitted over the training and calibration rows); the evaluation rows
    are not passed on."""
    split = catalog_split(name)
    X_train, y_train = split.rows(split.train)
    X_calibration, y_calibration = split.rows(split.calibration)
    return register_model(
        name, task, fit(X_train, y_train), X_calibration, y_calibration, X_train=X_train, y_train=y_train,
        training={"split": SPLIT_RECIPE}, refit=fit, **params,
    )  # fmt: skip


def _linear() -> Pipeline:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=SEED))


def _forest(X: np.ndarray, y: np.ndarray) -> RandomForestClassifier:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, random_state=SEED).fit(X, y)


def breast_cancer() -> str:
    from sklearn.datasets import load_breast_cancer

    return _register(
        "breast_cancer", "binary", lambda X, y: _linear().fit(X, y),
        feature_names=list(load_breast_cancer().feature_names), positive_class="malignant",
    )  # fmt: skip


def digits() -> str:
    return _register("digits", "multiclass", _forest, feature_names=DIGIT_FEATURES)


def digit_attributes() -> str:
    """One multi-output forest scores every label."""
    return _register(
        "digit_attributes", "multilabel", _forest, feature_names=DIGIT_FEATURES, labels=list(DIGIT_ATTRIBUTES)
    )


def digit_attributes_ovr() -> str:
    """One logistic regression per label."""
    return _register(
        "digit_attributes_ovr",
        "multilabel",
        lambda X, Y: {label: _linear().fit(X, Y[:, j]) for j, label in enumerate(DIGIT_ATTRIBUTES)},
        feature_names=DIGIT_FEATURES,
        labels=list(DIGIT_ATTRIBUTES),
    )


def digit_groups() -> str:
    return _register(
        "digit_groups",
        "hierarchical",
        lambda X, y: fit_hierarchy(lambda _node: _linear(), X, y, DIGIT_GROUPS),
        feature_names=DIGIT_FEATURES,
        hierarchy=DIGIT_GROUPS,
    )


CATALOG: dict[str, Callable[[], str]] = {
    "breast_cancer": breast_cancer,
    "digits": digits,
    "digit_attributes": digit_attributes,
    "digit_attributes_ovr": digit_attributes_ovr,
    "digit_groups": digit_groups,
}
