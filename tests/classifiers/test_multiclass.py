"""MulticlassTask: top-1, top-k (best first, ties to the lower column), abstention below `min_confidence`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.classifiers import InvalidInputError, Options, get_task
from service.classifiers.multiclass import MulticlassTask, top_k_indices

from .fakes import card_of, features, fixed_proba, predict

CLASSES = ["cat", "dog", "eel", "fox"]


def make_task(classes: list[Any] = CLASSES) -> MulticlassTask:
    """A multiclass task over a `FixedProba` with the given classes."""
    task = get_task("multiclass")(
        estimators={"model": fixed_proba(classes)},
        card=card_of({"classes": classes, "features": features(len(classes))}),
    )
    assert isinstance(task, MulticlassTask)
    return task


def records(task: MulticlassTask, X: Any, options: Options | None = None) -> list[dict[str, Any]]:
    return list(predict(task, np.asarray(X, dtype=np.float64), options or Options()).records())


def test_top1_label_and_confidence() -> None:
    """The label is the most probable class; `confidence` its probability; nothing is abstained by default."""
    out = records(make_task(), [[0.125, 0.5, 0.25, 0.125], [0.0, 0.0, 0.25, 0.75], [0.625, 0.125, 0.125, 0.125]])
    assert [r["label"] for r in out] == ["dog", "fox", "cat"]
    assert [r["confidence"] for r in out] == [0.5, 0.75, 0.625]
    assert [r["abstained"] for r in out] == [False, False, False]
    assert all(set(r) == {"label", "confidence", "abstained"} for r in out)


def test_top1_tie_goes_to_the_lower_column() -> None:
    """Equal top probabilities decide the class that comes first in `classes_`."""
    out = records(make_task(), [[0.125, 0.375, 0.125, 0.375]])
    assert out[0]["label"] == "dog"


def test_top_k_is_best_first_with_scores() -> None:
    """`top_k` lists k `{label, score}` pairs by decreasing score; the scores are the model's own values."""
    out = records(make_task(), [[0.125, 0.5, 0.3125, 0.0625], [0.0625, 0.125, 0.25, 0.5625]], Options(top_k=3))
    assert out[0]["top_k"] == [
        {"label": "dog", "score": 0.5},
        {"label": "eel", "score": 0.3125},
        {"label": "cat", "score": 0.125},
    ]
    assert out[1]["top_k"] == [
        {"label": "fox", "score": 0.5625},
        {"label": "eel", "score": 0.25},
        {"label": "dog", "score": 0.125},
    ]
    assert out[0]["label"] == "dog"  # the label is still top-1


def test_top_k_is_capped_at_the_number_of_classes() -> None:
    """Asking for more labels than there are classes returns every class once, best first."""
    out = records(make_task(), [[0.125, 0.5, 0.3125, 0.0625]], Options(top_k=10))
    assert [e["label"] for e in out[0]["top_k"]] == ["dog", "eel", "cat", "fox"]


def test_top_k_ties_inside_the_k_go_to_the_lower_column() -> None:
    """Equal scores are listed in column order."""
    out = records(make_task(), [[0.25, 0.25, 0.25, 0.25], [0.125, 0.375, 0.125, 0.375]], Options(top_k=3))
    assert [e["label"] for e in out[0]["top_k"]] == ["cat", "dog", "eel"]
    assert [e["label"] for e in out[1]["top_k"]] == ["dog", "fox", "cat"]


def test_top_k_tie_at_the_cut_keeps_the_lower_column() -> None:
    """When the k-th and (k+1)-th scores are equal, the lower column makes the cut.

    Row: columns 5 and 6 score 0.25, column 4 scores 0.5, the other five score 0. For k = 5 the first two zeros
    by column (0 and 1) must be chosen, as `np.argsort(-p, kind="stable")` does.
    """
    proba = np.array([[0.0, 0.0, 0.0, 0.0, 0.5, 0.25, 0.25, 0.0]])
    np.testing.assert_array_equal(top_k_indices(proba, 5), [[4, 5, 6, 0, 1]])


@pytest.mark.parametrize(("n_rows", "n_classes"), [(1, 2), (7, 3), (50, 10), (20, 40)])
def test_top_k_indices_match_argsort_on_random_matrices(rng: np.random.Generator, n_rows: int, n_classes: int) -> None:
    """For every k (and k beyond the class count) the indices are argsort's, best first."""
    proba = rng.dirichlet(np.ones(n_classes), size=n_rows)
    reference = np.argsort(-proba, axis=1, kind="stable")
    for k in range(1, n_classes + 2):
        np.testing.assert_array_equal(top_k_indices(proba, k), reference[:, : min(k, n_classes)], err_msg=f"k={k}")


def test_top_k_indices_match_stable_argsort_with_many_ties(rng: np.random.Generator) -> None:
    """On matrices full of ties, the indices are those of a stable argsort (ties to the lower column)."""
    proba = rng.integers(0, 3, size=(40, 8)) / 4
    reference = np.argsort(-proba, axis=1, kind="stable")
    for k in range(1, 9):
        np.testing.assert_array_equal(top_k_indices(proba, k), reference[:, :k], err_msg=f"k={k}")


def test_min_confidence_abstains_strictly_below() -> None:
    """top-1 == min_confidence is kept; just below it abstains with label None but keeps its confidence."""
    below = float(np.nextafter(0.5, 0.0))
    X = [[0.5, 0.25, 0.125, 0.125], [below, 0.25, 0.125, 0.125], [0.125, 0.125, 0.125, 0.625]]
    task = make_task()
    prediction = predict(task, np.asarray(X), Options(min_confidence=0.5))
    out = list(prediction.records())
    assert [r["label"] for r in out] == ["cat", None, "fox"]
    assert [r["abstained"] for r in out] == [False, True, False]
    assert [r["confidence"] for r in out] == [0.5, below, 0.625]
    assert prediction.decided_labels == ["cat", None, "fox"]
    np.testing.assert_array_equal(prediction.confidence, [0.5, below, 0.625])


def test_min_confidence_zero_never_abstains() -> None:
    """`min_confidence: 0` is a set option that abstains nothing."""
    out = records(make_task(), [[0.25, 0.25, 0.25, 0.25]], Options(min_confidence=0.0))
    assert out[0]["label"] == "cat"
    assert out[0]["abstained"] is False


def test_abstained_rows_still_list_top_k() -> None:
    """Abstention removes the label, not the ranking asked for."""
    out = records(make_task(), [[0.25, 0.375, 0.125, 0.25]], Options(min_confidence=0.5, top_k=2))
    assert out[0]["label"] is None
    assert out[0]["top_k"] == [{"label": "dog", "score": 0.375}, {"label": "cat", "score": 0.25}]


def test_return_probabilities() -> None:
    """`probabilities` maps each class to its column, only when asked."""
    task = make_task()
    X = [[0.125, 0.5, 0.25, 0.125]]
    assert "probabilities" not in records(task, X)[0]
    assert records(task, X, Options(return_probabilities=True))[0]["probabilities"] == {
        "cat": 0.125,
        "dog": 0.5,
        "eel": 0.25,
        "fox": 0.125,
    }


def test_threshold_does_not_apply() -> None:
    """`threshold` is a binary/multilabel option: rejected with its field."""
    with pytest.raises(InvalidInputError) as excinfo:
        predict(make_task(), np.array([[0.25, 0.25, 0.25, 0.25]]), Options(threshold=0.5))
    assert excinfo.value.field == "options.threshold"


def test_describe_measures_accuracy_and_log_loss() -> None:
    """Validation metrics by hand: 2 of 3 right; log-loss -mean(log P(true class))."""
    X = np.array([[0.5, 0.25, 0.125, 0.125], [0.125, 0.125, 0.25, 0.5], [0.25, 0.5, 0.125, 0.125]])
    y = ["cat", "fox", "eel"]
    description = MulticlassTask.describe({"model": fixed_proba(CLASSES)}, X, y, {})
    assert description.classes == CLASSES
    assert description.decision.to_metadata() == {}
    assert description.metrics["accuracy"] == pytest.approx(2 / 3)
    assert description.metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.5, 0.5, 0.125])))
    assert description.prediction_distribution == pytest.approx({"cat": 1 / 3, "dog": 1 / 3, "eel": 0.0, "fox": 1 / 3})


def test_describe_log_loss_with_classes_not_in_string_order() -> None:
    """Integer classes [2, 10] are columns [2, 10]; their names "2", "10" do not sort that way as strings.

    log-loss must still pair each column with its own class: -mean(log [0.875, 0.75]).
    """
    X = np.array([[0.875, 0.125], [0.25, 0.75]])
    description = MulticlassTask.describe({"model": fixed_proba([2, 10])}, X, [2, 10], {})
    assert description.classes == ["2", "10"]
    assert description.metrics["accuracy"] == 1.0
    assert description.metrics["log_loss"] == pytest.approx(-np.mean(np.log([0.875, 0.75])))
