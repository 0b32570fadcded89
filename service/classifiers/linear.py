"""Linear classifiers evaluated as one matrix product instead of `predict_proba`.

`predict_proba` spends more on its input checks than on the arithmetic for the rows of a request: some 50-250 µs
a call (a pipeline checks at every step) against a few µs of products, and a hierarchical model makes one call per
node reached. The service has validated the rows already (a finite float matrix of the model's width). A logistic
regression or a linear discriminant analysis, optionally behind `StandardScaler`s, is a softmax of an affine map
of the row: `LinearNode` keeps that map and evaluates it directly. Whether an estimator qualifies is proved, not
assumed: the map's probabilities must equal the estimator's own on probe rows, else the estimator keeps being
called (`Probabilities`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .forest import forest_node

if TYPE_CHECKING:
    from sklearn.preprocessing import StandardScaler

PROBE_ROWS = 32
TOLERANCE = 1e-9


@dataclass(frozen=True)
class LinearNode:
    """P(class | row) = softmax(row @ weights.T + intercept), columns in the estimator's `classes_` order."""

    weights: np.ndarray  # classes x features
    intercept: np.ndarray  # classes

    def proba(self, X: np.ndarray) -> np.ndarray:
        logits: np.ndarray = X @ self.weights.T + self.intercept
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits


class Probabilities:
    """`predict_proba` of one estimator: its `LinearNode` or `ForestNode` when it has one and the rows are a float
    matrix."""

    def __init__(self, estimator: Any, n_features: int) -> None:
        self.estimator = estimator
        self.linear = linear_node(estimator, n_features)
        self.forest = None if self.linear is not None else forest_node(estimator, n_features)

    def __call__(self, X: Any) -> np.ndarray:
        if isinstance(X, np.ndarray) and X.dtype == np.float64:
            if self.linear is not None:
                return self.linear.proba(X)
            if self.forest is not None and (proba := self.forest.proba(X)) is not None:
                return proba
        return np.asarray(self.estimator.predict_proba(X))


def linear_node(estimator: Any, n_features: int) -> LinearNode | None:
    """The estimator as a `LinearNode`, or None when it is not one (or its probabilities differ on probe rows)."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [step for _, step in estimator.steps] if isinstance(estimator, Pipeline) else [estimator]
    *scalers, final = steps
    if not isinstance(final, LogisticRegression | LinearDiscriminantAnalysis):
        return None
    if not all(isinstance(s, StandardScaler) for s in scalers) or hasattr(estimator, "feature_names_in_"):
        return None  # fitted on a DataFrame: rows may come as one, in the columns' names' order
    coef = np.asarray(final.coef_, dtype=np.float64)
    intercept = np.asarray(final.intercept_, dtype=np.float64).ravel()
    if coef.shape[1] != n_features:
        return None
    if coef.shape[0] == 1:  # binary: P(classes_[1]) = sigmoid(logit) = softmax([0, logit])[1]
        coef = np.vstack([np.zeros_like(coef), coef])
        intercept = np.array([0.0, intercept[0]])
    for scaler in reversed(scalers):  # x' = (x - mean) / scale, folded into the map
        scale = np.asarray(scaler.scale_, dtype=np.float64) if scaler.with_std else np.ones(n_features)
        mean = np.asarray(scaler.mean_, dtype=np.float64) if scaler.with_mean else np.zeros(n_features)
        coef = coef / scale
        intercept = intercept - coef @ mean
    node = LinearNode(coef, intercept)
    return node if _agrees(node, estimator, scalers, n_features) else None


def _agrees(node: LinearNode, estimator: Any, scalers: list[StandardScaler], n_features: int) -> bool:
    """Whether the map gives the estimator's probabilities on rows spread like its training inputs."""
    rng = np.random.default_rng(0)
    probe = rng.normal(0.0, 2.0, (PROBE_ROWS, n_features))
    if scalers and scalers[0].with_std and scalers[0].with_mean:  # in the units the first scaler saw
        probe = probe * scalers[0].scale_ + scalers[0].mean_
    try:
        expected = np.asarray(estimator.predict_proba(probe), dtype=np.float64)
    except Exception:  # a pipeline that wants a DataFrame, or anything else: keep calling it
        return False
    return expected.shape == (PROBE_ROWS, len(node.intercept)) and bool(
        np.allclose(node.proba(probe), expected, rtol=TOLERANCE, atol=TOLERANCE)
    )
