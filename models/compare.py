"""`python -m models compare NAME:A NAME:B`: two versions scored on the same recent labelled predictions.

Each version's own default decision is held against the latest labels (the realized figures' definitions:
`service.classifiers.truth`), beside its validation figures, with how often the two agree and where they
disagree; business outcomes are the take-rates the log holds for versions that served. Exit code 0 when B beats
A's accuracy by `--margin` or more, 1 when it does not, 2 when they cannot be compared: a pipeline step.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from service.classifiers import GivenLabel
from service.feedback.realized_store import RealizedStore
from service.settings import Settings
from service.store import LoadedModel

from .dataset import DataError
from .logdata import LabelledLog, labelled_log, open_log, since_time

MAX_DISAGREEMENTS = 10


@dataclass(frozen=True)
class VersionResult:
    version: str
    accuracy: float
    macro_f1: float
    recall: dict[str, float]  # per class seen in the labels or the decisions
    validation_accuracy: float
    validation_macro_f1: float
    take_rates: dict[str, float] = field(default_factory=dict)  # outcome -> take-rate, where this version served


@dataclass(frozen=True)
class Comparison:
    model: str
    labelled: int
    since: str | None  # the first prediction time compared on: `--since`, or after what a version trained on
    a: VersionResult
    b: VersionResult
    agreement: float
    disagreements: list[dict[str, Any]]  # the most frequent (A's decision, B's decision) pairs where they differ
    margin: float

    @property
    def b_is_better(self) -> bool:
        return self.b.accuracy - self.a.accuracy >= self.margin

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "b_is_better": self.b_is_better}


def compare(a: LoadedModel, b: LoadedModel, since: str | None, margin: float, settings: Settings) -> Comparison:
    if a.name != b.name:
        raise DataError(f"compare two versions of one model, not '{a.name}' and '{b.name}'")
    features = list(a.card.features.names)
    if list(b.card.features.names) != features or a.task.name != b.task.name:
        raise DataError(f"{a.tag} and {b.tag} take different features or do different tasks: they cannot be compared")
    start = unseen_since(since_time(since), a, b)
    stores = open_log(settings)
    log = labelled_log(stores, a.name, features, start)
    if len(log) == 0:
        raise DataError(f"no labelled predictions of '{a.name}' with logged inputs to compare on")
    truth = a.task.truth
    truth_keys = [truth.key(_given(label)) for label in log.labels]
    decided = {model.version: _decisions(model, log) for model in (a, b)}
    rates = _take_rates(stores.realized, a.name, start)
    results = [_result(model, truth, decided[model.version], truth_keys, rates) for model in (a, b)]
    pairs = list(zip(decided[a.version], decided[b.version], strict=True))
    differing = Counter((x, y) for x, y in pairs if x != y)
    right: Counter[tuple[str | None, ...]] = Counter(
        (x, y, t) for (x, y), t in zip(pairs, truth_keys, strict=True) if x != y and t in (x, y)
    )
    disagreements = [
        {"a": x, "b": y, "rows": n, "a_right": right[(x, y, x)], "b_right": right[(x, y, y)]}
        for (x, y), n in differing.most_common(MAX_DISAGREEMENTS)
    ]
    agreement = sum(x == y for x, y in pairs) / len(pairs)
    since_text = None if start is None else start.isoformat()
    return Comparison(a.name, len(log), since_text, results[0], results[1], agreement, disagreements, margin)


def unseen_since(since: datetime | None, *models: LoadedModel) -> datetime | None:
    """`since`, moved past the labelled predictions a version retrained from the log was trained on: the two are
    compared on predictions neither learned from."""
    cutoffs = [since] if since is not None else []
    for model in models:
        trained_before = model.card.training.trained_on_log_before
        if trained_before:
            cutoffs.append(datetime.fromisoformat(str(trained_before)))
    return max(cutoffs) if cutoffs else None


def _given(label: dict[str, Any]) -> GivenLabel:
    if "labels" in label:
        return GivenLabel(labels=label["labels"])
    return GivenLabel(label=label["label"])


def _decisions(model: LoadedModel, log: LabelledLog) -> list[str | None]:
    rows = log.X.astype(object).where(log.X.notna(), None).to_numpy().tolist()  # a logged null is null again
    return model.task.decision_keys(model.task.score(model.task.validate(rows))).tolist()


Rates = dict[tuple[str, str], float]  # (version, outcome) -> take-rate


def _result(model: LoadedModel, truth: Any, decided: list[str | None], keys: list[str], rates: Rates) -> VersionResult:
    realized = truth.realized([(d, t, n) for (d, t), n in Counter(zip(decided, keys, strict=True)).items()])
    validation = model.card.validation
    return VersionResult(
        version=model.version,
        accuracy=realized.accuracy,
        macro_f1=realized.f1.get("macro", realized.f1.get("binary", math.nan)),
        recall={c.name: c.recall for c in realized.classes},
        validation_accuracy=validation.accuracy,
        validation_macro_f1=validation.macro_f1,
        take_rates={outcome: rate for (version, outcome), rate in rates.items() if version == model.version},
    )


def _take_rates(store: RealizedStore, model: str, since: datetime | None) -> Rates:
    """(version, outcome) -> outcomes per logged prediction, over the versions that served since `since`."""
    start, until = since or datetime.min.replace(tzinfo=UTC), datetime.now(UTC)
    logged = store.logged_predictions(start, until, model)
    return {
        (t.version, t.name): t.count / logged[(t.model, t.version)]
        for t in store.outcome_totals(start, until, model)
        if logged.get((t.model, t.version))
    }


def table(comparison: Comparison) -> str:
    a, b = comparison.a, comparison.b
    lines = [
        f"{comparison.model}: {a.version} (A) against {b.version} (B) on {comparison.labelled} labelled predictions"
        + (f" made since {comparison.since}" if comparison.since else ""),
        "",
        f"{'':<28} {'A':>10} {'B':>10}",
        f"{'accuracy':<28} {a.accuracy:>10.3f} {b.accuracy:>10.3f}",
        f"{'macro-F1':<28} {a.macro_f1:>10.3f} {b.macro_f1:>10.3f}",
        f"{'validation accuracy':<28} {a.validation_accuracy:>10.3f} {b.validation_accuracy:>10.3f}",
        f"{'validation macro-F1':<28} {a.validation_macro_f1:>10.3f} {b.validation_macro_f1:>10.3f}",
    ]
    for name in sorted(set(a.recall) | set(b.recall)):
        recall = [v.recall.get(name, math.nan) for v in (a, b)]
        lines.append(f"{'recall ' + name:<28.28} {recall[0]:>10.3f} {recall[1]:>10.3f}")
    for outcome in sorted(set(a.take_rates) | set(b.take_rates)):
        row = [v.take_rates.get(outcome) for v in (a, b)]
        cells = [f"{r:>10.3f}" if r is not None else f"{'not served':>10}" for r in row]
        lines.append(f"{'take-rate ' + outcome:<28.28} {cells[0]} {cells[1]}")
    lines += ["", f"They agree on {comparison.agreement:.1%} of the rows."]
    if comparison.disagreements:
        lines.append("Where they disagree (most frequent first): A's decision -> B's, rows, right by A, right by B")
        lines += [
            f"  {d['a']} -> {d['b']}: {d['rows']} rows, A right {d['a_right']}, B right {d['b_right']}"
            for d in comparison.disagreements
        ]
    verdict = "is" if comparison.b_is_better else "is not"
    gain = b.accuracy - a.accuracy
    lines += ["", f"B {verdict} better by the margin: accuracy {gain:+.3f} (margin {comparison.margin:.3f})"]
    return "\n".join(lines) + "\n"


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and not np.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    return value


def as_json(comparison: Comparison) -> dict[str, Any]:
    """The comparison for machines: NaN (nothing to measure) as null."""
    return dict(_nan_to_none(comparison.to_json()))
