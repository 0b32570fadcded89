"""Every registered task kind provides what the rest of the service asks of it, and a kind that misses a piece is named.

A new task kind touches its own module and its registration line; the service asks the registered task for the rest
(the OpenAPI document its answer type, the export its label columns, the model card its decision sentence). This
test walks `registered_tasks()` and names whatever a kind leaves out, instead of a KeyError somewhere later.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from typing import Any, TypedDict, is_typeddict

import pytest

from service.app import DOCUMENT
from service.card import Decision
from service.classifiers import GivenLabel, Options, Task, base, register_task, registered_tasks
from service.classifiers.multiclass import MulticlassTask
from service.openapi.responses import prediction_model

ATTRIBUTES = ("name", "options", "answer", "label_fields", "one_label_per_row")  # the facts `Task` declares
LABEL_FIELDS = {f.name for f in fields(GivenLabel)}  # a label's fields in `/feedback`'s form
DECISION = Decision(positive_class="b", threshold=0.5, thresholds=(0.5, 0.5), objective="f1")  # of two classes


def missing(cls: type[Task], document: Mapping[str, Any]) -> list[str]:
    """What `cls` leaves out of what every task kind provides, one line each; empty when nothing."""
    problems = [f"class attribute `{name}` (see `Task`)" for name in ATTRIBUTES if not hasattr(cls, name)]
    abstract = sorted(getattr(cls, "__abstractmethods__", ()))
    if abstract:
        problems.append(f"methods {', '.join(f'`{m}`' for m in abstract)} (abstract in `Task`)")
    answer = getattr(cls, "answer", None)
    if answer is not None and not is_typeddict(answer):
        problems.append("`answer` is not a TypedDict (the type of `records()`'s rows)")
    label_fields = getattr(cls, "label_fields", None)
    if label_fields is not None and not (label_fields and set(label_fields) <= LABEL_FIELDS):
        problems.append(f"`label_fields` {label_fields!r}: not a non-empty tuple of {sorted(LABEL_FIELDS)}")
    if is_typeddict(answer):
        problems += _missing_from_document(cls, document)
    return [f"task '{getattr(cls, 'name', cls.__qualname__)}' misses {problem}" for problem in problems]


def _missing_from_document(cls: type[Task], document: Mapping[str, Any]) -> list[str]:
    schemas = document["components"]["schemas"]
    problems = []
    schema = prediction_model(cls).__name__
    ref = f"#/components/schemas/{schema}"
    listed = [one["$ref"] for one in schemas["PredictResponse"]["properties"]["predictions"]["items"]["anyOf"]]
    if schema not in schemas or ref not in listed:
        problems.append(f"its answer schema `{schema}` in the OpenAPI document's `PredictResponse.predictions`")
    for owner, enum in _task_enums(schemas):
        if cls.name not in enum:
            problems.append(f"its name in the OpenAPI document's `{owner}.task` enum")
    return problems


def _task_enums(schemas: Mapping[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """Every `task` property's enum in the document, by schema."""
    for owner, schema in schemas.items():
        task = schema.get("properties", {}).get("task")
        if task is not None:
            for one in [task, *task.get("anyOf", ())]:
                if "enum" in one:
                    yield owner, one["enum"]


def test_the_document_lists_task_names_where_a_task_is_named() -> None:
    """The checker above reads enums from the schemas that name a task; there are some (or it checks nothing)."""
    assert {owner for owner, _ in _task_enums(DOCUMENT["components"]["schemas"])} >= {"PredictResponse", "ModelCard"}


@pytest.mark.parametrize("name", sorted(registered_tasks()))
def test_every_registered_task_provides_everything_a_task_must(name: str) -> None:
    cls = registered_tasks()[name]
    assert missing(cls, DOCUMENT) == []
    assert cls.decision_summary(DECISION, ["a", "b"]).startswith("Decision: ")  # the training card's sentence


class RankingAnswer(TypedDict):
    label: str


class _Ranking(Task):
    """A new task kind with every method and attribute but its export label columns (`label_fields`)."""

    name = "test-ranking"
    options = frozenset({"return_probabilities"})
    answer = RankingAnswer
    one_label_per_row = True

    def score(self, X: Any) -> Any:
        raise NotImplementedError

    def decide(self, scores: Any, options: Options) -> Any:
        raise NotImplementedError

    def decision_keys(self, scores: Any) -> Any:
        raise NotImplementedError

    def row_confidence(self, scores: Any) -> Any:
        raise NotImplementedError

    @classmethod
    def describe(cls, estimators: Mapping[str, Any], X_val: Any, y_val: Any, params: Mapping[str, Any]) -> Any:
        raise NotImplementedError

    @classmethod
    def label_distribution(cls, y: Any, classes: Sequence[str]) -> dict[str, float]:
        raise NotImplementedError

    @classmethod
    def ground_truth(cls, classes: Sequence[str], decision: Decision) -> Any:
        raise NotImplementedError

    @classmethod
    def decision_summary(cls, decision: Decision, classes: Sequence[str]) -> str:
        return "Decision: the best-ranked class"


@pytest.fixture
def fresh_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Register fakes on a copy of the registry."""
    monkeypatch.setattr(base, "_TASKS", dict(base._TASKS))


@pytest.mark.usefixtures("fresh_registry")
def test_a_task_without_its_label_fields_is_named_with_what_it_misses() -> None:
    register_task(_Ranking)
    problems = [p for cls in registered_tasks().values() for p in missing(cls, DOCUMENT)]
    assert "task 'test-ranking' misses class attribute `label_fields` (see `Task`)" in problems
    assert all(p.startswith("task 'test-ranking' ") for p in problems)  # the four real kinds miss nothing


@pytest.mark.usefixtures("fresh_registry")
def test_a_task_the_document_does_not_describe_is_named() -> None:
    """A kind complete in itself, registered after the document was built, is missing from it: its answer schema
    and its name where the document lists the task kinds."""

    @register_task
    class Ranked(MulticlassTask):
        name = "test-ranked"

    problems = missing(Ranked, DOCUMENT)
    assert problems[0] == (
        "task 'test-ranked' misses its answer schema `Test-rankedPrediction` in the OpenAPI document's "
        "`PredictResponse.predictions`"
    )
    assert "task 'test-ranked' misses its name in the OpenAPI document's `PredictResponse.task` enum" in problems


def test_the_methods_a_task_leaves_abstract_are_named() -> None:
    class Bare(Task):
        name = "test-bare"

    (methods,) = [problem for problem in missing(Bare, DOCUMENT) if "abstract" in problem]
    assert "`decision_summary`" in methods and "`score`" in methods
