"""Random forests evaluated tree by tree instead of through `predict_proba`.

A scikit-learn forest's `predict_proba` runs its trees through joblib, even on one job: `digits`' 100 trees cost
some 9-10 ms of CPU a call, for 0.4 ms (1 row) to 1 ms (64 rows) of the trees' own compiled work. `ForestNode`
calls each tree's compiled `predict` in the estimator's order and sums as `predict_proba` does (into zeros, one tree
after the other, then divided by the number of trees), so the probabilities are the same bits wherever the forest
runs on one job. Whether an estimator qualifies is proved, as for `LinearNode`: its probabilities must equal the
estimator's own on probe rows, else the estimator keeps being called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

PROBE_ROWS = 64
TOLERANCE = 1e-9


@dataclass(frozen=True)
class ForestNode:
    """P(class | row) = the mean of the trees' leaf fractions, columns in the estimator's `classes_` order."""

    trees: tuple[Any, ...]  # each tree's compiled `tree_`, in the estimator's order
    n_classes: int

    def proba(self, X: np.ndarray) -> np.ndarray | None:
        """None where the rows, in the forest's float32, are not all finite: `predict_proba` then decides (a forest
        fitted with missing values reads NaN; any other raises, as a value beyond float32 makes it raise)."""
        rows = np.ascontiguousarray(X, dtype=np.float32)
        if not np.isfinite(rows).all():
            return None
        proba = np.zeros((rows.shape[0], self.n_classes))
        for tree in self.trees:
            proba += tree.predict(rows)[:, : self.n_classes]
        proba /= len(self.trees)
        return proba


def forest_node(estimator: Any, n_features: int) -> ForestNode | None:
    """The estimator as a `ForestNode`, or None when it is not a single-output forest fitted on a matrix (or its
    probabilities differ on probe rows)."""
    from sklearn.ensemble import ExtraTreesClassifier, RandomForestClassifier

    if not isinstance(estimator, RandomForestClassifier | ExtraTreesClassifier):
        return None
    if hasattr(estimator, "feature_names_in_") or estimator.n_outputs_ != 1 or estimator.n_features_in_ != n_features:
        return None  # fitted on a DataFrame (rows may come as one), or one forest for several outputs
    node = ForestNode(tuple(tree.tree_ for tree in estimator.estimators_), int(estimator.n_classes_))
    return node if _agrees(node, estimator, n_features) else None


def _agrees(node: ForestNode, estimator: Any, n_features: int) -> bool:
    """Whether the trees give the estimator's probabilities on rows spread over the trees' split thresholds."""
    low, high = np.zeros(n_features), np.ones(n_features)
    for tree in node.trees:
        split = tree.feature >= 0
        features, thresholds = tree.feature[split], tree.threshold[split]
        np.minimum.at(low, features, thresholds - 1.0)
        np.maximum.at(high, features, thresholds + 1.0)
    probe = np.random.default_rng(0).uniform(low, high, (PROBE_ROWS, n_features))
    try:
        expected = np.asarray(estimator.predict_proba(probe), dtype=np.float64)
    except Exception:  # anything the estimator refuses: keep calling it
        return False
    got = node.proba(probe)
    return got is not None and got.shape == expected.shape and bool(np.allclose(got, expected, rtol=TOLERANCE, atol=0))
