"""The raw floor measures the estimator's own `predict_proba` beside `task.score` only where the service folds it."""

from __future__ import annotations

import numpy as np
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from bench.floor import folded_estimator
from service.classifiers import get_task
from tests.classifiers.fakes import card_of, features

FEATURES = 4


def test_the_estimators_own_call_is_found_only_for_a_folded_model() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, FEATURES))
    y = np.where(X[:, 0] > 0, "b", "a")
    card = card_of({"classes": ["a", "b"], "features": features(FEATURES), "decision": {"top_k": 1}})
    linear = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(X, y)

    assert folded_estimator(get_task("multiclass")({"model": linear}, card)) is linear
    assert folded_estimator(get_task("multiclass")({"model": forest}, card)) is None
