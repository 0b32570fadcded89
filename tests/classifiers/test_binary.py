"""BinaryTask: the threshold decision, its per-request override, and the threshold tuned by `describe`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from service.classifiers import InvalidInputError, InvalidModelError, Options, get_task
from service.classifiers.binary import BinaryTask
from service.classifiers.evaluation import Objective

from .fakes import binary_rows, card_of, features, fixed_proba, predict

CLASSES = ["benign", "malignant"]


def make_task(classes: list[str] = CLASSES, positive: str = "malignant", threshold: float = 0.375) -> BinaryTask:
    """A binary task over a `FixedProba` whose columns follow `classes`."""
    task = get_task("binary")(
        estimators={"model": fixed_proba(classes)},
        card=card_of(
            {
                "classes": classes,
                "features": features(2),
                "decision": {"positive_class": positive, "threshold": threshold},
            }
        ),
    )
    assert isinstance(task, BinaryTask)
    return task


def records(task: BinaryTask, X: np.ndarray, options: Options | None = None) -> list[dict[str, Any]]:
    return list(predict(task, X, options or Options()).records())


def test_probability_equal_to_threshold_is_positive_and_just_below_is_negative() -> None:
    """p == threshold decides the positive class; the next float below it decides the other class."""
    task = make_task(threshold=0.375)
    below = float(np.nextafter(0.375, 0.0))
    out = records(task, binary_rows([0.375, below, 0.5, 0.25]))
    assert [r["label"] for r in out] == ["malignant", "benign", "malignant", "benign"]
    assert [r["score"] for r in out] == [0.375, below, 0.5, 0.25]
    assert all(r["threshold"] == 0.375 for r in out)


def test_request_threshold_overrides_the_tuned_one() -> None:
    """`options.threshold` replaces the model's threshold and is echoed as the one applied."""
    task = make_task(threshold=0.375)
    X = binary_rows([0.375, 0.5, 0.625])
    out = records(task, X, Options(threshold=0.5))
    assert [r["label"] for r in out] == ["benign", "malignant", "malignant"]
    assert {r["threshold"] for r in out} == {0.5}
    low = records(task, X, Options(threshold=0.25))
    assert [r["label"] for r in low] == ["malignant"] * 3
    # the override is per request: the next request without it uses the tuned threshold again
    assert [r["threshold"] for r in records(task, X)] == [0.375] * 3


def test_threshold_zero_and_one_are_the_extremes() -> None:
    """Threshold 0 makes every row positive; threshold 1 only rows with P(positive) == 1."""
    task = make_task()
    X = binary_rows([0.0, 0.5, 1.0])
    assert [r["label"] for r in records(task, X, Options(threshold=0.0))] == ["malignant"] * 3
    assert [r["label"] for r in records(task, X, Options(threshold=1.0))] == ["benign", "benign", "malignant"]


def test_score_is_p_positive_when_the_positive_class_is_column_zero() -> None:
    """With `classes_ == [malignant, benign]` and positive `malignant`, score is column 0, not column 1."""
    task = make_task(classes=["malignant", "benign"], positive="malignant", threshold=0.5)
    X = binary_rows([0.75, 0.25, 0.5], positive_column=0)
    out = records(task, X)
    assert [r["score"] for r in out] == [0.75, 0.25, 0.5]
    assert [r["label"] for r in out] == ["malignant", "benign", "malignant"]


def test_positive_class_may_be_either_name() -> None:
    """Choosing `benign` as positive flips which column is scored and which label a high score gets."""
    task = make_task(positive="benign", threshold=0.5)
    out = records(task, binary_rows([0.25, 0.75]))  # column 1 is malignant, so P(benign) is 0.75, 0.25
    assert [r["score"] for r in out] == [0.75, 0.25]
    assert [r["label"] for r in out] == ["benign", "malignant"]


def test_return_probabilities_adds_the_full_vector_only_when_asked() -> None:
    """`probabilities` maps every class to its own predict_proba value, unchanged."""
    task = make_task()
    X = binary_rows([0.375, 0.875])
    plain = records(task, X)
    assert all("probabilities" not in r for r in plain)
    full = records(task, X, Options(return_probabilities=True))
    assert [r["probabilities"] for r in full] == [
        {"benign": 0.625, "malignant": 0.375},
        {"benign": 0.125, "malignant": 0.875},
    ]
    assert set(full[0]) == {"label", "score", "threshold", "probabilities"}


def test_confidence_is_the_probability_of_the_decided_class() -> None:
    """`confidence` is p for a positive decision and 1 - p for a negative one, under the applied threshold."""
    task = make_task(threshold=0.375)
    X = binary_rows([0.375, 0.25, 0.875, 0.5])
    prediction = predict(task, X, Options())
    np.testing.assert_array_equal(prediction.confidence, [0.375, 0.75, 0.875, 0.5])
    assert prediction.decided_labels == ["malignant", "benign", "malignant", "malignant"]
    overridden = predict(task, X, Options(threshold=0.75))
    np.testing.assert_array_equal(overridden.confidence, [0.625, 0.75, 0.875, 0.5])
    assert overridden.decided_labels == ["benign", "benign", "malignant", "benign"]
    assert len(overridden) == 4


# Hand-made validation set. Thresholds are the scores; positive iff p >= t:
#   t=0.1 : 6 predicted, TP 3 -> P 1/2, R 1   -> F1 0.667
#   t=0.3 : 5 predicted, TP 3 -> P 3/5, R 1   -> F1 0.750
#   t=0.35: 4 predicted, TP 3 -> P 3/4, R 1   -> F1 0.857  <- best
#   t=0.6 : 3 predicted, TP 2 -> P 2/3, R 2/3 -> F1 0.667
#   t=0.7 : 2 predicted, TP 2 -> P 1,   R 2/3 -> F1 0.800
#   t=0.9 : 1 predicted, TP 1 -> P 1,   R 1/3 -> F1 0.500
VAL_P = [0.1, 0.3, 0.35, 0.6, 0.7, 0.9]
VAL_Y = ["benign", "benign", "malignant", "benign", "malignant", "malignant"]


@pytest.mark.parametrize(
    "objective, threshold",
    [
        ("recall-at-precision=0.9", 0.65),  # precision 1 at 0.7 (recall 2/3) and 0.9 (1/3): the better recall
        ("precision-at-recall=0.9", 0.325),  # recall 1 at 0.35, 0.3 and 0.1: the best precision is at 0.35
        ("precision-at-recall=0.5", 0.65),  # recall >= 0.5 from 0.7 down: precision 1 at 0.7
    ],
)
def test_describe_tunes_the_threshold_for_the_objective_given(objective: str, threshold: float) -> None:
    params = {"positive_class": "malignant", "optimize": objective}
    description = BinaryTask.describe({"model": fixed_proba(CLASSES)}, binary_rows(VAL_P), VAL_Y, params)
    assert description.decision.to_metadata()["threshold"] == pytest.approx(threshold)
    assert description.decision.to_metadata()["objective"] == objective


@pytest.mark.parametrize("text", ["accuracy", "f1=0.5", "precision-at-recall", "recall-at-precision=1.5", "x=y"])
def test_an_unknown_objective_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="objective"):
        Objective.parse(text)


def test_describe_tunes_the_threshold_that_maximises_f1() -> None:
    """The tuned cut is at 0.35 (F1 6/7), neither 0.5 nor the highest-precision cut; the threshold sits midway to
    the next lower score, 0.3, so that no validation row lies on it."""
    description = BinaryTask.describe(
        {"model": fixed_proba(CLASSES)}, binary_rows(VAL_P), VAL_Y, {"positive_class": "malignant"}
    )
    assert description.decision.to_metadata() == {
        "positive_class": "malignant",
        "threshold": pytest.approx(0.325),
        "objective": "f1",
    }
    assert description.classes == CLASSES
    assert description.metrics["threshold"] == pytest.approx(0.325)
    # at 0.325 the decisions are B B M M M M: 5 of 6 right
    assert description.metrics["accuracy"] == pytest.approx(5 / 6)
    assert description.prediction_distribution == pytest.approx({"benign": 2 / 6, "malignant": 4 / 6})


@pytest.mark.filterwarnings("ignore:Labels passed were:UserWarning")  # log-loss: see the multiclass test
def test_describe_with_the_positive_class_in_column_zero() -> None:
    """Tuning reads P(positive) from the positive class's column wherever it is."""
    classes = ["malignant", "benign"]
    description = BinaryTask.describe(
        {"model": fixed_proba(classes)},
        binary_rows(VAL_P, positive_column=0),
        VAL_Y,
        {"positive_class": "malignant"},
    )
    assert description.decision.to_metadata() == {
        "positive_class": "malignant",
        "threshold": pytest.approx(0.325),
        "objective": "f1",
    }


def test_describe_defaults_the_positive_class_to_the_second_column() -> None:
    """Without `positive_class`, scikit-learn's convention applies: `classes_[1]` is positive."""
    description = BinaryTask.describe({"model": fixed_proba(CLASSES)}, binary_rows(VAL_P), VAL_Y, {})
    assert description.decision.to_metadata()["positive_class"] == "malignant"


@pytest.mark.parametrize(
    ("options", "field"),
    [
        (Options(top_k=2), "options.top_k"),
        (Options(min_confidence=0.5), "options.min_confidence"),
    ],
)
def test_options_that_do_not_apply_are_rejected(options: Options, field: str) -> None:
    """A binary model takes neither `top_k` nor `min_confidence`: 400-style error naming the option."""
    task = make_task()
    with pytest.raises(InvalidInputError) as excinfo:
        predict(task, binary_rows([0.5]), options)
    assert excinfo.value.field == field
    assert field.split(".")[1] in excinfo.value.message
    assert "threshold" in excinfo.value.message  # says what it takes instead


def test_estimator_classes_must_match_the_metadata() -> None:
    """A stored model whose estimator disagrees with its metadata fails at load."""
    with pytest.raises(InvalidModelError):
        make_task(classes=["benign", "malignant"]).__class__(
            estimators={"model": fixed_proba(["no", "yes"])},
            card=card_of(
                {
                    "classes": CLASSES,
                    "features": features(2),
                    "decision": {"positive_class": "malignant", "threshold": 0.5},
                }
            ),
        )
