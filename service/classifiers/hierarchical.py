"""Hierarchical classification: one classifier per parent node, a consistent path from the top level down.

The hierarchy maps each parent to its children; `ROOT` is the parent of the top level. A parent with one
child needs no classifier (its child has score 1). Rows are grouped by the node they reached, so each
node's classifier runs once per batch, a linear one as a matrix product (`linear.py`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Annotated, Any, NotRequired, TypedDict

import numpy as np

from ..card import Decision, ModelCard
from .answers import Doc, Minimum
from .base import Description, Observations, Options, Prediction, Task, check_probabilities, class_names, register_task
from .errors import InvalidInputError, InvalidModelError, required
from .evaluation import shares, take_rows
from .linear import Probabilities
from .truth import DecisionKeys, GivenLabel, Pair, Realized, Truth

ROOT = "__root__"


class Tree:
    """A validated hierarchy with integer node ids; node 0 is the root."""

    def __init__(self, hierarchy: Mapping[str, Sequence[str]]) -> None:
        if ROOT not in hierarchy:
            raise InvalidModelError(f"hierarchy has no '{ROOT}' entry (the parent of the top level)")
        self.names: list[str] = [ROOT]
        self.index: dict[str, int] = {ROOT: 0}
        parent_of: dict[str, str] = {}
        queue = [ROOT]
        while queue:
            parent = queue.pop(0)
            for child in map(str, hierarchy.get(parent, ())):
                if child in parent_of or child == ROOT:
                    raise InvalidModelError(f"hierarchy node '{child}' has more than one parent")
                parent_of[child] = parent
                self.index[child] = len(self.names)
                self.names.append(child)
                queue.append(child)
        unreachable = sorted(set(map(str, hierarchy)) - set(self.index))
        if unreachable:
            raise InvalidModelError(f"hierarchy nodes {unreachable} are not reachable from '{ROOT}'")
        self.children: list[np.ndarray] = [
            np.array([self.index[str(c)] for c in hierarchy.get(name, ())], dtype=np.intp) for name in self.names
        ]
        self.is_leaf = np.array([len(c) == 0 for c in self.children])
        self.parent = np.full(len(self.names), -1, dtype=np.intp)
        for child, parent in parent_of.items():
            self.parent[self.index[child]] = self.index[parent]
        self.depth = np.zeros(len(self.names), dtype=np.intp)
        for node in range(1, len(self.names)):  # breadth-first order: a parent precedes its children
            self.depth[node] = self.depth[self.parent[node]] + 1
        self.max_depth = int(self.depth.max())
        self.leaves = [self.names[i] for i in np.flatnonzero(self.is_leaf)]

    def path_to(self, node: int) -> list[int]:
        """Node ids from the top level down to `node`."""
        path = []
        while node > 0:
            path.append(node)
            node = int(self.parent[node])
        return path[::-1]


class HierarchicalTruth(Truth):
    """A hierarchical model's ground truth is a leaf: `label` (the path follows from the tree), `path` from the top
    level down, or both when they agree. A key is the leaf's name: node names are unique in a tree."""

    def __init__(self, tree: Tree) -> None:
        super().__init__(tree.leaves)
        self.tree = tree

    def key(self, given: GivenLabel) -> str:
        if given.labels is not None:
            raise InvalidInputError(
                "field 'labels' does not fit a hierarchical model; its ground truth is 'label' (a leaf) or 'path'",
                field="labels",
            )
        if given.label is None and given.path is None:
            raise InvalidInputError("a hierarchical model's ground truth is 'label' (a leaf) or 'path'", field="label")
        leaf = None if given.path is None else self._leaf_of(given.path)
        if given.label is not None:
            node = self.tree.index.get(given.label, 0)
            if node == 0:
                raise InvalidInputError(f"'{given.label}' is not a node of this model's hierarchy", field="label")
            if not self.tree.is_leaf[node]:
                raise InvalidInputError(
                    f"'{given.label}' is an inner node; the ground truth of a hierarchical model is a leaf",
                    field="label",
                )
            if leaf is not None and leaf != given.label:
                raise InvalidInputError(
                    f"label '{given.label}' is not the leaf of the path sent ('{leaf}')", field="label"
                )
            leaf = given.label
        assert leaf is not None
        return leaf

    def _leaf_of(self, path: Sequence[str]) -> str:
        tree = self.tree
        if not path:
            raise InvalidInputError("'path' is empty; send the path from the top level down to a leaf", field="path")
        node = 0
        for level, name in enumerate(path):
            child = tree.index.get(name, 0)
            if child == 0 or tree.parent[child] != node:
                expected = [tree.names[c] for c in tree.children[node].tolist()]
                where = "the top level" if node == 0 else f"'{tree.names[node]}'"
                raise InvalidInputError(
                    f"'{name}' is not a child of {where}; expected one of {expected[:20]}", field=f"path[{level}]"
                )
            node = child
        if not tree.is_leaf[node]:
            raise InvalidInputError(
                f"the path stops at the inner node '{tree.names[node]}'; send it down to a leaf", field="path"
            )
        return tree.names[node]

    def path(self, key: str | None) -> list[str]:
        """The node names from the top level down to `key` (empty for no decision)."""
        if key is None or key not in self.tree.index:
            return []
        return [self.tree.names[n] for n in self.tree.path_to(self.tree.index[key])]

    def render(self, key: str) -> dict[str, Any]:
        return {"label": key, "path": self.path(key)}

    def members(self, key: str | None) -> frozenset[str]:
        return frozenset((key,)) if key in self._known else frozenset()

    def realized(self, pairs: Iterable[Pair]) -> Realized:
        """Leaf accuracy and F1 over leaves, and accuracy per level: the decided node at a level against the label's."""
        pairs = list(pairs)
        base = super().realized(pairs)
        right = [0] * self.tree.max_depth
        total = [0] * self.tree.max_depth
        for decided, truth, count in pairs:
            decided_path, truth_path = self.path(decided), self.path(truth)
            for level, node in enumerate(truth_path):
                total[level] += count
                if level < len(decided_path) and decided_path[level] == node:
                    right[level] += count
        level_accuracy = [r / t if t else float("nan") for r, t in zip(right, total, strict=True)]
        return replace(base, level_accuracy=level_accuracy)


class NodeClassifiers:
    """The classifier of each parent node, its columns mapped to child node ids."""

    def __init__(self, tree: Tree, estimators: Mapping[str, Any], n_features: int) -> None:
        self.tree = tree
        self.estimators: dict[int, Any] = {}
        self.columns: dict[int, np.ndarray] = {}
        for node, name in enumerate(tree.names):
            children = [tree.names[c] for c in tree.children[node]]
            if len(children) < 2:
                continue
            if name not in estimators:
                raise InvalidModelError(
                    f"hierarchical model: node '{name}' has {len(children)} children, no classifier"
                )
            estimator = estimators[name]
            check_probabilities(estimator, f"hierarchical model, node '{name}'")
            classes = class_names(estimator)
            if sorted(classes) != sorted(children):
                raise InvalidModelError(
                    f"hierarchical model: node '{name}' classifier has classes {classes}, children are {children}"
                )
            self.estimators[node] = estimator
            self.columns[node] = np.array([tree.index[c] for c in classes], dtype=np.intp)
        self.probabilities = {node: Probabilities(e, n_features) for node, e in self.estimators.items()}

    def proba(self, node: int, X: Any, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(child node ids, P(child | node) for each of `rows`), columns in the same order."""
        if node not in self.estimators:
            return self.tree.children[node], np.ones((len(rows), 1))
        return self.columns[node], self.probabilities[node](take_rows(X, rows))


@dataclass(frozen=True)
class HierarchicalScores:
    """Greedy paths for a batch: node id and conditional score per row and level (-1 / NaN past the end)."""

    X: Any
    nodes: np.ndarray  # rows x levels
    scores: np.ndarray  # rows x levels
    level_proba: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]]  # per level: (rows, child ids, P)

    def rows(self, start: int, stop: int) -> HierarchicalScores:
        """The paths of rows [start, stop), renumbered from 0."""
        levels = []
        for blocks in self.level_proba:
            kept = []
            for rows, children, proba in blocks:
                inside = (rows >= start) & (rows < stop)
                if inside.any():
                    kept.append((rows[inside] - start, children, proba[inside]))
            levels.append(kept)
        return HierarchicalScores(take_rows(self.X, np.arange(start, stop)), self.nodes[start:stop],
                                  self.scores[start:stop], levels)  # fmt: skip


class PathNode(TypedDict):
    level: Annotated[int, Minimum(0)]
    label: str
    score: Annotated[float, Doc("Probability of this node given its parent.")]
    confidence: Annotated[float, Doc("Product of the scores down to this node.")]


class PathScore(TypedDict):
    path: list[str]
    confidence: float


class HierarchicalAnswer(TypedDict):
    """One row's answer of a hierarchical model (`/predict` adds its `id`)."""

    label: Annotated[str | None, Doc("The deepest decided node; `null` when even the top level is unsure.")]
    path: list[PathNode]
    complete: Annotated[bool, Doc("The path reached a leaf.")]
    top_k: NotRequired[Annotated[list[PathScore], Doc("When `top_k` was asked.")]]
    probabilities: NotRequired[
        Annotated[list[dict[str, float]], Doc("Per level of the decided path, with `return_probabilities`.")]
    ]


@dataclass(frozen=True)
class HierarchicalDecisions(Prediction[HierarchicalAnswer]):
    names: list[str]
    nodes: np.ndarray  # rows x levels, -1 past the decided depth
    scores: np.ndarray
    confidences: np.ndarray
    complete: np.ndarray  # bool per row
    top_k: list[list[tuple[list[str], float]]] | None
    probabilities: list[list[dict[str, float]]] | None  # per row, per decided level

    def __len__(self) -> int:
        return len(self.nodes)

    def records(self) -> Iterator[HierarchicalAnswer]:
        names = self.names
        for i, (nodes, scores, confs) in enumerate(
            zip(self.nodes.tolist(), self.scores.tolist(), self.confidences.tolist(), strict=True)
        ):
            path: list[PathNode] = [
                {"level": level, "label": names[node], "score": scores[level], "confidence": confs[level]}
                for level, node in enumerate(nodes)
                if node >= 0
            ]
            record: HierarchicalAnswer = {
                "label": path[-1]["label"] if path else None,
                "path": path,
                "complete": bool(self.complete[i]),
            }
            if self.top_k is not None:
                record["top_k"] = [{"path": labels, "confidence": conf} for labels, conf in self.top_k[i]]
            if self.probabilities is not None:
                record["probabilities"] = self.probabilities[i]
            yield record

    @property
    def decided_labels(self) -> list[str | None]:
        depth = (self.nodes >= 0).sum(axis=1)
        last = self.nodes[np.arange(len(self.nodes)), np.maximum(depth - 1, 0)]
        return [self.names[node] if d > 0 else None for node, d in zip(last.tolist(), depth.tolist(), strict=True)]

    @property
    def confidence(self) -> np.ndarray:
        depth = (self.nodes >= 0).sum(axis=1)
        conf = self.confidences[np.arange(len(self.nodes)), np.maximum(depth - 1, 0)]
        return np.where(depth > 0, conf, 0.0)

    def observations(self) -> Observations:
        names = np.array([*self.names, None], dtype=object)  # node -1 (past the decided depth) maps to None
        by_level = {str(level): names[self.nodes[:, level]].tolist() for level in range(self.nodes.shape[1])}
        depth = (self.nodes >= 0).sum(axis=1)
        leaves = np.array(self.decided_labels, dtype=object)
        leaves[~self.complete] = None
        return Observations(
            labels=by_level,
            drift_labels=leaves.tolist(),
            confidence=self.confidence,
            abstentions=int((depth == 0).sum()),
            path_depth=depth,
            incomplete_paths=int((~self.complete).sum()),
        )


@register_task
class HierarchicalTask(Task):
    """Top-down greedy path; `min_confidence` stops it early; `top_k` returns the k most confident complete paths."""

    name = "hierarchical"
    options = frozenset({"top_k", "min_confidence", "return_probabilities"})
    answer = HierarchicalAnswer
    label_fields = ("label", "path")
    one_label_per_row = True
    truth: HierarchicalTruth

    def __init__(self, estimators: Mapping[str, Any], card: ModelCard) -> None:
        super().__init__(estimators, card)
        self.tree = self.truth.tree
        if sorted(self.tree.leaves) != sorted(self.classes):
            raise InvalidModelError("hierarchical model: the card's classes differ from the hierarchy's leaves")
        self.nodes = NodeClassifiers(self.tree, estimators, len(self.features.names))

    def score(self, X: Any) -> HierarchicalScores:
        return greedy_paths(self.nodes, X)

    def slice_scores(self, scores: HierarchicalScores, start: int, stop: int) -> HierarchicalScores:
        return scores.rows(start, stop)

    def score_matrix(self, X: Any) -> np.ndarray:
        matrix: np.ndarray = np.nan_to_num(self.score(X).scores)
        return matrix

    def decision_keys(self, scores: HierarchicalScores) -> DecisionKeys:
        depth = (scores.nodes >= 0).sum(axis=1)
        last = scores.nodes[np.arange(len(depth)), np.maximum(depth - 1, 0)]
        # the deepest decided node, by its id; past the last id: no decision (a path that decided nothing)
        return DecisionKeys([*self.tree.names, None], np.where(depth > 0, last, len(self.tree.names)))

    def join_scores(self, parts: Sequence[HierarchicalScores]) -> HierarchicalScores:
        if len(parts) == 1:
            return parts[0]
        nodes = np.concatenate([p.nodes for p in parts])
        return HierarchicalScores(None, nodes, np.concatenate([p.scores for p in parts]), [])

    def non_finite_rows(self, scores: HierarchicalScores) -> np.ndarray:
        # the children's probabilities at each level a row reached: its path's scores are taken from them (past
        # the end of a path, a score is NaN by design), and `return_probabilities` shows them
        blocks = [block for level in scores.level_proba for block in level]
        if math.isfinite(sum(float(proba.sum()) for _, _, proba in blocks)):  # the usual case: one sum per node
            return np.empty(0, dtype=np.intp)
        bad = np.zeros(len(scores.nodes), dtype=bool)
        for rows, _, proba in blocks:
            bad[rows[~np.isfinite(proba).all(axis=1)]] = True
        return np.flatnonzero(bad)

    def row_confidence(self, scores: HierarchicalScores) -> np.ndarray:
        confidence: np.ndarray = np.prod(np.where(scores.nodes >= 0, scores.scores, 1.0), axis=1)
        return confidence

    def decide(self, scores: HierarchicalScores, options: Options) -> HierarchicalDecisions:
        tree = self.tree
        nodes = scores.nodes.copy()
        confidences = np.cumprod(np.where(nodes >= 0, scores.scores, 1.0), axis=1)
        if options.min_confidence is not None:
            nodes[confidences < options.min_confidence] = -1  # confidence never rises down a path: a prefix stays
        depth = (nodes >= 0).sum(axis=1)
        last = nodes[np.arange(len(nodes)), np.maximum(depth - 1, 0)]
        complete = (depth > 0) & tree.is_leaf[last]
        return HierarchicalDecisions(
            names=tree.names,
            nodes=nodes,
            scores=scores.scores,
            confidences=confidences,
            complete=complete,
            top_k=None if options.top_k is None else best_paths(self.nodes, scores.X, options.top_k),
            probabilities=_level_probabilities(tree, scores, depth) if options.return_probabilities else None,
        )

    @classmethod
    def describe(cls, estimators: Mapping[str, Any], X_val: Any, y_val: Any, params: Mapping[str, Any]) -> Description:
        from sklearn.metrics import f1_score

        tree = Tree(params["hierarchy"])
        nodes = NodeClassifiers(tree, estimators, int(np.shape(X_val)[1]))
        y = [str(v) for v in y_val]
        unknown = sorted(set(y) - set(tree.leaves))
        if unknown:
            raise InvalidModelError(f"hierarchical y_val holds labels that are not leaves: {unknown[:5]}")
        greedy = greedy_paths(nodes, X_val)
        true_paths = np.full((len(y), tree.max_depth), -1, dtype=np.intp)
        for i, label in enumerate(y):
            path = tree.path_to(tree.index[label])
            true_paths[i, : len(path)] = path
        level_accuracy = [
            float((greedy.nodes[:, level] == true_paths[:, level])[true_paths[:, level] >= 0].mean())
            for level in range(tree.max_depth)
        ]
        depth = (greedy.nodes >= 0).sum(axis=1)
        predicted = [tree.names[n] for n in greedy.nodes[np.arange(len(y)), depth - 1].tolist()]
        correct = np.asarray(predicted, dtype=object) == np.asarray(y, dtype=object)
        true_path_proba = _path_probability(nodes, X_val, true_paths)
        passed = np.zeros(len(tree.names))
        np.add.at(passed, greedy.nodes[greedy.nodes >= 0], 1.0 / len(y))  # share of rows passing each node
        metrics = {
            "accuracy": float(correct.mean()),
            "macro_f1": float(f1_score(y, predicted, average="macro", labels=tree.leaves, zero_division=0)),
            "log_loss": float(-np.mean(np.log(np.clip(true_path_proba, 1e-15, 1.0)))),
            "per_level_accuracy": level_accuracy,
        }
        return Description(
            classes=tree.leaves,
            decision=Decision(hierarchy={k: tuple(str(c) for c in v) for k, v in params["hierarchy"].items()}),
            metrics=metrics,
            prediction_distribution=shares(predicted, tree.leaves),
            level_distribution=[
                {tree.names[node]: float(passed[node]) for node in np.flatnonzero(tree.depth == level + 1).tolist()}
                for level in range(tree.max_depth)
            ],
        )

    @classmethod
    def decision_summary(cls, decision: Decision, classes: Sequence[str]) -> str:
        return "Decision: the most probable child at each level, down to a leaf (min_confidence stops it earlier)"

    @classmethod
    def label_distribution(cls, y: Any, classes: Sequence[str]) -> dict[str, float]:
        return shares([str(v) for v in y], classes)

    @classmethod
    def ground_truth(cls, classes: Sequence[str], decision: Decision) -> HierarchicalTruth:
        return HierarchicalTruth(Tree(required(decision.hierarchy, "decision.hierarchy", cls.name)))


def greedy_paths(nodes: NodeClassifiers, X: Any) -> HierarchicalScores:
    """Follow the most probable child from the root down, one classifier call per node per level."""
    tree = nodes.tree
    n = _len(X)
    path_nodes = np.full((n, max(tree.max_depth, 1)), -1, dtype=np.intp)
    path_scores = np.full(path_nodes.shape, np.nan)
    level_proba: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = []
    current = np.zeros(n, dtype=np.intp)
    for level in range(tree.max_depth):
        expanding = ~tree.is_leaf[current] & ((current > 0) | (level == 0))
        blocks = []
        for node in np.unique(current[expanding]).tolist():
            rows = np.flatnonzero(expanding & (current == node))
            children, proba = nodes.proba(node, X, rows)
            best = proba.argmax(axis=1)
            path_nodes[rows, level] = children[best]
            path_scores[rows, level] = proba[np.arange(len(rows)), best]
            blocks.append((rows, children, proba))
        if not blocks:
            break
        level_proba.append(blocks)
        current = np.where(path_nodes[:, level] >= 0, path_nodes[:, level], -1)
    return HierarchicalScores(X, path_nodes, path_scores, level_proba)


Candidates = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]  # row, path (candidates x levels), last node, conf


def best_paths(nodes: NodeClassifiers, X: Any, k: int) -> list[list[tuple[list[str], float]]]:
    """The k most confident complete paths per row, exactly: min(k, leaves) of them, best first.

    A beam of width k finds k complete paths cheaply; the k-th one's confidence is a lower bound on the answer.
    Confidence never rises down a path, so a second pass that keeps every partial path at or above that bound
    cannot miss a better one (a plain beam can: a likely leaf under a less likely group). The second pass computes
    a node's probabilities over other rows than the first (those that reach the node), and a matrix product over
    other rows may round differently: the beam's own k-th path can come out an ulp below its bound and be cut. So
    the answer is the k best of both passes' paths: the beam's k are always there, and a path the second pass cut
    by rounding ties the k-th to within rounding. A tree has one path per leaf: k is capped there, and a beam that
    wide misses nothing, so it needs no second pass.
    """
    n = _len(X)
    tree = nodes.tree
    k = min(k, len(tree.leaves))
    if k == len(tree.leaves):
        return _paths_by_row(tree, n, _best_per_row(_search(nodes, X, lambda found: found), k))
    beam = _search(nodes, X, lambda found: _best_per_row(found, k))
    row, conf = beam[0], beam[3]
    counts = np.bincount(row, minlength=n)
    kth = conf[np.maximum(np.searchsorted(row, np.arange(n), side="right") - 1, 0)]
    bound = np.where(counts >= k, kth, 0.0)  # fewer than k paths: the beam saw every path already
    wide = _search(nodes, X, lambda found: _at_least(found, bound))
    return _paths_by_row(tree, n, _best_per_row(_union(beam, wide, len(tree.names)), k))


def _paths_by_row(tree: Tree, n: int, found: Candidates) -> list[list[tuple[list[str], float]]]:
    """Per row of `n`, its (path names, confidence) candidates in `found`'s order."""
    result: list[list[tuple[list[str], float]]] = [[] for _ in range(n)]
    for r, path, c in zip(found[0].tolist(), found[1].tolist(), found[3].tolist(), strict=True):
        result[r].append(([tree.names[p] for p in path if p >= 0], c))
    return result


def _search(nodes: NodeClassifiers, X: Any, prune: Callable[[Candidates], Candidates]) -> Candidates:
    """Expand paths level by level from the root, pruning after each level; returns the complete paths."""
    tree = nodes.tree
    n = _len(X)
    row = np.arange(n)
    paths = np.full((n, max(tree.max_depth, 1)), -1, dtype=np.intp)
    last = np.zeros(n, dtype=np.intp)
    conf = np.ones(n)
    for level in range(tree.max_depth):
        open_ = ~tree.is_leaf[last]
        if not open_.any():
            break
        done = np.flatnonzero(~open_)
        rows, new_paths, lasts, confs = [row[done]], [paths[done]], [last[done]], [conf[done]]
        for node in np.unique(last[open_]).tolist():
            candidates = np.flatnonzero(open_ & (last == node))
            children, proba = nodes.proba(node, X, row[candidates])
            expanded = np.repeat(candidates, len(children))
            child_ids = np.tile(children, len(candidates))
            block = paths[expanded].copy()
            block[:, level] = child_ids
            rows.append(row[expanded])
            new_paths.append(block)
            lasts.append(child_ids)
            confs.append(conf[expanded] * proba.ravel())
        found = (np.concatenate(rows), np.concatenate(new_paths), np.concatenate(lasts), np.concatenate(confs))
        row, paths, last, conf = prune(found)
    return row, paths, last, conf


def _best_per_row(found: Candidates, k: int) -> Candidates:
    """The k most confident candidates of each row, sorted by row, then confidence descending."""
    row, paths, last, conf = found
    order = np.lexsort((-conf, row))
    row, paths, last, conf = row[order], paths[order], last[order], conf[order]
    keep = (np.arange(len(row)) - np.searchsorted(row, row, side="left")) < k
    return row[keep], paths[keep], last[keep], conf[keep]


def _at_least(found: Candidates, bound: np.ndarray) -> Candidates:
    row, paths, last, conf = found
    keep = conf >= bound[row]
    return row[keep], paths[keep], last[keep], conf[keep]


def _union(first: Candidates, second: Candidates, n_nodes: int) -> Candidates:
    """The candidates of both, each (row, last node) once: a path both found keeps its confidence in `first`
    (the two differ by rounding at most)."""
    row, paths, last, conf = (np.concatenate(pair) for pair in zip(first, second, strict=True))
    _, once = np.unique(row * n_nodes + last, return_index=True)  # the first occurrence: `first`'s
    return row[once], paths[once], last[once], conf[once]


def _path_probability(nodes: NodeClassifiers, X: Any, paths: np.ndarray) -> np.ndarray:
    """Probability of each row's given path: the product of its conditional scores."""
    probability = np.ones(len(paths))
    parents = np.zeros(len(paths), dtype=np.intp)
    for level in range(paths.shape[1]):
        target = paths[:, level]
        for node in np.unique(parents[target >= 0]).tolist():
            rows = np.flatnonzero((target >= 0) & (parents == node))
            children, proba = nodes.proba(node, X, rows)
            column = (children[None, :] == target[rows, None]).argmax(axis=1)
            probability[rows] *= proba[np.arange(len(rows)), column]
        parents = np.where(target >= 0, target, parents)
    return probability


def _level_probabilities(tree: Tree, scores: HierarchicalScores, depth: np.ndarray) -> list[list[dict[str, float]]]:
    """Per row, per decided level: P(child | parent) for every child of the parent at that level."""
    result: list[list[dict[str, float]]] = [[] for _ in range(len(depth))]
    for level, blocks in enumerate(scores.level_proba):
        for rows, children, proba in blocks:
            names = [tree.names[c] for c in children.tolist()]
            for r, p in zip(rows.tolist(), proba.tolist(), strict=True):
                if level < depth[r]:
                    result[r].append(dict(zip(names, p, strict=True)))
    return result


def fit_hierarchy(
    make_estimator: Callable[[str], Any], X: Any, y_leaf: Any, hierarchy: Mapping[str, Sequence[str]]
) -> dict[str, Any]:
    """Train one classifier per parent node with two or more children on the rows beneath it.

    `make_estimator(node_name)` returns an unfitted estimator; the result maps node name to fitted estimator.
    """
    tree = Tree(hierarchy)
    y = [str(v) for v in y_leaf]
    paths = [tree.path_to(tree.index[label]) for label in y]
    fitted: dict[str, Any] = {}
    for node, name in enumerate(tree.names):
        if len(tree.children[node]) < 2:
            continue
        depth = int(tree.depth[node])
        rows = np.array([i for i, p in enumerate(paths) if len(p) > depth and (p[depth - 1] if depth else 0) == node])
        if len(rows) == 0:
            raise InvalidModelError(f"no training rows reach node '{name}'")
        targets = [tree.names[paths[i][depth]] for i in rows.tolist()]
        fitted[name] = make_estimator(name).fit(take_rows(X, rows), targets)
    return fitted


def _len(X: Any) -> int:
    return int(X.shape[0])
