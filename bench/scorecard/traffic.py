"""The scorecard's traffic: held-out rows of each model with their labels, clean or with a fault injected.

Every model gets clean rows (its validation rows, never trained on) and each fault that applies to it; the
synthetic model `drifting_world`, trained here, also gets rows from a drifted generator (a stale model: the world
moved on after training). Rows are drawn with replacement by a seeded generator, so runs are reproducible.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

SYNTHETIC = "drifting_world"
SYNTHETIC_CLASSES = ("a", "b", "c")
SYNTHETIC_FEATURES = 8
SEED = 7
SYNTHETIC_OFFSET = 10.0  # positive values, like the measurements of the catalog's data, so that ×1.5 means something
NOISE_STD = 1.0  # of each feature's standard deviation

Row = list[float | None]
Truth = str | list[str]  # a label (leaf for hierarchical) or, for multilabel, the set of labels


@dataclass(frozen=True)
class Model:
    """A served model's held-out rows and labels, and what the faults need to know of its features."""

    name: str
    X: np.ndarray
    truth: list[Truth]
    important: int  # column of the feature monitoring ranks first (GET /models/{name} monitored_features[0])
    groups: np.ndarray  # a class per row for the class-prior fault (multilabel: the digit behind the label set)

    def feedback_item(self, prediction_id: str, truth: Truth) -> dict[str, Any]:
        key = "labels" if isinstance(truth, list) else "label"
        return {"prediction_id": prediction_id, key: truth}


@dataclass(frozen=True)
class Fault:
    key: str
    title: str
    named_by: tuple[str, ...]  # the alerts that name this fault: one of them must fire
    rows: Callable[[Model, np.random.Generator, int], tuple[list[Row], list[Truth]]]
    models: Callable[[str], bool] = lambda _name: True


def clean(model: Model, rng: np.random.Generator, n: int) -> tuple[list[Row], list[Truth]]:
    pick = rng.integers(0, len(model.X), n)
    return model.X[pick].tolist(), [model.truth[i] for i in pick]


def covariate_shift(model: Model, rng: np.random.Generator, n: int) -> tuple[list[Row], list[Truth]]:
    """The population moves: rows are drawn so that the most important feature's mean is ×1.5 (exponential
    tilting of the held-out rows, capped at their 95th percentile). Each row keeps its own label, so what the model
    learned still holds: the shift a label-free estimate is built for."""
    column = model.X[:, model.important]
    weights = tilted_weights(column, min(1.5 * column.mean(), float(np.quantile(column, 0.95))))
    pick = rng.choice(len(model.X), n, p=weights)
    return model.X[pick].tolist(), [model.truth[i] for i in pick]


def tilted_weights(values: np.ndarray, mean: float) -> np.ndarray:
    """Weights ∝ exp(λ·z) over `values` (z standardised) whose weighted mean is `mean` (bisection on λ)."""
    z = (values - values.mean()) / (values.std() or 1.0)

    def weights(tilt: float) -> np.ndarray:
        w = np.exp(tilt * z - (tilt * z).max())
        return np.asarray(w / w.sum())

    low, high = 0.0, 50.0
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if weights(middle) @ values < mean else (low, middle)
    return weights(low)


def scaled_feature(model: Model, rng: np.random.Generator, n: int) -> tuple[list[Row], list[Truth]]:
    """The most important feature's values ×1.5 with the rows' labels unchanged: an upstream scaling bug. The
    model's inputs no longer mean what they did, so its confidence says nothing of its accuracy."""
    pick = rng.integers(0, len(model.X), n)
    X = model.X[pick].copy()
    X[:, model.important] *= 1.5
    return X.tolist(), [model.truth[i] for i in pick]


def gaussian_noise(model: Model, rng: np.random.Generator, n: int) -> tuple[list[Row], list[Truth]]:
    """Every feature plus noise of `NOISE_STD` times its held-out standard deviation (failing sensors, a lossy
    upstream); labels unchanged."""
    pick = rng.integers(0, len(model.X), n)
    X = model.X[pick] + rng.normal(0.0, 1.0, (n, model.X.shape[1])) * (NOISE_STD * model.X.std(axis=0))
    return X.tolist(), [model.truth[i] for i in pick]


def class_prior_shift(model: Model, rng: np.random.Generator, n: int) -> tuple[list[Row], list[Truth]]:
    """Only rows of one class: the least common in validation, so its share moves the most."""
    values, counts = np.unique(model.groups, return_counts=True)
    rows = np.flatnonzero(model.groups == values[np.argmin(counts)])
    pick = rng.choice(rows, n)
    return model.X[pick].tolist(), [model.truth[i] for i in pick]


def missing_values(model: Model, rng: np.random.Generator, n: int) -> tuple[list[Row], list[Truth]]:
    """The most important feature arrives as null in every row (a broken join upstream)."""
    rows, truth = clean(model, rng, n)
    for row in rows:
        row[model.important] = None
    return rows, truth


def out_of_range(model: Model, rng: np.random.Generator, n: int) -> tuple[list[Row], list[Truth]]:
    """The most important feature at its held-out maximum plus its range (a unit change: cm sent as mm)."""
    rows, truth = clean(model, rng, n)
    column = model.X[:, model.important]
    far = float(column.max() + (column.max() - column.min()) + 1.0)
    for row in rows:
        row[model.important] = far
    return rows, truth


def stale_model(model: Model, rng: np.random.Generator, n: int) -> tuple[list[Row], list[Truth]]:
    """Rows of the drifted generator, with their own labels: what the model was trained on no longer holds."""
    X, y = synthetic_rows(drifted=True, n=n, seed=int(rng.integers(1 << 31)))
    return X.tolist(), list(y)


FAULTS: tuple[Fault, ...] = (
    Fault("covariate_shift", "covariate shift: rows drawn so that the most important feature's mean is ×1.5",
          ("ClassifierFeatureDrift",), covariate_shift),
    Fault("scaled_feature", "scaling bug: the most important feature's values ×1.5, labels unchanged",
          ("ClassifierFeatureDrift", "ClassifierDataQuality"), scaled_feature),
    Fault("noise", f"Gaussian noise on every input (σ = {NOISE_STD:g} × the feature's std)",
          ("ClassifierFeatureDrift", "ClassifierEstimatedAccuracyDrop"), gaussian_noise),
    Fault("class_prior", "class-prior shift: rows of one class only",
          ("ClassifierPredictionDrift", "ClassifierClassCollapse"), class_prior_shift),
    Fault("stale_model", "stale model: rows from a drifted generator",
          ("ClassifierFeatureDrift", "ClassifierPredictionDrift", "ClassifierEstimatedAccuracyDrop"), stale_model,
          models=lambda name: name == SYNTHETIC),
    Fault("missing", "missing values: the most important feature null", ("ClassifierDataQuality",), missing_values),
    Fault("out_of_range", "out-of-range values: the most important feature beyond its range",
          ("ClassifierDataQuality", "ClassifierFeatureDrift"), out_of_range),
)  # fmt: skip


# --- the synthetic model ------------------------------------------------------------------------------------------


def synthetic_rows(drifted: bool, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of three Gaussian classes; `drifted` moves every class centre (covariate and concept drift at once)."""
    centres = np.random.default_rng(SEED).normal(0.0, 1.5, (len(SYNTHETIC_CLASSES), SYNTHETIC_FEATURES))
    if drifted:
        centres = centres + np.random.default_rng(SEED + 1).normal(0.0, 1.2, centres.shape)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(SYNTHETIC_CLASSES), n)
    X = SYNTHETIC_OFFSET + centres[which] + rng.normal(0.0, 1.0, (n, SYNTHETIC_FEATURES))
    return X, np.asarray(SYNTHETIC_CLASSES)[which]


def synthetic_feature_names() -> list[str]:
    return [f"x{j}" for j in range(SYNTHETIC_FEATURES)]


def register_synthetic() -> str:
    """Train and register `drifting_world` (BENTOML_HOME must point at the scorecard's store)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    from service.store import register_model

    X_train, y_train = synthetic_rows(drifted=False, n=3000, seed=SEED + 2)
    X_val, y_val = synthetic_rows(drifted=False, n=1000, seed=SEED + 3)
    model = HistGradientBoostingClassifier(random_state=SEED).fit(X_train, y_train)
    return register_model(
        SYNTHETIC, "multiclass", model, X_val, y_val, X_train=X_train, y_train=y_train,
        feature_names=synthetic_feature_names(), allows_missing=True,
    )  # fmt: skip


def load_models(descriptions: Mapping[str, Mapping[str, Any]]) -> list[Model]:
    """Held-out rows and labels of each model described (GET /models/{name} bodies, by name)."""
    from models.catalog import DIGIT_ATTRIBUTES, evaluation_rows

    loaded = []
    for name, description in descriptions.items():
        if name == SYNTHETIC:
            X, y = synthetic_rows(drifted=False, n=1000, seed=SEED + 3)
            truth: list[Truth] = [str(label) for label in y]
            groups = y
        else:
            X, y = evaluation_rows(name)
            groups = evaluation_rows("digits")[1] if y.ndim == 2 else y
            if y.ndim == 2:  # multilabel: the set of labels of each row
                truth = [[list(DIGIT_ATTRIBUTES)[j] for j in np.flatnonzero(row)] for row in y]
            else:
                truth = [str(label) for label in y]
        column = description["features"]["names"].index(description["monitored_features"][0])
        loaded.append(Model(name, np.asarray(X, dtype=np.float64), truth, column, np.asarray(groups)))
    return loaded


if __name__ == "__main__":
    sys.stdout.write(register_synthetic() + "\n")
