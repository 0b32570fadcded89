"""MultilabelTask: per-label thresholds, one global threshold, exact top-k, and the two estimator layouts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from sklearn.datasets import make_multilabel_classification
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score

from service.classifiers import InvalidInputError, InvalidModelError, Options, get_task
from service.classifiers.multilabel import MultilabelTask

from .fakes import card_of, features, fixed_proba, multi_output, one_column_binary, predict

LABELS = ["even", "prime", "large"]
THRESHOLDS = [0.5, 0.25, 0.75]

# Columns are P(even), P(prime), P(large).
ROWS = np.array(
    [
        [0.5, 0.25, 0.75],  # every label exactly at its threshold: all three, by score large, even, prime
        [0.4375, 0.125, 0.875],  # even just under 0.5, prime under 0.25: large only
        [0.125, 0.125, 0.125],  # nothing
        [0.625, 0.3125, 0.5],  # even, prime (large under 0.75)
    ]
)


def joint_list_task(thresholds: list[float] = THRESHOLDS) -> MultilabelTask:
    """One multi-output estimator returning scikit-learn's list of (rows, 2) arrays."""
    return build({"model": multi_output(len(LABELS))}, "joint", thresholds)


def joint_matrix_task(thresholds: list[float] = THRESHOLDS) -> MultilabelTask:
    """One estimator returning a rows x labels matrix (MLP / ClassifierChain style)."""
    return build({"model": fixed_proba(LABELS)}, "joint", thresholds)


def per_label_task(thresholds: list[float] = THRESHOLDS) -> MultilabelTask:
    """One binary estimator per label, each reading its own column."""
    return build({label: one_column_binary(j) for j, label in enumerate(LABELS)}, "per_label", thresholds)


def build(estimators: dict[str, Any], layout: str, thresholds: list[float]) -> MultilabelTask:
    task = get_task("multilabel")(
        estimators=estimators,
        card=card_of(
            {
                "classes": LABELS,
                "features": features(len(LABELS)),
                "decision": {"layout": layout, "thresholds": thresholds},
            }
        ),
    )
    assert isinstance(task, MultilabelTask)
    return task


LAYOUTS: dict[str, Callable[..., MultilabelTask]] = {
    "joint-list": joint_list_task,
    "joint-matrix": joint_matrix_task,
    "per-label": per_label_task,
}


def records(task: MultilabelTask, X: np.ndarray, options: Options | None = None) -> list[dict[str, Any]]:
    return list(predict(task, X, options or Options()).records())


def decided(task: MultilabelTask, X: np.ndarray, options: Options | None = None) -> list[list[str]]:
    return [r["labels"] for r in records(task, X, options)]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_per_label_thresholds_are_the_default(layout: str) -> None:
    """Each label is compared with its own tuned threshold; equal to it counts as decided."""
    assert decided(LAYOUTS[layout](), ROWS) == [
        ["large", "even", "prime"],
        ["large"],
        [],
        ["even", "prime"],
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_request_threshold_replaces_every_label_threshold(layout: str) -> None:
    """`threshold: 0.3` applies to every label instead of [0.5, 0.25, 0.75]."""
    assert decided(LAYOUTS[layout](), ROWS, Options(threshold=0.3)) == [
        ["large", "even"],
        ["large", "even"],
        [],
        ["even", "large", "prime"],
    ]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_top_k_returns_exactly_k_labels_highest_first(layout: str) -> None:
    """`top_k` ignores thresholds: exactly k labels per row, even below threshold; ties to the lower column."""
    assert decided(LAYOUTS[layout](), ROWS, Options(top_k=2)) == [
        ["large", "even"],
        ["large", "even"],
        ["even", "prime"],
        ["even", "large"],
    ]
    assert decided(LAYOUTS[layout](), ROWS, Options(top_k=1)) == [["large"], ["large"], ["even"], ["even"]]


def test_top_k_is_capped_at_the_number_of_labels() -> None:
    """Asking for 10 of 3 labels returns the 3, best first."""
    assert decided(joint_list_task(), ROWS[:2], Options(top_k=10)) == [
        ["large", "even", "prime"],
        ["large", "even", "prime"],
    ]


def test_top_k_and_threshold_together_are_rejected() -> None:
    """The two options exclude each other: an input error, not a silent choice."""
    with pytest.raises(InvalidInputError) as excinfo:
        predict(joint_list_task(), ROWS, Options(top_k=2, threshold=0.5))
    assert excinfo.value.field is not None and excinfo.value.field.startswith("options.")
    assert "top_k" in excinfo.value.message and "threshold" in excinfo.value.message


def test_min_confidence_does_not_apply() -> None:
    """`min_confidence` is not a multilabel option."""
    with pytest.raises(InvalidInputError) as excinfo:
        predict(joint_list_task(), ROWS, Options(min_confidence=0.5))
    assert excinfo.value.field == "options.min_confidence"


def test_the_three_layouts_agree_on_records() -> None:
    """Same probabilities, same records, whichever way the estimators are packaged."""
    options = [Options(), Options(threshold=0.3), Options(top_k=2), Options(return_probabilities=True)]
    for option in options:
        first, *others = [records(make(), ROWS, option) for make in LAYOUTS.values()]
        for other in others:
            assert other == first, option


def test_scores_hold_every_label_and_labels_are_sorted_by_score() -> None:
    """`scores` is the model's P(label) for every label; `labels` are in decreasing score order."""
    out = records(joint_list_task(), ROWS)
    assert out[0]["scores"] == {"even": 0.5, "prime": 0.25, "large": 0.75}
    assert out[3]["scores"] == {"even": 0.625, "prime": 0.3125, "large": 0.5}
    for record in out:
        scores = [record["scores"][label] for label in record["labels"]]
        assert scores == sorted(scores, reverse=True)
        assert set(record) == {"labels", "scores"}


def test_return_probabilities() -> None:
    """`probabilities` is the full vector, only when asked."""
    out = records(per_label_task(), ROWS[:1], Options(return_probabilities=True))
    assert out[0]["probabilities"] == {"even": 0.5, "prime": 0.25, "large": 0.75}


def test_large_label_sets_show_decided_and_top_ten_scores_only() -> None:
    """With more than 100 labels, `scores` holds the decided labels plus the 10 highest, nothing else."""
    n = 120
    labels = [f"l{j}" for j in range(n)]
    p = np.linspace(0.0, 0.59, n)[::-1].copy()  # label j scores 0.59 - j * 0.005 (distinct, decreasing)
    thresholds = [0.99] * n
    thresholds[50] = 0.0  # decided although ranked 51st
    task = get_task("multilabel")(
        estimators={"model": fixed_proba(labels)},
        card=card_of(
            {
                "classes": labels,
                "features": features(n),
                "decision": {"layout": "joint", "thresholds": thresholds},
            }
        ),
    )
    (record,) = predict(task, p[None, :], Options()).records()
    assert record["labels"] == ["l50"]
    assert set(record["scores"]) == {f"l{j}" for j in range(10)} | {"l50"}
    assert record["scores"]["l0"] == p[0]


def test_one_threshold_per_label_is_required() -> None:
    """Metadata with fewer thresholds than labels is an inconsistent model."""
    with pytest.raises(InvalidModelError):
        joint_list_task(thresholds=[0.5, 0.5])


def test_per_label_layout_needs_every_label() -> None:
    """A per-label model missing one label's estimator fails at load."""
    with pytest.raises(InvalidModelError):
        build({"even": one_column_binary(0), "prime": one_column_binary(1)}, "per_label", THRESHOLDS)


def test_multi_output_with_the_wrong_output_count_is_rejected() -> None:
    """A joint estimator scoring 2 outputs for 3 labels is a model error, not a shape crash."""
    task = build({"model": multi_output(2)}, "joint", THRESHOLDS)
    with pytest.raises(InvalidModelError):
        predict(task, ROWS, Options())


# Hand-made validation set for one label (same as the binary one): the F1-best threshold is 0.35.
#   t=0.35 -> 4 predicted, TP 3, P 3/4, R 1, F1 6/7; t=0.7 -> F1 0.8; t=0.3 -> F1 0.75.
HAND_P = [0.1, 0.3, 0.35, 0.6, 0.7, 0.9]
HAND_Y = [0, 0, 1, 0, 1, 1]


def test_describe_tunes_one_threshold_per_label_by_hand() -> None:
    """Label `a` is cut at 0.35; label `b`, whose positives all score 0.75 or more, at 0.75 (F1 1); each threshold
    sits midway to the next lower score (0.3, 0.625)."""
    p_b = [0.5, 0.75, 0.875, 0.25, 0.9375, 0.625]
    y_b = [0, 1, 1, 0, 1, 0]
    X = np.column_stack([HAND_P, p_b])
    y = np.column_stack([HAND_Y, y_b])
    description = MultilabelTask.describe({"model": multi_output(2)}, X, y, {"labels": ["a", "b"]})
    assert description.decision.to_metadata() == {
        "layout": "joint",
        "thresholds": pytest.approx([0.325, 0.6875]),
        "objective": "f1",
    }
    assert description.metrics["per_label_f1"] == pytest.approx({"a": 6 / 7, "b": 1.0})
    assert description.metrics["macro_f1"] == pytest.approx((6 / 7 + 1.0) / 2)
    # decided a: rows 2..5; b: rows 1, 2, 4. Whole-row matches: rows 1? a=0 ok, b ok -> yes; row 0 yes;
    # row 2 yes; row 3 a wrong; row 4 yes; row 5 yes -> 5 of 6.
    assert description.metrics["accuracy"] == pytest.approx(5 / 6)
    assert description.prediction_distribution == pytest.approx({"a": 4 / 6, "b": 3 / 6})


def _multilabel_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    X, Y = make_multilabel_classification(n_samples=240, n_features=8, n_classes=3, n_labels=2, random_state=0)
    return X[:160], Y[:160], X[160:], Y[160:]


def _check_tuned(description: Any, proba: np.ndarray, Y_val: np.ndarray, labels: list[str]) -> None:
    """One threshold per label; each is F1-optimal among all score cut points; per-label F1 matches it."""
    thresholds = description.decision.to_metadata()["thresholds"]
    assert len(thresholds) == len(labels)
    assert set(description.metrics["per_label_f1"]) == set(labels)
    for j, label in enumerate(labels):
        f1_at = {t: f1_score(Y_val[:, j], proba[:, j] >= t, zero_division=0) for t in np.unique(proba[:, j])}
        tuned = f1_score(Y_val[:, j], proba[:, j] >= thresholds[j], zero_division=0)
        assert tuned == pytest.approx(max(f1_at.values())), label
        assert description.metrics["per_label_f1"][label] == pytest.approx(tuned), label


def test_describe_on_a_real_multi_output_forest() -> None:
    """A RandomForest fitted on an indicator matrix is described as a joint model, thresholds F1-optimal."""
    X_train, Y_train, X_val, Y_val = _multilabel_data()
    forest = RandomForestClassifier(n_estimators=15, random_state=0).fit(X_train, Y_train)
    labels = ["a", "b", "c"]
    description = MultilabelTask.describe({"model": forest}, X_val, Y_val, {"labels": labels})
    assert description.decision.to_metadata()["layout"] == "joint"
    proba = np.column_stack([p[:, 1] for p in forest.predict_proba(X_val)])
    _check_tuned(description, proba, Y_val, labels)
    task = build_from(description, {"model": forest})
    expected = proba >= np.asarray(description.decision.to_metadata()["thresholds"])
    got = [r["labels"] for r in predict(task, X_val, Options()).records()]
    assert [set(labels_) for labels_ in got] == [{labels[j] for j in np.flatnonzero(row)} for row in expected]


def test_describe_on_real_per_label_logistic_regressions() -> None:
    """One LogisticRegression per label is described as a per-label model, thresholds F1-optimal."""
    X_train, Y_train, X_val, Y_val = _multilabel_data()
    labels = ["a", "b", "c"]
    estimators = {label: LogisticRegression(max_iter=500).fit(X_train, Y_train[:, j]) for j, label in enumerate(labels)}
    description = MultilabelTask.describe(estimators, X_val, Y_val, {"labels": labels})
    assert description.decision.to_metadata()["layout"] == "per_label"
    proba = np.column_stack([estimators[label].predict_proba(X_val)[:, 1] for label in labels])
    _check_tuned(description, proba, Y_val, labels)
    task = build_from(description, estimators)
    assert len(predict(task, X_val, Options()).records().__next__()["scores"]) == 3


def build_from(description: Any, estimators: dict[str, Any]) -> MultilabelTask:
    """The task registration would store: metadata from `describe`."""
    task = get_task("multilabel")(
        estimators=estimators,
        card=card_of(
            {"classes": description.classes, "features": features(8), "decision": description.decision.to_metadata()}
        ),
    )
    assert isinstance(task, MultilabelTask)
    return task
