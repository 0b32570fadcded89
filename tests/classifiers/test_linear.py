"""Linear node classifiers as one matrix product: the same probabilities as `predict_proba`, or not used at all."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler, StandardScaler

from service.classifiers import ROOT, Options, fit_hierarchy, get_task
from service.classifiers.hierarchical import HierarchicalTask
from service.classifiers.linear import linear_node

from .fakes import card_of, features

FEATURES = 6


def data(classes: int, rng: np.random.Generator, rows: int = 300) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(0.0, 3.0, (classes, FEATURES)) + np.arange(FEATURES) * 10.0  # features in their own units
    y = rng.integers(0, classes, rows)
    return centres[y] + rng.normal(0.0, 1.0, (rows, FEATURES)) * np.arange(1, FEATURES + 1), np.array(
        [f"c{i}" for i in y]
    )


@pytest.mark.parametrize(
    "make",
    [
        lambda: LogisticRegression(max_iter=5000),
        lambda: LinearDiscriminantAnalysis(),
        lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)),
        lambda: make_pipeline(StandardScaler(with_mean=False), StandardScaler(), LinearDiscriminantAnalysis()),
        lambda: make_pipeline(StandardScaler(with_std=False), LogisticRegression(C=0.1, max_iter=2000)),
    ],
    ids=["logistic", "lda", "scaled-logistic", "two-scalers-lda", "centred-logistic"],
)
@pytest.mark.parametrize("classes", [2, 5])
def test_the_matrix_product_gives_predict_probas_probabilities(make: Any, classes: int) -> None:
    rng = np.random.default_rng(classes)
    X, y = data(classes, rng)
    estimator = make().fit(X, y)
    node = linear_node(estimator, FEATURES)
    assert node is not None
    rows = data(classes, rng, 50)[0]
    np.testing.assert_allclose(node.proba(rows), estimator.predict_proba(rows), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandomForestClassifier(n_estimators=5, random_state=0),
        lambda: make_pipeline(MinMaxScaler(), LogisticRegression()),  # a step it cannot fold
    ],
    ids=["forest", "min-max-scaled"],
)
def test_other_estimators_keep_being_called(make: Any) -> None:
    rng = np.random.default_rng(0)
    X, y = data(3, rng)
    assert linear_node(make().fit(X, y), FEATURES) is None


def test_a_model_fitted_on_a_dataframe_keeps_being_called() -> None:
    rng = np.random.default_rng(1)
    X, y = data(3, rng)
    frame = pd.DataFrame(X, columns=[f"f{j}" for j in range(FEATURES)])
    assert linear_node(LogisticRegression(max_iter=2000).fit(frame, y), FEATURES) is None


def test_probabilities_that_differ_on_the_probe_rows_keep_the_estimator() -> None:
    rng = np.random.default_rng(2)
    X, y = data(3, rng)
    estimator = LogisticRegression(max_iter=2000).fit(X, y)
    estimator.predict_proba = lambda rows: np.full((len(rows), 3), 1 / 3)  # not what its coefficients say
    assert linear_node(estimator, FEATURES) is None


def test_a_hierarchy_of_linear_nodes_decides_as_with_predict_proba() -> None:
    rng = np.random.default_rng(3)
    X, y = data(9, rng, 900)
    hierarchy = {ROOT: ["a", "b", "c"], "a": ["c0", "c1", "c2"], "b": ["c3", "c4"], "c": ["c5", "c6", "c7", "c8"]}
    nodes = fit_hierarchy(lambda _: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)), X, y, hierarchy)
    metadata = {"classes": sorted(set(y)), "features": features(FEATURES), "decision": {"hierarchy": hierarchy}}
    task = get_task("hierarchical")(nodes, card_of(metadata))
    assert isinstance(task, HierarchicalTask)
    assert all(p.linear is not None for p in task.nodes.probabilities.values())
    rows = data(9, rng, 200)[0]
    options = Options(top_k=3)

    def decided() -> tuple[Any, list[list[tuple[list[str], float]]]]:
        scores = task.score(rows)
        top = [[(p["path"], p["confidence"]) for p in r["top_k"]] for r in task.decide(scores, options).records()]
        return scores, top

    fast, fast_top = decided()
    for probabilities in task.nodes.probabilities.values():
        probabilities.linear = None
    called, called_top = decided()
    np.testing.assert_array_equal(fast.nodes, called.nodes)
    np.testing.assert_allclose(fast.scores, called.scores, rtol=1e-9)
    assert [[path for path, _ in r] for r in fast_top] == [[path for path, _ in r] for r in called_top]
    np.testing.assert_allclose([c for r in fast_top for _, c in r], [c for r in called_top for _, c in r], rtol=1e-9)


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_flat_tasks_score_linear_models_as_a_matrix_product(kind: str) -> None:
    rng = np.random.default_rng(4)
    X, y = data(2 if kind == "binary" else 4, rng)
    estimator = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y)
    classes = sorted(set(y))
    decision = {"positive_class": classes[1], "threshold": 0.5} if kind == "binary" else {}
    card = card_of({"classes": classes, "features": features(FEATURES), "decision": decision})
    task = get_task(kind)({"model": estimator}, card)
    assert task.probabilities.linear is not None  # type: ignore[attr-defined]
    rows = data(2, rng, 40)[0]
    np.testing.assert_allclose(task.score(rows), estimator.predict_proba(rows), rtol=1e-9, atol=1e-12)
    # rows that are not a float matrix go through the estimator
    np.testing.assert_allclose(task.score(rows.astype(np.float32)), estimator.predict_proba(rows.astype(np.float32)))


def test_per_label_linear_models_of_a_multilabel_task() -> None:
    rng = np.random.default_rng(5)
    X, _ = data(3, rng)
    Y = np.column_stack([X[:, 0] > np.median(X[:, 0]), X[:, 3] > np.median(X[:, 3])]).astype(int)
    estimators = {label: LogisticRegression(max_iter=5000).fit(X, Y[:, j]) for j, label in enumerate(["p", "q"])}
    metadata = {"classes": ["p", "q"], "features": features(FEATURES),
                "decision": {"layout": "per_label", "thresholds": [0.5, 0.5]}}  # fmt: skip
    task = get_task("multilabel")(estimators, card_of(metadata))
    assert all(p.linear is not None for p in task.probabilities)  # type: ignore[attr-defined]
    rows = data(3, rng, 40)[0]
    expected = np.column_stack([estimators[label].predict_proba(rows)[:, 1] for label in ["p", "q"]])
    np.testing.assert_allclose(task.score(rows), expected, rtol=1e-9, atol=1e-12)
