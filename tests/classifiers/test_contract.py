"""The task seam, checked for every registered task kind (a new kind is covered by adding one builder below)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pytest

from service.classifiers import (
    ROOT,
    GivenLabel,
    InvalidInputError,
    InvalidModelError,
    NonFiniteScoreError,
    Options,
    Prediction,
    Task,
    base,
    get_task,
    register_task,
    registered_tasks,
)

from .fakes import card_of, features, fixed_proba, multi_output, predict

OPTION_VALUES: dict[str, Any] = {"top_k": 2, "threshold": 0.5, "min_confidence": 0.3, "return_probabilities": True}


@dataclass(frozen=True)
class Case:
    """A ready task, request rows for it, and the CONTRACT.md record fields of its kind."""

    task: Task
    rows: list[Any]
    fields: frozenset[str]  # always in a record
    when_asked: dict[str, str] = field(default_factory=dict)  # option -> the field it adds


def binary_case() -> Case:
    task = get_task("binary")(
        estimators={"model": fixed_proba(["no", "yes"])},
        card=card_of(
            {
                "classes": ["no", "yes"],
                "features": features(2),
                "decision": {"positive_class": "yes", "threshold": 0.5},
            }
        ),
    )
    rows = [[0.25, 0.75], [0.5, 0.5], {"f1": 0.125, "f0": 0.875}]
    return Case(task, rows, frozenset({"label", "score", "threshold"}), {"return_probabilities": "probabilities"})


def multiclass_case() -> Case:
    classes = ["a", "b", "c"]
    task = get_task("multiclass")(
        estimators={"model": fixed_proba(classes)}, card=card_of({"classes": classes, "features": features(3)})
    )
    rows = [[0.5, 0.25, 0.25], [0.125, 0.25, 0.625], [0.25, 0.5, 0.25], [0.375, 0.375, 0.25]]
    return Case(
        task,
        rows,
        frozenset({"label", "confidence", "abstained"}),
        {"top_k": "top_k", "return_probabilities": "probabilities"},
    )


def multilabel_case() -> Case:
    labels = ["p", "q", "r"]
    task = get_task("multilabel")(
        estimators={"model": multi_output(3)},
        card=card_of(
            {
                "classes": labels,
                "features": features(3),
                "decision": {"layout": "joint", "thresholds": [0.5, 0.25, 0.75]},
            }
        ),
    )
    rows = [[0.5, 0.25, 0.75], [0.125, 0.125, 0.125], [0.875, 0.0, 0.5]]
    return Case(task, rows, frozenset({"labels", "scores"}), {"return_probabilities": "probabilities"})


def hierarchical_case() -> Case:
    hierarchy = {ROOT: ["x", "y"], "x": ["x1", "x2"], "y": ["y1"]}
    task = get_task("hierarchical")(
        estimators={ROOT: fixed_proba(["x", "y"], 0), "x": fixed_proba(["x1", "x2"], 2)},
        card=card_of({"classes": ["x1", "x2", "y1"], "features": features(4), "decision": {"hierarchy": hierarchy}}),
    )
    rows = [[0.75, 0.25, 0.25, 0.75], [0.25, 0.75, 0.5, 0.5], [0.5, 0.5, 0.625, 0.375]]
    return Case(
        task,
        rows,
        frozenset({"label", "path", "complete"}),
        {"top_k": "top_k", "return_probabilities": "probabilities"},
    )


BUILDERS: dict[str, Callable[[], Case]] = {
    "binary": binary_case,
    "multiclass": multiclass_case,
    "multilabel": multilabel_case,
    "hierarchical": hierarchical_case,
}
TASKS = sorted(registered_tasks())


def build(name: str) -> Case:
    if name not in BUILDERS:
        pytest.fail(f"task kind '{name}' is registered but tests/classifiers/test_contract.py has no builder for it")
    return BUILDERS[name]()


def option_sets(task: Task) -> list[Options]:
    """No options, then each option the task takes on its own."""
    return [Options(), *(Options(**{name: OPTION_VALUES[name]}) for name in sorted(task.options))]


def test_registry_holds_the_catalog_kinds() -> None:
    """The four kinds of CONTRACT.md are registered (and builders exist for exactly the registered ones)."""
    assert {"binary", "multiclass", "multilabel", "hierarchical"} <= set(TASKS)


@pytest.mark.parametrize("name", TASKS)
def test_task_class_declares_name_and_options(name: str) -> None:
    """Registered under its own `name`; `options` a non-empty subset of OPTION_NAMES, return_probabilities included."""
    cls = registered_tasks()[name]
    assert cls.name == name
    assert get_task(name) is cls
    assert isinstance(cls.options, frozenset)
    assert cls.options
    assert cls.options <= set(base.OPTION_NAMES)
    assert "return_probabilities" in cls.options  # CONTRACT.md: every prediction can carry probabilities


def test_task_names_are_unique() -> None:
    """No two registered classes share a name."""
    names = [cls.name for cls in registered_tasks().values()]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", TASKS)
def test_predict_returns_one_contract_record_per_row(name: str) -> None:
    """For each option the task takes: len == rows, one JSON-ready record per row with the task's fields."""
    case = build(name)
    X = case.task.validate(case.rows)
    for options in option_sets(case.task):
        prediction = predict(case.task, X, options)
        assert isinstance(prediction, Prediction)
        assert len(prediction) == len(case.rows)
        records = list(prediction.records())
        assert len(records) == len(case.rows), options
        asked = {case.when_asked[o] for o in options.given() if o in case.when_asked}
        for record in records:
            assert isinstance(record, dict)
            assert set(record) == case.fields | asked, options
            assert orjson.loads(orjson.dumps(record)) == record, options


@pytest.mark.parametrize("name", TASKS)
def test_decided_labels_and_confidence_are_consistent(name: str) -> None:
    """Same length; confidences are probabilities; every decided label is one a record shows, every labelled row counts.

    (Written to hold whether multilabel reports one entry per row or one per decided label.)
    """
    case = build(name)
    X = case.task.validate(case.rows)
    for options in option_sets(case.task):
        prediction = predict(case.task, X, options)
        labels = prediction.decided_labels
        confidence = np.asarray(prediction.confidence, dtype=np.float64)
        assert confidence.ndim == 1
        assert len(labels) == len(confidence), options
        assert np.all((confidence >= 0.0) & (confidence <= 1.0)), options
        per_row = [record.get("labels", [record.get("label")]) for record in prediction.records()]
        shown = Counter(label for row in per_row for label in row if label is not None)
        decided = Counter(label for label in labels if label is not None)
        assert decided <= shown, options
        assert decided.total() >= sum(any(label is not None for label in row) for row in per_row), options


@pytest.mark.parametrize("name", TASKS)
def test_options_the_task_does_not_take_are_rejected(name: str) -> None:
    """Every option outside `options` raises InvalidInputError with field `options.<name>`."""
    case = build(name)
    X = case.task.validate(case.rows)
    for option in sorted(set(base.OPTION_NAMES) - case.task.options):
        with pytest.raises(InvalidInputError) as excinfo:
            predict(case.task, X, Options(**{option: OPTION_VALUES[option]}))
        assert excinfo.value.field == f"options.{option}"


@pytest.mark.parametrize("name", TASKS)
def test_validate_rejects_a_short_row(name: str) -> None:
    """Every task validates rows through its feature schema: a row missing a value is an input error naming it."""
    case = build(name)
    rows = [case.rows[0], [0.5]]
    with pytest.raises(InvalidInputError) as excinfo:
        case.task.validate(rows)
    assert excinfo.value.field == "instances[1]"


@pytest.mark.parametrize("name", TASKS)
def test_rows_with_a_non_finite_score_are_found(name: str) -> None:
    """`non_finite_rows` finds every row whose scores hold a NaN (a model's arithmetic overflowed), and only those,
    in the task's own score structure; `check_finite` names the first (a request's 400)."""
    case = build(name)
    X = np.array(case.task.validate(case.rows), dtype=np.float64)
    scores = case.task.score(X)
    assert case.task.non_finite_rows(scores).tolist() == []
    case.task.check_finite(scores)
    X[1:, 0] = np.nan  # the fakes' probabilities are read from X: rows 1.. get a NaN probability
    scores = case.task.score(X)
    assert case.task.non_finite_rows(scores).tolist() == list(range(1, len(X)))
    with pytest.raises(NonFiniteScoreError) as excinfo:
        case.task.check_finite(case.task.slice_scores(scores, 1, len(X)))
    assert excinfo.value.row == 0  # rows count from the start of the scores given: one request's


def test_register_task_raises_on_a_duplicate_name() -> None:
    """Registering a second class as `binary` fails and leaves the first in place."""
    original = get_task("binary")

    class Impostor(original):  # type: ignore[misc, valid-type]
        name = "binary"

    with pytest.raises(InvalidModelError, match="binary"):
        register_task(Impostor)
    assert get_task("binary") is original


def test_register_task_adds_a_new_kind(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new name becomes available through get_task and registered_tasks (on a copy of the registry)."""
    monkeypatch.setattr(base, "_TASKS", dict(base._TASKS))
    original = get_task("multiclass")

    class Ranked(original):  # type: ignore[misc, valid-type]
        name = "contract-test-ranked"

    assert register_task(Ranked) is Ranked
    assert get_task("contract-test-ranked") is Ranked
    assert "contract-test-ranked" in registered_tasks()


def test_get_task_rejects_an_unknown_name() -> None:
    """An unknown task kind is a model error that lists the known ones."""
    with pytest.raises(InvalidModelError, match="multiclass"):
        get_task("regression")


@pytest.mark.parametrize("name", TASKS)
def test_the_models_own_decision_is_a_label_it_could_be_given(name: str) -> None:
    """`decision_keys` is the decision at the model's defaults, whatever options a request sent; each key is a
    valid label of the model (its rendered form reads back as the same key); `row_confidence` is one probability
    per row and no option moves it."""
    case = build(name)
    X = case.task.validate(case.rows)
    scores = case.task.score(X)
    keys = case.task.decision_keys(scores).tolist()
    confidence = case.task.row_confidence(scores)
    assert len(keys) == len(case.rows) == len(confidence)
    assert np.all((confidence >= 0.0) & (confidence <= 1.0))
    default = list(case.task.decide(scores, Options()).records())
    truth = case.task.truth
    for key, record in zip(keys, default, strict=True):
        assert key is not None
        assert truth.key(GivenLabel(**truth.render(key))) == key
        assert tuple(truth.render(key)) == case.task.label_fields  # the export's label columns
        decided = set(record["labels"]) if "labels" in record else {record["label"]}
        assert truth.members(key) == decided & set(truth.classes)
    assert truth.realized([(key, key, 1) for key in keys]).accuracy == 1.0
    halves = case.task.join_scores([case.task.slice_scores(scores, 0, 1), case.task.slice_scores(scores, 1, len(keys))])
    assert case.task.decision_keys(halves).tolist() == keys  # the log computes them for many requests at once
    np.testing.assert_array_equal(case.task.row_confidence(halves), confidence)
