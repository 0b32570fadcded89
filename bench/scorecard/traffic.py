"""The scorecard's traffic: evaluation rows of each model with their labels, clean or with a fault injected.

Catalog models get rows of their evaluation split (`models.catalog.evaluation_rows`: never read at registration).
The synthetic model `drifting_world`, trained here, has 8 numeric features and one categorical column (`region`,
one-hot encoded in a Pipeline like a CSV-trained model); it is registered on rows of seeds `TRAIN_SEED` and
`CALIBRATION_SEED` and its traffic comes from other seeds (`TRAFFIC_SEED` on), so no row is shared.

A fault takes a clean batch and changes `share` of its rows (an exact count, rows chosen at random) by `size`, in
the fault's own unit. Every fault names the alerts that should say so.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

SYNTHETIC = "drifting_world"
SYNTHETIC_CLASSES = ("a", "b", "c")
SYNTHETIC_FEATURES = 8
CATEGORY = "region"
CATEGORIES = ("north", "south", "east", "west", "centre")
SEED = 7  # the synthetic world's class centres
TRAIN_SEED, CALIBRATION_SEED = 1_000, 1_001  # registration only
TRAFFIC_SEED = 2_000  # traffic: this seed and the ones after it
SYNTHETIC_OFFSET = 10.0  # positive values, like the measurements of the catalog's data, so that ×1.5 means something
SYNTHETIC_ROWS = 2_000  # the synthetic model's pool of traffic rows

Truth = str | list[str]  # a label (leaf for hierarchical) or, for multilabel, the set of labels
Row = list[float | str | None]


@dataclass(frozen=True)
class Model:
    """A served model's evaluation rows and labels, and what the faults need to know of its features."""

    name: str
    X: np.ndarray  # numeric features, float, in the model's column order
    truth: list[Truth]
    monitored: tuple[int, ...]  # numeric columns in GET /models/{name} monitored_features order (most important first)
    groups: np.ndarray  # a class per row for the class-prior fault (multilabel: the digit behind the label set)
    allows_missing: bool
    categories: np.ndarray | None = None  # the categorical column (last in the model's order), when it has one

    @property
    def important(self) -> int:
        return self.monitored[0]

    def feedback_item(self, prediction_id: str, truth: Truth) -> dict[str, Any]:
        key = "labels" if isinstance(truth, list) else "label"
        return {"prediction_id": prediction_id, key: truth}


@dataclass(frozen=True)
class Batch:
    """Rows to send with their true labels; `source` is each row's index in the model's pool (distinct rows
    behind a realized accuracy), -1 for rows drawn fresh from a generator."""

    X: np.ndarray
    truth: list[Truth]
    source: np.ndarray
    categories: np.ndarray | None = None

    def rows(self) -> list[Row]:
        """JSON rows: NaN as null, the category last."""
        rows: list[Row] = [[None if v != v else v for v in row] for row in self.X.tolist()]
        if self.categories is not None:
            for row, category in zip(rows, self.categories.tolist(), strict=True):
                row.append(category)
        return rows


def clean(model: Model, rng: np.random.Generator, n: int) -> Batch:
    pick = rng.integers(0, len(model.X), n)
    return _take(model, pick)


def _take(model: Model, pick: np.ndarray) -> Batch:
    categories = None if model.categories is None else model.categories[pick]
    return Batch(model.X[pick].copy(), [model.truth[i] for i in pick], pick, categories)


def chosen(rng: np.random.Generator, n: int, share: float) -> np.ndarray:
    """Exactly round(share × n) row positions of n, at random."""
    return np.sort(rng.choice(n, int(round(share * n)), replace=False))


# --- the faults ---------------------------------------------------------------------------------------------------

Apply = Callable[[Model, np.random.Generator, Batch, float, float], Batch]


@dataclass(frozen=True)
class Fault:
    key: str
    title: str  # what one unit of `size` means
    unit: str
    sizes: tuple[float, float, float]  # mild, medium, strong
    named_by: tuple[str, ...]  # the alerts that name this fault: one of them must fire
    apply: Apply
    models: Callable[[Model], bool] = lambda _model: True
    ramp: bool = False  # the size grows from 0 to sizes[-1] over the phase (one size, every row)


def covariate_shift(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """The population moves: the changed rows are drawn from the evaluation rows with weights that move the most
    important feature's mean by `size` of its sd (exponential tilting). Each row keeps its own label."""
    column = model.X[:, model.important]
    weights = tilted_weights(column, column.mean() + size * column.std())
    where = chosen(rng, len(batch.X), share)
    pick = batch.source.copy()
    pick[where] = rng.choice(len(model.X), len(where), p=weights)
    return _take(model, pick)


def tilted_weights(values: np.ndarray, mean: float) -> np.ndarray:
    """Weights ∝ exp(λ·z) over `values` (z standardised) whose weighted mean is `mean` (bisection on λ; the largest
    mean the rows allow when `mean` is beyond it)."""
    z = (values - values.mean()) / (values.std() or 1.0)

    def weights(tilt: float) -> np.ndarray:
        w = np.exp(tilt * z - (tilt * z).max())
        return np.asarray(w / w.sum())

    low, high = (0.0, 50.0) if mean >= values.mean() else (-50.0, 0.0)
    for _ in range(100):
        middle = (low + high) / 2
        low, high = (middle, high) if weights(middle) @ values < mean else (low, middle)
    return weights(low)


def scaled_feature(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """A unit change upstream: the most important feature's values × `size`, labels unchanged."""
    X = batch.X.copy()
    X[chosen(rng, len(X), share), model.important] *= size
    return replace(batch, X=X)


def gaussian_noise(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """Every feature plus Gaussian noise of `size` × its sd over the evaluation rows; labels unchanged."""
    X = batch.X.copy()
    where = chosen(rng, len(X), share)
    X[where] += rng.normal(0.0, 1.0, (len(where), X.shape[1])) * (size * np.nanstd(model.X, axis=0))
    return replace(batch, X=X)


def class_prior_shift(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """Of the changed rows, `size` come from the class least common in the evaluation rows (the rest as before)."""
    values, counts = np.unique(model.groups, return_counts=True)
    rare = np.flatnonzero(model.groups == values[np.argmin(counts)])
    where = chosen(rng, len(batch.X), share)
    where = where[chosen(rng, len(where), size)]
    pick = batch.source.copy()
    pick[where] = rng.choice(rare, len(where))
    return _take(model, pick)


def missing_values(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """The `size` most important features arrive as null (a broken join upstream)."""
    X = batch.X.copy()
    X[np.ix_(chosen(rng, len(X), share), np.asarray(model.monitored[: int(size)]))] = np.nan
    return replace(batch, X=X)


def out_of_range(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """The most important feature at its evaluation maximum plus `size` × its range."""
    X = batch.X.copy()
    column = model.X[:, model.important]
    X[chosen(rng, len(X), share), model.important] = column.max() + size * (column.max() - column.min())
    return replace(batch, X=X)


def joint_broken(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """The `size` most important columns each permuted independently across the changed rows of the batch: every
    column keeps its values (its marginal), rows no longer go together (an upstream join gone wrong)."""
    X = batch.X.copy()
    where = chosen(rng, len(X), share)
    for column in model.monitored[: int(size)]:
        X[where, column] = X[rng.permutation(where), column]
    return replace(batch, X=X)


def stuck_feature(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """The `size` most important features stuck at their evaluation median (a sensor or a default value)."""
    X = batch.X.copy()
    columns = np.asarray(model.monitored[: int(size)])
    X[np.ix_(chosen(rng, len(X), share), columns)] = np.nanmedian(model.X[:, columns], axis=0)
    return replace(batch, X=X)


def unseen_category(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """`size` of the categorical column's categories renamed upstream (`north` sent as `NORTH`): a flood of
    categories training never had."""
    assert batch.categories is not None
    categories = batch.categories.copy()
    renamed = set(CATEGORIES[: int(size)])
    for i in chosen(rng, len(categories), share):
        if categories[i] in renamed:
            categories[i] = str(categories[i]).upper()
    return replace(batch, categories=categories)


def concept_drift(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """Inputs unchanged; `size` of the changed rows' true labels are another row's different label (what the
    inputs mean changed)."""
    truth = list(batch.truth)
    where = chosen(rng, len(truth), share)
    for i in where[chosen(rng, len(where), size)]:
        while (other := model.truth[int(rng.integers(len(model.truth)))]) == truth[i]:
            pass
        truth[i] = other
    return replace(batch, truth=truth)


def stale_model(model: Model, rng: np.random.Generator, batch: Batch, size: float, share: float) -> Batch:
    """Rows of a world that moved on after training: every class centre moved by `size` sd, rows with their own
    (new-world) labels."""
    where = chosen(rng, len(batch.X), share)
    X, y, categories = synthetic_rows(len(where), seed=int(rng.integers(TRAFFIC_SEED + 1, 1 << 31)), drift=size)
    X_all, truth = batch.X.copy(), list(batch.truth)
    X_all[where] = X
    for position, i in enumerate(where):
        truth[i] = str(y[position])
    source = batch.source.copy()
    source[where] = -1
    assert batch.categories is not None
    cats = batch.categories.copy()
    cats[where] = categories
    return Batch(X_all, truth, source, cats)


def is_synthetic(model: Model) -> bool:
    return model.name == SYNTHETIC


FAULTS: tuple[Fault, ...] = (
    # 0.25 sd is under the drift alerts' 0.1 PSI floor on any share (a normal's mean moved by d sd has a PSI of
    # about d², times the share squared), so it measured nothing but the floor: the sizes start where a ticket is due,
    # and stop at 1 sd, about the most that reweighting a few hundred bounded pixel values can move a mean.
    Fault("covariate_shift", "rows drawn so that the most important feature's mean moves", "sd", (0.5, 0.75, 1.0),
          ("ClassifierFeatureDrift",), covariate_shift),
    Fault("scaled_feature", "the most important feature's values multiplied (a unit change)", "×", (1.5, 10.0, 1000.0),
          ("ClassifierFeatureDrift", "ClassifierDataQuality"), scaled_feature),
    Fault("noise", "Gaussian noise on every feature", "sd", (0.25, 0.5, 1.0),
          ("ClassifierFeatureDrift", "ClassifierMultivariateDrift", "ClassifierEstimatedAccuracyDrop"), gaussian_noise),
    Fault("class_prior", "of the changed rows, this share from the least common class", "share", (0.3, 0.6, 1.0),
          ("ClassifierPredictionDrift", "ClassifierClassCollapse"), class_prior_shift),
    Fault("missing", "the most important features sent as null", "features", (1, 5, 20),
          ("ClassifierDataQuality",), missing_values, models=lambda m: m.allows_missing),
    Fault("out_of_range", "the most important feature at its maximum plus this many ranges", "ranges",
          (0.1, 0.5, 2.0), ("ClassifierDataQuality", "ClassifierFeatureDrift"), out_of_range),
    Fault("joint_broken", "the most important columns permuted independently across the batch's rows (marginals "
          "kept)", "columns", (2, 8, 30), ("ClassifierMultivariateDrift",), joint_broken),
    Fault("stuck", "the most important features stuck at their median", "features", (1, 5, 20),
          ("ClassifierFeatureDrift", "ClassifierDataQuality", "ClassifierMultivariateDrift"), stuck_feature),
    Fault("unseen_category", f"of the {len(CATEGORIES)} categories of `{CATEGORY}`, this many renamed", "categories",
          (1, 3, 5), ("ClassifierDataQuality",), unseen_category, models=is_synthetic),
    Fault("concept_drift", "inputs unchanged, this share of the true labels changed", "share", (0.1, 0.25, 0.5),
          ("ClassifierRealizedAccuracyLow",), concept_drift),
    Fault("stale_model", "a world that moved on: class centres moved", "sd", (0.5, 1.0, 2.0),
          ("ClassifierFeatureDrift", "ClassifierPredictionDrift", "ClassifierMultivariateDrift",
           "ClassifierEstimatedAccuracyDrop", "ClassifierRealizedAccuracyLow"), stale_model, models=is_synthetic),
    Fault("gradual_shift", "covariate shift ramping from 0 to the size at the phase's end", "sd", (1.0, 1.0, 1.0),
          ("ClassifierFeatureDrift",), covariate_shift, ramp=True),
)  # fmt: skip
FAULT_BY_KEY = {f.key: f for f in FAULTS}


# --- the synthetic model ------------------------------------------------------------------------------------------


def synthetic_rows(n: int, seed: int, drift: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows of three Gaussian classes (unit sd) and a category that shifts each class a little; `drift` moves
    every class centre by that many sd in a random direction (covariate and concept drift at once)."""
    centres = np.random.default_rng(SEED).normal(0.0, 1.5, (len(SYNTHETIC_CLASSES), SYNTHETIC_FEATURES))
    if drift:
        direction = np.random.default_rng(SEED + 1).normal(0.0, 1.0, centres.shape)
        centres = centres + drift * direction / np.linalg.norm(direction, axis=1, keepdims=True)
    rng = np.random.default_rng(seed)
    which = rng.integers(0, len(SYNTHETIC_CLASSES), n)
    region = rng.integers(0, len(CATEGORIES), n)
    X = SYNTHETIC_OFFSET + centres[which] + rng.normal(0.0, 1.0, (n, SYNTHETIC_FEATURES))
    X[:, 0] += 0.5 * (region - 2)  # the category matters a little
    return X, np.asarray(SYNTHETIC_CLASSES)[which], np.asarray(CATEGORIES)[region]


def synthetic_columns() -> list[str]:
    return [*(f"x{j}" for j in range(SYNTHETIC_FEATURES)), CATEGORY]


def _frame(X: np.ndarray, categories: np.ndarray) -> Any:
    import pandas as pd

    frame = pd.DataFrame(X, columns=synthetic_columns()[:-1])
    frame[CATEGORY] = categories
    return frame


def register_synthetic() -> str:
    """Train and register `drifting_world` (BENTOML_HOME must point at the scorecard's store), through the
    pipeline a CSV with a categorical column gets (`models.training.pipeline`)."""
    from models.dataset import Columns
    from models.training import TrainingOptions, pipeline
    from service.store import register_model

    columns = Columns(tuple(synthetic_columns()[:-1]), (CATEGORY,), (), tuple(synthetic_columns()))
    X_train, y_train, c_train = synthetic_rows(3000, TRAIN_SEED)
    X_cal, y_cal, c_cal = synthetic_rows(1000, CALIBRATION_SEED)
    options = TrainingOptions(estimator="hist-gradient-boosting")
    model = pipeline(columns, options).fit(_frame(X_train, c_train), y_train)
    return register_model(
        SYNTHETIC, "multiclass", model, _frame(X_cal, c_cal), y_cal, X_train=_frame(X_train, c_train),
        y_train=y_train, feature_names=synthetic_columns(), categorical_features=[CATEGORY], allows_missing=True,
        refit=lambda X, y: pipeline(columns, options).fit(X, y),
    )  # fmt: skip


def load_models(descriptions: Mapping[str, Mapping[str, Any]]) -> list[Model]:
    """Evaluation rows and labels of each model described (GET /models/{name} bodies, by name)."""
    from models.catalog import DIGIT_ATTRIBUTES, evaluation_rows

    loaded = []
    for name, description in descriptions.items():
        categories = None
        if name == SYNTHETIC:
            X, y, categories = synthetic_rows(SYNTHETIC_ROWS, TRAFFIC_SEED)
            truth: list[Truth] = [str(label) for label in y]
            groups = y
        else:
            X, y = evaluation_rows(name)
            groups = evaluation_rows("digits")[1] if y.ndim == 2 else y
            if y.ndim == 2:  # multilabel: the set of labels of each row
                truth = [[list(DIGIT_ATTRIBUTES)[j] for j in np.flatnonzero(row)] for row in y]
            else:
                truth = [str(label) for label in y]
        names = [n for n in description["features"]["names"] if n not in description["features"].get("categorical", [])]
        monitored = tuple(names.index(f) for f in description["monitored_features"] if f in names)
        allows_missing = bool(description["features"].get("allows_missing", False))
        loaded.append(
            Model(
                name, np.asarray(X, dtype=np.float64), truth, monitored, np.asarray(groups), allows_missing, categories
            )
        )
    return loaded


def ensure_synthetic() -> str:
    """`drifting_world` as this module trains it: registered when missing, when the stored one is an older recipe
    (other features), or when it lacks what this release measures at registration (`models ensure`'s rule: the
    reference row counts every threshold reads), so a store kept from an earlier scorecard is brought up to date."""
    import bentoml

    from models.__main__ import servable

    try:
        features: Any = bentoml.models.get(f"{SYNTHETIC}:latest").info.metadata["features"]
    except bentoml.exceptions.NotFound:
        features = {}
    if features.get("names") == synthetic_columns() and servable(SYNTHETIC):
        return f"{SYNTHETIC} is up to date"
    return register_synthetic()


if __name__ == "__main__":
    sys.stdout.write(ensure_synthetic() + "\n")
