"""`top_k` of a hierarchical model against brute force, on real estimators and the digits data (issue 16).

Brute force scores every root-to-leaf path: the product of P(child | parent) down the path, each node estimator's own
`predict_proba` over all rows at once. The search under test computes a node's probabilities over whichever rows
reach it, and a matrix product over other rows may round differently: the answer must not depend on the request's
size, its other rows, or the requests it is batched with.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from service.classifiers import ROOT, Options, fit_hierarchy
from service.classifiers.hierarchical import HierarchicalTask

from .fakes import card_of, features

# The catalog's digit_groups: two levels, ten leaves.
GROUPS: dict[str, list[str]] = {
    ROOT: ["round", "straight", "curvy"],
    "round": ["0", "6", "8", "9"],
    "straight": ["1", "4", "7"],
    "curvy": ["2", "3", "5"],
}
# Leaves at depths 1 ("1"), 2 ("0", under a node with one child and so no estimator), 3 and 4.
UNBALANCED: dict[str, list[str]] = {
    ROOT: ["1", "zero", "rest"],
    "zero": ["0"],
    "rest": ["loop", "open"],
    "loop": ["6", "8", "9"],
    "open": ["straight", "curvy"],
    "straight": ["4", "7"],
    "curvy": ["2", "3", "5"],
}
ESTIMATORS: dict[str, Callable[[], Any]] = {
    # digit_groups' recipe; a scaled logistic regression takes the linear fast path (`linear.py`)
    "linear": lambda: make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=0)),
    "forest": lambda: RandomForestClassifier(n_estimators=10, random_state=0),
}
K: dict[str, Callable[[int], int]] = {
    "1": lambda leaves: 1,
    "2": lambda leaves: 2,
    "3": lambda leaves: 3,
    "leaves-1": lambda leaves: leaves - 1,
    "leaves": lambda leaves: leaves,
    "leaves+5": lambda leaves: leaves + 5,
}
# Requests, as row numbers of the digits data; the requests of a layout are scored in one model call.
LAYOUTS: dict[str, list[np.ndarray]] = {
    "1 row": [np.arange(1)],
    "7 rows": [np.arange(7)],
    "10 rows": [np.arange(10)],
    "500 rows": [np.arange(500)],
    "rows 480-499 among others": [np.r_[1000:1100, 480:500, 1300:1350]],
    "batched with other requests": [
        np.arange(500),
        np.arange(7),
        np.arange(490, 500),
        np.arange(1000, 1010),
        np.array([496]),
    ],
    "batched, other neighbours": [np.arange(10), np.arange(1500, 1797), np.arange(480, 500)],
}

# Brute force's confidences and the search's differ by rounding only. The linear fast path folds the scaler into
# the weights, so a path of confidence 1e-8 can differ from `predict_proba`'s by 1e-16, a relative 1e-8: tiny
# confidences are held to an absolute bound.
RTOL, ATOL = 1e-12, 1e-14

Answer = list[list[tuple[list[str], float]]]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return np.asarray(X, dtype=np.float64), y.astype(str)


@pytest.fixture(
    scope="module",
    params=list(itertools.product(["groups", "unbalanced"], ESTIMATORS)),
    ids=lambda p: "-".join(p),
)
def model(request: pytest.FixtureRequest, digits: tuple[np.ndarray, np.ndarray]) -> tuple[HierarchicalTask, np.ndarray]:
    """A task fitted on the catalog's training split, and brute force's rows x leaves confidences of every row."""
    tree_name, estimator = request.param
    hierarchy = GROUPS if tree_name == "groups" else UNBALANCED
    X, y = digits
    X_train, _, y_train, _ = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    fitted = fit_hierarchy(lambda _node: ESTIMATORS[estimator](), X_train, y_train, hierarchy)
    card = card_of({"classes": sorted(set(y)), "features": features(X.shape[1]), "decision": {"hierarchy": hierarchy}})
    task = HierarchicalTask(fitted, card)
    fast = [p.linear is not None for p in task.nodes.probabilities.values()]
    assert all(fast) if estimator == "linear" else not any(fast)  # the path the test means to cover is taken
    return task, every_path_confidence(task, X)


def every_path_confidence(task: HierarchicalTask, X: np.ndarray) -> np.ndarray:
    """Rows x leaves (in `task.tree.leaves` order): the product of the node probabilities down each leaf's path."""
    tree = task.tree
    proba = {node: est.predict_proba(X) for node, est in task.nodes.estimators.items()}
    column = {node: {str(c): j for j, c in enumerate(est.classes_)} for node, est in task.nodes.estimators.items()}
    confidence = np.ones((len(X), len(tree.leaves)))
    for j, leaf in enumerate(tree.leaves):
        for parent, child in itertools.pairwise([0, *tree.path_to(tree.index[leaf])]):
            if parent in proba:  # a parent with one child has no estimator: its child scores 1
                confidence[:, j] *= proba[parent][:, column[parent][tree.names[child]]]
    return confidence


def batched_top_k(task: HierarchicalTask, X: np.ndarray, requests: Sequence[np.ndarray], k: int) -> list[Answer]:
    """Each request's `top_k` as the batcher computes it (`Batcher._run`): the requests' rows joined and scored in
    one model call, the scores sliced back per request and decided with that request's options."""
    scores = task.score(task.join_inputs([X[rows] for rows in requests]))
    answers, start = [], 0
    for rows in requests:
        prediction = task.decide(task.slice_scores(scores, start, start + len(rows)), Options(top_k=k))
        assert prediction.top_k is not None
        answers.append(prediction.top_k)
        start += len(rows)
    return answers


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("k_of", K.values(), ids=K.keys())
def test_top_k_is_the_k_most_confident_complete_paths(
    model: tuple[HierarchicalTask, np.ndarray],
    digits: tuple[np.ndarray, np.ndarray],
    k_of: Callable[[int], int],
    layout: str,
) -> None:
    """Every row gets exactly min(k, leaves) distinct complete paths, best first, whose confidences are brute
    force's for those paths and the k highest of brute force's (ties may pick either path)."""
    task, brute = model
    tree = task.tree
    k = k_of(len(tree.leaves))
    expected = min(k, len(tree.leaves))
    leaf_of_path = {
        tuple(tree.names[n] for n in tree.path_to(tree.index[leaf])): j for j, leaf in enumerate(tree.leaves)
    }
    requests = LAYOUTS[layout]
    for rows, answer in zip(requests, batched_top_k(task, digits[0], requests, k), strict=True):
        short = [(int(r), len(paths)) for r, paths in zip(rows, answer, strict=True) if len(paths) != expected]
        assert not short, f"(row, paths) of rows that did not get {expected} paths: {short}"
        paths = [tuple(path) for row_paths in answer for path, _ in row_paths]
        assert set(paths) <= set(leaf_of_path), "every path runs from the top level down to a leaf"
        leaves = np.array([leaf_of_path[p] for p in paths]).reshape(len(rows), expected)
        assert (np.sort(leaves, axis=1)[:, 1:] != np.sort(leaves, axis=1)[:, :-1]).all(), "a path listed twice"
        confidence = np.array([[c for _, c in row_paths] for row_paths in answer])
        np.testing.assert_allclose(confidence, np.take_along_axis(brute[rows], leaves, axis=1), rtol=RTOL, atol=ATOL)
        best = -np.sort(-brute[rows], axis=1)[:, :expected]
        np.testing.assert_allclose(confidence, best, rtol=RTOL, atol=ATOL)
