"""Forests scored tree by tree: the same probabilities as `predict_proba`, bit for bit, or not used at all."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import ExtraTreesClassifier, GradientBoostingClassifier, RandomForestClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from service.classifiers import get_task
from service.classifiers.forest import forest_node

from .fakes import card_of, features
from .test_linear import FEATURES, data


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomForestClassifier(n_estimators=20, random_state=0),
        lambda: RandomForestClassifier(n_estimators=7, max_depth=3, class_weight="balanced", random_state=1),
        lambda: ExtraTreesClassifier(n_estimators=10, random_state=2),
    ],
    ids=["forest", "shallow-weighted-forest", "extra-trees"],
)
@pytest.mark.parametrize("classes", [2, 5])
def test_the_trees_give_predict_probas_probabilities_bit_for_bit(make: Any, classes: int) -> None:
    estimator = make().fit(*data(classes, np.random.default_rng(classes)))
    node = forest_node(estimator, FEATURES)
    assert node is not None
    for count in (1, 50):  # a request's rows, unseen in training
        rows = data(classes, np.random.default_rng(100 + count), count)[0]
        np.testing.assert_array_equal(node.proba(rows), estimator.predict_proba(rows))


def test_other_estimators_and_forests_fitted_otherwise_keep_being_called() -> None:
    rng = np.random.default_rng(1)
    X, y = data(3, rng)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(FEATURES)])  # rows may come as a DataFrame
    others = [
        GradientBoostingClassifier(n_estimators=5, random_state=0).fit(X, y),
        make_pipeline(StandardScaler(), RandomForestClassifier(n_estimators=5, random_state=0)).fit(X, y),
        RandomForestClassifier(n_estimators=5, random_state=0).fit(frame, y),
        RandomForestClassifier(n_estimators=5, random_state=0).fit(X, np.column_stack([y, y[::-1]])),  # 2 outputs
    ]
    assert [forest_node(estimator, FEATURES) for estimator in others] == [None] * len(others)


def test_probabilities_that_differ_on_the_probe_rows_keep_the_estimator() -> None:
    rng = np.random.default_rng(2)
    X, y = data(3, rng)
    estimator = RandomForestClassifier(n_estimators=5, random_state=0).fit(X, y)
    estimator.predict_proba = lambda rows: np.full((len(rows), 3), 1 / 3)  # not what its trees say
    assert forest_node(estimator, FEATURES) is None


def test_a_multiclass_task_scores_a_forest_tree_by_tree_and_leaves_odd_rows_to_the_estimator() -> None:
    rng = np.random.default_rng(4)
    X, y = data(4, rng)
    estimator = RandomForestClassifier(n_estimators=10, random_state=0).fit(X, y)
    card = card_of({"classes": sorted(set(y)), "features": features(FEATURES), "decision": {}})
    task = get_task("multiclass")({"model": estimator}, card)
    assert task.probabilities.forest is not None  # type: ignore[attr-defined]
    rows = data(4, rng, 40)[0]
    np.testing.assert_array_equal(task.score(rows), estimator.predict_proba(rows))
    # a value beyond float32 is the estimator's to refuse, with its own error, as before
    rows[3, 2] = 1e300
    with pytest.raises(ValueError, match="too large"):
        task.score(rows)
