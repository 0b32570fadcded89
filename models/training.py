"""Training a user's table into a registered model: preprocessing inside the saved pipeline, a validation split
(stratified, or time-based on the newest rows), the chosen estimator, per-task fitting, and registration.

The served pipeline takes raw rows: numeric columns are imputed (median) and scaled, categorical ones imputed
and one-hot encoded with unknown categories ignored, text columns TF-IDF vectorized.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.multioutput import MultiOutputClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from service.classifiers import InvalidModelError, fit_hierarchy
from service.classifiers.evaluation import Objective
from service.store import register_model

from .dataset import Columns, DataError, TrainingData

ESTIMATORS = ("logistic", "hist-gradient-boosting", "random-forest")
MULTILABEL_STRATEGIES = ("per-label", "joint")
TEXT_MAX_FEATURES = 5000  # TF-IDF vocabulary per text column: bounds the model's size and the dense estimators' width
SEED = 0


@dataclass(frozen=True)
class TrainingOptions:
    estimator: str = "logistic"
    class_weight: str | None = None  # "balanced" for skewed classes
    multilabel_strategy: str = "per-label"
    validation_share: float = 0.2
    optimize: str = "f1"

    def check(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise DataError(f"unknown estimator '{self.estimator}'; one of {', '.join(ESTIMATORS)}")
        if self.class_weight not in (None, "balanced"):
            raise DataError(f"unknown class weight '{self.class_weight}'; only 'balanced'")
        if self.multilabel_strategy not in MULTILABEL_STRATEGIES:
            raise DataError(f"unknown multilabel strategy '{self.multilabel_strategy}'; per-label or joint")
        if not 0.05 <= self.validation_share <= 0.5:
            raise DataError(f"the validation share must lie between 0.05 and 0.5, not {self.validation_share}")
        try:
            Objective.parse(self.optimize)
        except ValueError as exc:
            raise DataError(str(exc)) from None


@dataclass(frozen=True)
class Split:
    train: np.ndarray  # row indices
    validation: np.ndarray
    how: str  # said on the model card


@dataclass(frozen=True)
class TrainedModel:
    tag: str
    data: TrainingData
    split: Split
    options: TrainingOptions


def preprocessor(columns: Columns, dense: bool) -> ColumnTransformer:
    """Raw columns to the estimator's matrix; `dense` for estimators that refuse sparse input."""
    parts: list[tuple[str, Any, Any]] = []
    if columns.numeric:
        parts.append(("numeric", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), columns.numeric))
    if columns.categorical:
        encode = make_pipeline(
            SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore", sparse_output=not dense)
        )
        parts.append(("categorical", encode, columns.categorical))
    for name in columns.text:  # a vectorizer reads one column: a 1-D sequence of documents
        parts.append((f"text_{name}", TfidfVectorizer(max_features=TEXT_MAX_FEATURES), name))
    return ColumnTransformer(parts, sparse_threshold=0.0 if dense else 0.3)


def estimator(options: TrainingOptions) -> Any:
    weight = options.class_weight
    if options.estimator == "hist-gradient-boosting":
        return HistGradientBoostingClassifier(class_weight=weight, random_state=SEED)
    if options.estimator == "random-forest":
        return RandomForestClassifier(n_estimators=200, class_weight=weight, random_state=SEED)
    return LogisticRegression(max_iter=2000, class_weight=weight, random_state=SEED)


def pipeline(columns: Columns, options: TrainingOptions, head: Any | None = None) -> Pipeline:
    dense = options.estimator != "logistic"
    model = estimator(options) if head is None else head
    return Pipeline([("features", preprocessor(columns, dense)), ("model", model)])


def split(data: TrainingData, share: float) -> Split:
    """Time-based when the data has times (the newest `share` validates), else stratified by class when every
    class has two rows or more, else random."""
    n = len(data.X)
    size = max(1, math.ceil(share * n))
    if n - size < 2:
        raise DataError(f"{n} labelled rows are too few to train and validate on")
    if data.times is not None:
        order = np.argsort(data.times.to_numpy(), kind="stable")
        since = data.times.iloc[order[n - size]]
        return Split(order[: n - size], order[n - size :], f"time-based: the newest {size} rows, from {since}")
    rows = np.arange(n)
    strata = None if data.task == "multilabel" else data.y
    if strata is not None and (np.unique(strata, return_counts=True)[1].min() < 2 or size < len(set(strata))):
        strata = None
    train, validation = train_test_split(rows, test_size=size, random_state=SEED, stratify=strata)
    how = f"{'stratified' if strata is not None else 'random'}: {size} rows ({share:.0%})"
    return Split(np.sort(train), np.sort(validation), how)


def fit(data: TrainingData, rows: np.ndarray, options: TrainingOptions) -> Any:
    """The fitted estimator (or per-label / per-node mapping) on `rows`."""
    return fit_rows(data, data.X.iloc[rows], data.y[rows], options)


def fit_rows(data: TrainingData, X: pd.DataFrame, y: np.ndarray, options: TrainingOptions) -> Any:
    """The fitted estimator (or per-label / per-node mapping) on rows `X` of `data` with labels `y`."""
    _check_training_classes(data, y)
    try:
        if data.task == "hierarchical":
            return fit_hierarchy(lambda _node: pipeline(data.columns, options), X, y, data.hierarchy)
        if data.task == "multilabel":
            if options.multilabel_strategy == "per-label":
                return {label: pipeline(data.columns, options).fit(X, y[:, j]) for j, label in enumerate(data.labels)}
            joint = estimator(options)  # a forest predicts every label at once; the others get one fit per label
            if options.estimator != "random-forest":
                joint = MultiOutputClassifier(joint)
            return pipeline(data.columns, options, joint).fit(X, y)
        return pipeline(data.columns, options).fit(X, y)
    except (ValueError, InvalidModelError) as exc:
        raise DataError(f"training failed: {exc}") from exc


def _check_training_classes(data: TrainingData, y: np.ndarray) -> None:
    if data.task == "multilabel":
        for j, label in enumerate(data.labels):
            if y[:, j].min() == y[:, j].max():
                state = "set on every" if y[0, j] else "absent from every"
                raise DataError(f"label '{label}' is {state} training row: the split left nothing to learn from")
    elif len(set(y)) < 2:
        raise DataError(f"the training rows hold one class only ('{y[0]}'); add rows of the other classes")


def train(name: str, data: TrainingData, options: TrainingOptions, progress: Callable[[str], None]) -> TrainedModel:
    """Split, fit, measure and register `data` as a new version of `name`; `progress` hears each step."""
    options.check()
    progress("splitting")
    return fit_and_register(name, data, split(data, options.validation_share), options, progress)


def fit_and_register(
    name: str,
    data: TrainingData,
    rows: Split,
    options: TrainingOptions,
    progress: Callable[[str], None],
    candidate: bool = False,
    recipe: Mapping[str, str] | None = None,
) -> TrainedModel:
    """Fit on `rows.train`, then measure on `rows.validation` and register (a `candidate`: served once promoted).
    `recipe` adds to what the metadata records of the training."""
    progress("fitting")
    fitted = fit(data, rows.train, options)
    progress("measuring and registering")
    X_train, X_val = data.X.iloc[rows.train], data.X.iloc[rows.validation]
    try:
        tag = register_model(
            name,
            data.task,
            fitted,
            X_val,
            data.y[rows.validation],
            X_train=X_train,
            y_train=data.y[rows.train],
            feature_names=list(data.columns.order),
            categorical_features=data.columns.categorical,
            text_features=data.columns.text,
            allows_missing=True,  # the pipeline imputes numbers and categories; a missing text is an empty one
            ignored_columns=data.ignored,  # rows as the file has them (minus the target) are accepted
            optimize=options.optimize,
            refit=lambda X, y: fit_rows(data, X, y, options),
            training={
                "target": data.target,
                **{k: v for k, v in asdict(options).items() if v is not None},
                **(recipe or {}),
            },
            candidate=candidate,
            **data.task_params(),
        )
    except InvalidModelError as exc:
        raise DataError(f"the trained model cannot be registered: {exc}") from exc
    return TrainedModel(tag, data, rows, options)
