"""HierarchicalTask: greedy consistent paths, path confidence, `min_confidence` cut, exact top-k paths, Tree checks."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from service.classifiers import ROOT, InvalidInputError, InvalidModelError, Options, fit_hierarchy, get_task
from service.classifiers.evaluation import Correctness
from service.classifiers.hierarchical import HierarchicalTask, Tree

from .fakes import RecordingFit, card_of, counting_proba, features, fixed_proba, odd_rows_round_down, predict

# Three levels, leaves at depths 1 (D), 2 (A2, B1, B2, C1) and 3 (A1x, A1y). C has one child: no classifier.
HIERARCHY: dict[str, list[str]] = {
    ROOT: ["A", "B", "C", "D"],
    "A": ["A1", "A2"],
    "B": ["B1", "B2"],
    "C": ["C1"],
    "A1": ["A1x", "A1y"],
}
LEAVES = ["A1x", "A1y", "A2", "B1", "B2", "C1", "D"]
# Each node's FixedProba reads its own columns of X.
NODE_COLUMNS: dict[str, tuple[list[str], int]] = {
    ROOT: (["A", "B", "C", "D"], 0),
    "A": (["A1", "A2"], 4),
    "B": (["B1", "B2"], 6),
    "A1": (["A1x", "A1y"], 8),
}
N_FEATURES = 10


def row(root: list[float], a: list[float], b: list[float], a1: list[float]) -> list[float]:
    """One input row: P(A,B,C,D), P(A1,A2 | A), P(B1,B2 | B), P(A1x,A1y | A1)."""
    return [*root, *a, *b, *a1]


# Dyadic probabilities, so products are exact.
ROW_A1X = row([0.5, 0.25, 0.125, 0.125], [0.75, 0.25], [0.5, 0.5], [0.75, 0.25])  # A .5, A1 .375, A1x .28125
ROW_B2 = row([0.125, 0.5, 0.25, 0.125], [0.5, 0.5], [0.25, 0.75], [0.5, 0.5])  # B .5, B2 .375
ROW_C1 = row([0.25, 0.125, 0.5, 0.125], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5])  # C .5, C1 (score 1) .5
ROW_D = row([0.125, 0.125, 0.25, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5])  # D .5, a leaf at level 0


def make_task(counting: bool = False) -> HierarchicalTask:
    """The hierarchy above with one `FixedProba` (or call-counting) estimator per parent with >= 2 children."""
    make = counting_proba if counting else fixed_proba
    task = get_task("hierarchical")(
        estimators={node: make(classes, offset) for node, (classes, offset) in NODE_COLUMNS.items()},
        card=card_of({"classes": LEAVES, "features": features(N_FEATURES), "decision": {"hierarchy": HIERARCHY}}),
    )
    assert isinstance(task, HierarchicalTask)
    return task


def records(X: Any, options: Options | None = None, task: HierarchicalTask | None = None) -> list[dict[str, Any]]:
    task = task or make_task()
    return list(predict(task, np.asarray(X, dtype=np.float64), options or Options()).records())


def labels_of(path: list[dict[str, Any]]) -> list[str]:
    return [step["label"] for step in path]


def test_greedy_paths_with_scores_and_confidences() -> None:
    """Each level takes the most probable child; `score` is P(node | parent), `confidence` the running product."""
    out = records([ROW_A1X, ROW_B2, ROW_C1, ROW_D])
    assert out[0]["path"] == [
        {"level": 0, "label": "A", "score": 0.5, "confidence": 0.5},
        {"level": 1, "label": "A1", "score": 0.75, "confidence": 0.375},
        {"level": 2, "label": "A1x", "score": 0.75, "confidence": 0.28125},
    ]
    assert out[1]["path"] == [
        {"level": 0, "label": "B", "score": 0.5, "confidence": 0.5},
        {"level": 1, "label": "B2", "score": 0.75, "confidence": 0.375},
    ]
    assert [r["label"] for r in out] == ["A1x", "B2", "C1", "D"]
    assert all(r["complete"] for r in out)


def test_a_single_child_needs_no_estimator_and_scores_one() -> None:
    """C has one child: no classifier is stored for it, and C1 scores 1.0 given C."""
    (out,) = records([ROW_C1])
    assert out["path"] == [
        {"level": 0, "label": "C", "score": 0.5, "confidence": 0.5},
        {"level": 1, "label": "C1", "score": 1.0, "confidence": 0.5},
    ]


def test_leaves_at_different_depths() -> None:
    """D is a leaf at level 0: its path has one step and is complete; the batch mixes depths 1, 2 and 3."""
    out = records([ROW_D, ROW_A1X, ROW_B2])
    assert [len(r["path"]) for r in out] == [1, 3, 2]
    assert out[0] == {
        "label": "D",
        "path": [{"level": 0, "label": "D", "score": 0.5, "confidence": 0.5}],
        "complete": True,
    }


def test_greedy_path_is_consistent_on_random_probabilities(rng: np.random.Generator) -> None:
    """On random rows every step is a child of the previous step, and the path is the argmax child at each step."""
    tree = Tree(HIERARCHY)
    blocks = [rng.dirichlet(np.ones(k), size=200) for k in (4, 2, 2, 2)]
    X = np.column_stack(blocks)
    prediction = predict(make_task(), X, Options())
    for x, record in zip(X, prediction.records(), strict=True):
        names = labels_of(record["path"])
        parent = ROOT
        confidence = 1.0
        for step in record["path"]:
            assert step["label"] in HIERARCHY[parent]
            children, offset = NODE_COLUMNS.get(parent, (HIERARCHY[parent], None))
            if offset is not None:
                best = children[int(np.argmax(x[offset : offset + len(children)]))]
                assert step["label"] == best
            confidence *= step["score"]
            assert step["confidence"] == pytest.approx(confidence)
            parent = step["label"]
        assert record["complete"] and bool(tree.is_leaf[tree.index[names[-1]]])
    np.testing.assert_allclose(prediction.confidence, [r["path"][-1]["confidence"] for r in prediction.records()])


def test_confidence_property_is_the_path_product() -> None:
    """`confidence` is the product of the decided path's scores; `decided_labels` its deepest node."""
    prediction = predict(make_task(), np.array([ROW_A1X, ROW_B2, ROW_C1, ROW_D]), Options())
    np.testing.assert_array_equal(prediction.confidence, [0.28125, 0.375, 0.5, 0.5])
    assert prediction.decided_labels == ["A1x", "B2", "C1", "D"]
    assert len(prediction) == 4


@pytest.mark.parametrize(
    ("min_confidence", "path", "complete"),
    [
        (0.28125, ["A", "A1", "A1x"], True),  # equal to the full path's confidence: kept
        (0.3, ["A", "A1"], False),
        (0.375, ["A", "A1"], False),  # equal to level 1's confidence: kept
        (0.4, ["A"], False),
        (0.5, ["A"], False),
        (0.5000001, [], False),  # even level 0 is below: no label, empty path
    ],
)
def test_min_confidence_stops_at_the_deepest_level_at_or_above_it(
    min_confidence: float, path: list[str], complete: bool
) -> None:
    """The path is cut after the deepest level whose confidence is >= min_confidence."""
    prediction = predict(make_task(), np.array([ROW_A1X]), Options(min_confidence=min_confidence))
    (out,) = prediction.records()
    assert labels_of(out["path"]) == path
    assert out["label"] == (path[-1] if path else None)
    assert out["complete"] is complete
    assert prediction.decided_labels == [path[-1] if path else None]
    expected_confidence = {3: 0.28125, 2: 0.375, 1: 0.5, 0: 0.0}[len(path)]
    np.testing.assert_array_equal(prediction.confidence, [expected_confidence])


def test_min_confidence_cuts_each_row_independently() -> None:
    """In one batch a min_confidence of 0.375 leaves B2 and C1 complete, cuts A1x's path at A1, keeps D."""
    out = records([ROW_A1X, ROW_B2, ROW_C1, ROW_D], Options(min_confidence=0.375))
    assert [labels_of(r["path"]) for r in out] == [["A", "A1"], ["B", "B2"], ["C", "C1"], ["D"]]
    assert [r["complete"] for r in out] == [False, True, True, True]


def test_return_probabilities_per_decided_level() -> None:
    """`probabilities` has one `{child: P(child | parent)}` per decided level, cut with the path."""
    (full,) = records([ROW_A1X], Options(return_probabilities=True))
    assert full["probabilities"] == [
        {"A": 0.5, "B": 0.25, "C": 0.125, "D": 0.125},
        {"A1": 0.75, "A2": 0.25},
        {"A1x": 0.75, "A1y": 0.25},
    ]
    (cut,) = records([ROW_A1X], Options(return_probabilities=True, min_confidence=0.375))
    assert cut["probabilities"] == full["probabilities"][:2]
    (single,) = records([ROW_C1], Options(return_probabilities=True))
    assert single["probabilities"] == [{"A": 0.25, "B": 0.125, "C": 0.5, "D": 0.125}, {"C1": 1.0}]


# Greedy goes to A (0.5), but the most confident complete path is B/B1. Every complete path:
#   A/A1/A1x = 0.5 * 0.625 * 0.625 = 0.1953125     A/A1/A1y = 0.5 * 0.625 * 0.375 = 0.1171875
#   A/A2     = 0.5 * 0.375         = 0.1875        B/B1     = 0.375 * 0.875       = 0.328125
#   B/B2     = 0.375 * 0.125       = 0.046875      C/C1     = 0.0625              D = 0.0625
ROW_DETOUR = row([0.5, 0.375, 0.0625, 0.0625], [0.625, 0.375], [0.875, 0.125], [0.625, 0.375])
DETOUR_RANKED = [
    (["B", "B1"], 0.328125),
    (["A", "A1", "A1x"], 0.1953125),
    (["A", "A2"], 0.1875),
    (["A", "A1", "A1y"], 0.1171875),
]
# A and B split into children, C does not: the best two complete paths are C/C1 and B/B1, yet C is third at level 0.
#   C/C1 = 0.28125; B/B1 = 0.34375 * 0.5625 = 0.193359375; A/A2 = 0.375 * 0.4375 = 0.1640625;
#   A/A1/A1x = 0.375 * 0.5625 * 0.75 = 0.158203125; B/B2 = 0.34375 * 0.4375 = 0.150390625
ROW_PRUNED = row([0.375, 0.34375, 0.28125, 0.0], [0.5625, 0.4375], [0.5625, 0.4375], [0.75, 0.25])
PRUNED_RANKED = [
    (["C", "C1"], 0.28125),
    (["B", "B1"], 0.193359375),
    (["A", "A2"], 0.1640625),
    (["A", "A1", "A1x"], 0.158203125),
    (["B", "B2"], 0.150390625),
]


def top_k(X: list[list[float]], k: int, task: HierarchicalTask | None = None) -> list[list[tuple[list[str], float]]]:
    return [[(e["path"], e["confidence"]) for e in r["top_k"]] for r in records(X, Options(top_k=k), task)]


def test_top_k_paths_are_the_k_most_confident_complete_paths() -> None:
    """k = 3 on the detour row: B/B1, A/A1/A1x, A/A2, with their path confidences."""
    assert top_k([ROW_DETOUR], 3) == [DETOUR_RANKED[:3]]


def test_top_1_path_need_not_go_through_the_greedy_top_level_node() -> None:
    """The single best path is B/B1 (0.328125) although greedy picks A at level 0 (its best leaf: 0.1953125)."""
    assert top_k([ROW_DETOUR], 1) == [DETOUR_RANKED[:1]]
    (greedy,) = records([ROW_DETOUR])
    assert labels_of(greedy["path"]) == ["A", "A1", "A1x"]  # `label` stays the greedy decision


def test_top_2_paths_when_the_best_one_starts_at_the_third_top_level_node() -> None:
    """C/C1 (0.28125) and B/B1 (0.193359375) are the best two, though C is only third at level 0."""
    assert top_k([ROW_PRUNED], 2) == [PRUNED_RANKED[:2]]


def test_top_k_capped_at_the_number_of_leaves_lists_every_path_once() -> None:
    """With k beyond the 7 leaves, every leaf's path appears once and the confidences sum to 1."""
    (paths,) = top_k([ROW_DETOUR], 10)
    assert len(paths) == len(LEAVES)
    assert sorted(p[-1] for p, _ in paths) == sorted(LEAVES)
    confidences = [c for _, c in paths]
    assert confidences == sorted(confidences, reverse=True)
    assert sum(confidences) == pytest.approx(1.0)
    assert paths[:4] == DETOUR_RANKED


@pytest.mark.parametrize("k", [len(LEAVES), 10**9, 10**400], ids=["leaves", "1e9", "400 digits"])
def test_top_k_at_or_beyond_the_leaves_is_one_search_of_the_tree(k: int) -> None:
    """A tree has one path per leaf: `top_k` is capped there, and a beam as wide as the leaves misses nothing, so
    the search calls each node once with the rows that reach it, whatever k (no second, bounded pass)."""
    task = make_task(counting=True)
    X = np.array([ROW_A1X, ROW_B2, ROW_DETOUR])
    scores = task.score(X)
    for estimator in task.nodes.estimators.values():
        estimator.calls_.clear()
    prediction = task.decide(scores, Options(top_k=k))
    calls = {name: task.nodes.estimators[task.tree.index[name]].calls_ for name in NODE_COLUMNS}
    assert calls == {ROOT: [3], "A": [3], "B": [3], "A1": [3]}
    assert prediction.top_k is not None
    assert [len(paths) for paths in prediction.top_k] == [len(LEAVES)] * 3
    assert prediction.top_k[2][:4] == DETOUR_RANKED


def test_top_k_matches_brute_force_on_random_probabilities(rng: np.random.Generator) -> None:
    """On random rows, `top_k` equals the k best of every leaf's path confidence, enumerated by hand."""
    X = np.column_stack([rng.dirichlet(np.ones(k), size=30) for k in (4, 2, 2, 2)])
    tree = Tree(HIERARCHY)
    for k in (1, 2, 3):
        got = top_k(X.tolist(), k)
        for x, paths in zip(X, got, strict=True):
            confidence = {}
            for leaf in LEAVES:
                names = [tree.names[n] for n in tree.path_to(tree.index[leaf])]
                p, parent = 1.0, ROOT
                for name in names:
                    if parent in NODE_COLUMNS:
                        classes, offset = NODE_COLUMNS[parent]
                        p *= x[offset + classes.index(name)]
                    parent = name
                confidence[tuple(names)] = p
            best = sorted(confidence.values(), reverse=True)[:k]
            np.testing.assert_allclose([c for _, c in paths], best, err_msg=f"k={k}")
            for path, c in paths:
                assert confidence[tuple(path)] == pytest.approx(c)


# k = 2. The beam takes both rows to A at level 0, so it calls A with two rows; the second pass keeps A for the
# first row only (the second's A, 0.25, is below its bound 0.3125), so it calls A with one row.
#   first row:  B/B1 = 0.5 * 0.75 = 0.375, A/A2 = 0.5 * 0.625 = 0.3125 (the bound), A/A1 = 0.1875, B/B2 = 0.125
#   second row: B/B1 = B/B2 = 0.625 * 0.5 = 0.3125, A 0.25, C/C1 and D 0.0625
ROW_ROUNDED = row([0.5, 0.5, 0.0, 0.0], [0.375, 0.625], [0.75, 0.25], [0.5, 0.5])
ROW_LEAVES_A = row([0.25, 0.625, 0.0625, 0.0625], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5])


def test_top_k_keeps_k_paths_when_a_node_rounds_differently_over_other_rows() -> None:
    """Issue 16: A's probabilities come out an ulp lower over one row than over two, as a matrix product over other
    rows may round, so the second pass finds A/A2 just below the bound its first-pass confidence set. The first
    row still gets its two best paths, A/A2 at (within rounding) 0.3125."""
    estimators = {node: fixed_proba(classes, offset) for node, (classes, offset) in NODE_COLUMNS.items()}
    estimators["A"] = odd_rows_round_down(*NODE_COLUMNS["A"])
    task = HierarchicalTask(
        estimators, card_of({"classes": LEAVES, "features": features(N_FEATURES), "decision": {"hierarchy": HIERARCHY}})
    )
    first, second = top_k([ROW_ROUNDED, ROW_LEAVES_A], 2, task)
    assert [path for path, _ in first] == [["B", "B1"], ["A", "A2"]]
    assert [c for _, c in first] == [0.375, pytest.approx(0.3125, rel=1e-15)]
    assert sorted(second) == [(["B", "B1"], 0.3125), (["B", "B2"], 0.3125)]


def test_threshold_does_not_apply() -> None:
    """`threshold` is rejected for a hierarchical model, naming the option."""
    with pytest.raises(InvalidInputError) as excinfo:
        predict(make_task(), np.array([ROW_D]), Options(threshold=0.5))
    assert excinfo.value.field == "options.threshold"


def test_a_path_that_ends_early_is_finite_and_any_child_probability_counts() -> None:
    """Past a path's end (D is a leaf at level 0) the scores are NaN by design, not a fault; a non-finite
    probability of a child the path did not take is one (`return_probabilities` would show it)."""
    task = make_task()
    hidden = row([0.5, 0.25, 0.125, -np.inf], [0.75, 0.25], [0.5, 0.5], [0.75, 0.25])  # greedy: A, A1, A1x
    scores = task.score(np.array([ROW_D, ROW_A1X, hidden]))
    assert np.isnan(scores.scores[0, 1:]).all()
    assert task.non_finite_rows(scores).tolist() == [2]


def test_each_node_estimator_is_called_once_per_batch() -> None:
    """Rows are grouped by the node they reached: one call per reached node, with exactly its rows."""
    task = make_task(counting=True)
    X = np.array([ROW_A1X, ROW_B2, ROW_A1X, ROW_D, ROW_C1, ROW_A1X, ROW_B2])
    predict(task, X, Options())
    calls = {name: task.nodes.estimators[task.tree.index[name]].calls_ for name in NODE_COLUMNS}
    assert calls == {ROOT: [7], "A": [3], "B": [2], "A1": [3]}


def test_unreached_nodes_are_not_called() -> None:
    """A batch that never reaches A calls neither A's nor A1's estimator."""
    task = make_task(counting=True)
    predict(task, np.array([ROW_B2, ROW_D]), Options())
    calls = {name: task.nodes.estimators[task.tree.index[name]].calls_ for name in NODE_COLUMNS}
    assert calls == {ROOT: [2], "A": [], "B": [1], "A1": []}


def test_tree_rejects_a_node_with_two_parents() -> None:
    """X under both A and B is not a tree."""
    with pytest.raises(InvalidModelError, match="X"):
        Tree({ROOT: ["A", "B"], "A": ["X", "Y"], "B": ["X", "Z"]})


def test_tree_rejects_an_unreachable_node() -> None:
    """A parent entry that no path from the root reaches is an error naming it."""
    with pytest.raises(InvalidModelError, match="orphan"):
        Tree({ROOT: ["A", "B"], "orphan": ["O1", "O2"]})


def test_tree_needs_a_root() -> None:
    """A hierarchy without the ROOT entry is rejected."""
    with pytest.raises(InvalidModelError):
        Tree({"A": ["A1", "A2"]})


def test_tree_structure() -> None:
    """Depths, leaves and parent links of the test hierarchy, by hand."""
    tree = Tree(HIERARCHY)
    depth = {name: int(tree.depth[i]) for i, name in enumerate(tree.names)}
    assert depth == {
        ROOT: 0,
        "A": 1,
        "B": 1,
        "C": 1,
        "D": 1,
        "A1": 2,
        "A2": 2,
        "B1": 2,
        "B2": 2,
        "C1": 2,
        "A1x": 3,
        "A1y": 3,
    }
    assert sorted(tree.leaves) == sorted(LEAVES)
    assert [tree.names[n] for n in tree.path_to(tree.index["A1y"])] == ["A", "A1", "A1y"]


def test_a_parent_with_two_children_needs_an_estimator() -> None:
    """Leaving out B's classifier is a model error at load."""
    estimators = {node: fixed_proba(classes, offset) for node, (classes, offset) in NODE_COLUMNS.items() if node != "B"}
    with pytest.raises(InvalidModelError, match="B"):
        HierarchicalTask(
            estimators, card_of({"classes": LEAVES, "features": features(10), "decision": {"hierarchy": HIERARCHY}})
        )


LEAF_LABELS = ["A1x", "A1y", "A2", "B1", "B2", "C1", "D", "A1x", "B1"]
# Two levels, every leaf at depth 2 (the catalog's digit_groups shape).
GROUPS: dict[str, list[str]] = {ROOT: ["round", "straight"], "round": ["0", "6", "8"], "straight": ["1", "7"]}
GROUP_LEAVES = ["0", "6", "8", "1", "7"]


def test_fit_hierarchy_routes_rows_to_the_nodes_above_their_leaf() -> None:
    """Each parent's estimator is fitted on the rows beneath it, with the child on their path as target."""
    y = ["0", "1", "6", "7", "8", "1", "0"]
    X = np.arange(len(y), dtype=np.float64)[:, None]  # row i holds i, so we can see which rows went where
    fitted = fit_hierarchy(lambda name: RecordingFit(), X, y, GROUPS)
    seen = {name: (est.X_[:, 0].astype(int).tolist(), est.y_) for name, est in fitted.items()}
    assert seen == {
        ROOT: (list(range(7)), ["round", "straight", "round", "straight", "round", "straight", "round"]),
        "round": ([0, 2, 4, 6], ["0", "6", "8", "0"]),
        "straight": ([1, 3, 5], ["1", "7", "1"]),
    }


def test_fit_hierarchy_with_leaves_at_different_depths() -> None:
    """Root, A, B and A1 get an estimator trained on the rows beneath them, with their children as targets; C none.

    Rows whose leaf is shallower than a node (D at depth 1, A2 at depth 2 for A1 at depth 2) are simply not its rows.
    """
    X = np.arange(len(LEAF_LABELS), dtype=np.float64)[:, None]
    fitted = fit_hierarchy(lambda name: RecordingFit(), X, LEAF_LABELS, HIERARCHY)
    assert set(fitted) == {ROOT, "A", "B", "A1"}
    seen = {name: (est.X_[:, 0].astype(int).tolist(), est.y_) for name, est in fitted.items()}
    assert seen[ROOT] == (list(range(9)), ["A", "A", "A", "B", "B", "C", "D", "A", "B"])
    assert seen["A"] == ([0, 1, 2, 7], ["A1", "A1", "A2", "A1"])
    assert seen["B"] == ([3, 4, 8], ["B1", "B2", "B1"])
    assert seen["A1"] == ([0, 1, 7], ["A1x", "A1y", "A1x"])


def test_fit_hierarchy_with_logistic_regressions_serves_a_working_task() -> None:
    """Real LogisticRegression nodes fitted by `fit_hierarchy` load into the task and recover separable leaves."""
    n = len(GROUP_LEAVES)
    centres = {leaf: np.eye(n)[j] * 6.0 for j, leaf in enumerate(GROUP_LEAVES)}
    rng = np.random.default_rng(0)
    y = [leaf for leaf in GROUP_LEAVES for _ in range(12)]
    X = np.array([centres[leaf] + rng.normal(0.0, 0.3, n) for leaf in y])
    fitted = fit_hierarchy(lambda name: LogisticRegression(max_iter=500), X, y, GROUPS)
    assert set(fitted) == {ROOT, "round", "straight"}
    task = HierarchicalTask(
        fitted, card_of({"classes": GROUP_LEAVES, "features": features(n), "decision": {"hierarchy": GROUPS}})
    )
    prediction = predict(task, np.array([centres[leaf] for leaf in GROUP_LEAVES]), Options())
    assert prediction.decided_labels == GROUP_LEAVES
    for record in prediction.records():
        steps = labels_of(record["path"])
        assert len(steps) == 2 and record["complete"]
        for parent, child in itertools.pairwise([ROOT, *steps]):
            assert child in GROUPS[parent]


def test_describe_measures_paths_by_hand() -> None:
    """Validation metrics of the greedy paths against true leaves A1x, B1, C1, A2.

    Greedy: A1x, B2, C1, D. Level 0: 3 of 4 right (D vs A); level 1: A1, C1 right of A1, B1, C1, A2 (2 of 4);
    level 2: A1x, the only row that has one, right. P(true path): 0.28125, 0.5 * 0.25, 0.5 * 1, 0.125 * 0.5.
    """
    X = np.array([ROW_A1X, ROW_B2, ROW_C1, ROW_D])
    estimators = {node: fixed_proba(classes, offset) for node, (classes, offset) in NODE_COLUMNS.items()}
    description = HierarchicalTask.describe(estimators, X, ["A1x", "B1", "C1", "A2"], {"hierarchy": HIERARCHY})
    assert sorted(description.classes) == sorted(LEAVES)
    assert description.decision.to_metadata() == {"hierarchy": HIERARCHY}
    assert description.metrics["accuracy"] == 0.5
    assert description.metrics["per_level_accuracy"] == [0.75, 0.5, 1.0]
    assert description.metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.28125, 0.125, 0.5, 0.0625])))
    # confidence is the full greedy path's, measured through the served task: rows 1 and 3 are right; ECE bins
    # 0.28125 (right), 0.375 (wrong) and the two at 0.5 (one right) apart
    validation = Correctness.of(make_task(), X, ["A1x", "B1", "C1", "A2"])
    figures, calibration = validation.figures(), validation.calibration()
    assert figures["mean_confidence"] == pytest.approx((0.28125 + 0.375 + 0.5 + 0.5) / 4)
    assert figures["ece"] == pytest.approx((abs(0.28125 - 1) + abs(0.375 - 0) + abs(0.5 + 0.5 - 1)) / 4)
    # the calibration map gives back the validation accuracy on the validation rows
    assert calibration(np.array([0.28125, 0.375, 0.5, 0.5])).mean() == pytest.approx(0.5)
    # decided leaves: A1x, B2, C1, D, one row each
    assert description.prediction_distribution == {
        leaf: (0.25 if leaf in {"A1x", "B2", "C1", "D"} else 0.0) for leaf in LEAVES
    }
    # rows passing each node, per level: level 0 A, B, C, D one each; level 1 A1, B2, C1; level 2 A1x
    assert description.level_distribution == [
        {"A": 0.25, "B": 0.25, "C": 0.25, "D": 0.25},
        {"A1": 0.25, "A2": 0.0, "B1": 0.0, "B2": 0.25, "C1": 0.25},
        {"A1x": 0.25, "A1y": 0.0},
    ]
