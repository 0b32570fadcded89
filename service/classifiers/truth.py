"""Ground truth: what feedback may say a prediction should have been, and what labelled predictions measure.

A label arrives in the task's own form (`label`, `labels` or `path`) and is kept as a canonical *key*, a string
that equals the key of the model's decision exactly when the decision was right (multilabel: the same set;
hierarchical: the same leaf). The log keeps, per labelled prediction, the key of the model's own default decision
and the key of its label; the database counts (decision, label) pairs, and `Truth.realized` turns the counts into
accuracy, F1 and per-class figures without seeing a row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from .errors import InvalidInputError

# (key of the model's decision, key of the label, how many labelled predictions have that pair)
Pair = tuple[str | None, str, int]


@dataclass(frozen=True)
class DecisionKeys:
    """The `Truth` key of the model's own decision for each row of a batch: the keys, and each row's index into
    them (arrays, so that a batch of requests is encoded without a Python loop over its rows)."""

    keys: list[str | None]
    codes: np.ndarray  # int per row

    def __len__(self) -> int:
        return len(self.codes)

    def rows(self, start: int, stop: int) -> DecisionKeys:
        return DecisionKeys(self.keys, self.codes[start:stop])

    def tolist(self) -> list[str | None]:
        return [self.keys[code] for code in self.codes.tolist()]

    @classmethod
    def join(cls, parts: Sequence[DecisionKeys]) -> DecisionKeys:
        """The keys of several batches as one, in order: a loop over each batch's keys, not its rows, and none
        where the batches share their keys (every task but multilabel, whose keys are the sets a batch decided)."""
        first = parts[0]
        if all(part.keys is first.keys or part.keys == first.keys for part in parts):
            return cls(first.keys, np.concatenate([part.codes for part in parts]))
        index: dict[str | None, int] = {}
        codes = []
        for part in parts:
            as_joined = np.array([index.setdefault(key, len(index)) for key in part.keys], dtype=np.intp)
            codes.append(as_joined[part.codes])
        return cls(list(index), np.concatenate(codes))


@dataclass(frozen=True)
class GivenLabel:
    """The ground-truth fields of one feedback item, as sent (None: not sent)."""

    label: str | None = None
    labels: Sequence[str] | None = None
    path: Sequence[str] | None = None

    def sent(self) -> list[str]:
        """Names of the fields the item carries."""
        return [name for name in ("label", "labels", "path") if getattr(self, name) is not None]


@dataclass(frozen=True)
class ClassFigures:
    """One class over a set of labelled predictions (multilabel: one label)."""

    name: str
    support: int  # labelled predictions whose label holds the class
    predicted: int  # decisions that hold it
    correct: int  # both

    @property
    def precision(self) -> float:
        return self.correct / self.predicted if self.predicted else float("nan")

    @property
    def recall(self) -> float:
        return self.correct / self.support if self.support else float("nan")

    @property
    def f1(self) -> float:
        total = self.support + self.predicted
        return 2 * self.correct / total if total else float("nan")


@dataclass(frozen=True)
class Realized:
    """What a set of labelled predictions measures. NaN where nothing is labelled."""

    labelled: int
    accuracy: float
    f1: dict[str, float]  # by average: `binary`; or `macro` and `micro`
    classes: list[ClassFigures]
    level_accuracy: list[float] = field(default_factory=list)  # hierarchical: per level, top first


class Truth(ABC):
    """The ground truth of one model: checks labels against its classes and measures decisions against labels.

    Subclasses (one per task kind, beside the task) say which fields a label takes and what a key holds.
    """

    def __init__(self, classes: Sequence[str]) -> None:
        self.classes = [str(c) for c in classes]
        self._known = set(self.classes)

    @abstractmethod
    def key(self, given: GivenLabel) -> str:
        """The canonical key of a label; raises `InvalidInputError` whose `field` is relative to the item."""

    @abstractmethod
    def render(self, key: str) -> dict[str, Any]:
        """A label key in the form feedback sends it (`{"label": ...}`, `{"labels": [...]}`, ...)."""

    @abstractmethod
    def members(self, key: str | None) -> frozenset[str]:
        """The classes a decision or label key holds (none for an abstention)."""

    @staticmethod
    def right(decided: str | None, truth: str) -> bool:
        """Whether a decision (its key; None: an abstention) was right by its label's key."""
        return decided == truth

    def realized(self, pairs: Iterable[Pair]) -> Realized:
        """Accuracy (same key), per-class counts, and macro and micro F1 over the classes seen."""
        pairs = list(pairs)
        labelled = sum(count for _, _, count in pairs)
        right = sum(count for decided, truth, count in pairs if self.right(decided, truth))
        support = dict.fromkeys(self.classes, 0)
        predicted = dict.fromkeys(self.classes, 0)
        correct = dict.fromkeys(self.classes, 0)
        for decided, truth, count in pairs:
            decided_members, truth_members = self.members(decided), self.members(truth)
            for name in truth_members:
                support[name] += count
            for name in decided_members:
                predicted[name] += count
            for name in decided_members & truth_members:
                correct[name] += count
        classes = [
            ClassFigures(name, support[name], predicted[name], correct[name])
            for name in self.classes
            if support[name] or predicted[name]
        ]
        return Realized(
            labelled=labelled,
            accuracy=right / labelled if labelled else float("nan"),
            f1=self.f1(classes),
            classes=classes,
        )

    def f1(self, classes: Sequence[ClassFigures]) -> dict[str, float]:
        """Macro F1 (mean over the classes seen, scikit-learn's default) and micro F1 (pooled counts)."""
        if not classes:
            return {"macro": float("nan"), "micro": float("nan")}
        pooled = sum(c.support + c.predicted for c in classes)
        return {
            "macro": sum(c.f1 for c in classes) / len(classes),
            "micro": 2 * sum(c.correct for c in classes) / pooled if pooled else float("nan"),
        }

    def one_of_the_classes(self, value: str, where: str) -> str:
        if value not in self._known:
            listed = ", ".join(self.classes[:20]) + (", ..." if len(self.classes) > 20 else "")
            raise InvalidInputError(f"'{value}' is not a class of this model; its classes: {listed}", field=where)
        return value

    def only(self, given: GivenLabel, allowed: str, task: str) -> None:
        """Refuse the ground-truth fields other than `allowed`, and require it."""
        for name in given.sent():
            if name != allowed:
                raise InvalidInputError(
                    f"field '{name}' does not fit a {task} model; its ground truth is '{allowed}'", field=name
                )
        if getattr(given, allowed) is None:
            raise InvalidInputError(f"a {task} model's ground truth is '{allowed}'", field=allowed)


class SingleLabelTruth(Truth):
    """One class per row (binary, multiclass): a key is the class name."""

    task: ClassVar[str]

    def key(self, given: GivenLabel) -> str:
        self.only(given, "label", self.task)
        assert given.label is not None
        return self.one_of_the_classes(given.label, "label")

    def render(self, key: str) -> dict[str, Any]:
        return {"label": key}

    def members(self, key: str | None) -> frozenset[str]:
        return frozenset() if key is None else frozenset((key,))
