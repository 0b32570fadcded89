"""The model card `python -m models train` prints: what a person needs to decide whether to serve the model.

Figures come from the registered model itself (its tuned decision applied to the validation rows), so the card
says what the service will do, not what the estimator alone would. The validation rows are registration's calibration
rows (the thresholds and the confidence calibration are fitted on them): the figures are in sample for those.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.card import CalibrationMap
from service.classifiers import Options
from service.store import load_model

from .training import TrainedModel

FEW_EXAMPLES = 100  # classes with fewer training examples are flagged
BARELY_BEATS = 0.02  # a validation accuracy within this of the majority-class baseline is a warning
_STRATEGIES = {"per-label": "one model per label", "joint": "one model for all labels"}
MAX_CLASS_LINES = 30  # the per-class table lists the classes with most validation rows first
VALIDATION_CAVEAT = (
    "measured on the validation rows, which also tuned the decision: in sample for it, so likely optimistic"
)


@dataclass(frozen=True)
class ClassFigures:
    name: str
    train_share: float
    train_count: int
    precision: float
    recall: float
    support: int
    predicted: int


def card(trained: TrainedModel) -> str:
    model = load_model(trained.tag)
    data, rows = trained.data, trained.split
    X_val = data.X.iloc[rows.validation]
    records = list(model.task.decide(model.task.score(X_val), Options()).records())
    one_label = model.task.one_label_per_row
    truth, decided = _as_sets(one_label, data.y[rows.validation], records, data.labels)
    train_sets, _ = _as_sets(one_label, data.y[rows.train], [], data.labels)
    classes = sorted({str(v) for v in data.y}) if one_label else list(data.labels)
    figures = _figures(classes, train_sets, truth, decided)
    validation = model.card.validation
    columns = data.columns
    lines = [
        f"Model {trained.tag} ({data.task})",
        f"  trained on {len(rows.train)} rows, validated on {len(rows.validation)} ({rows.how})",
        f"  estimator: {trained.options.estimator}"
        + (f", class weight {trained.options.class_weight}" if trained.options.class_weight else "")
        + ("" if one_label else f", {_STRATEGIES[trained.options.multilabel_strategy]}"),
        f"  features: {len(columns.numeric)} numeric, {len(columns.categorical)} categorical, {len(columns.text)} text",
        *_ignored(model.card.features.ignored),
        *[f"  note: {note}" for note in data.notes],
        "",
        f"Validation: accuracy {validation.accuracy:.3f}, macro-F1 {validation.macro_f1:.3f}"
        + (f", majority-class baseline {_majority(truth):.3f}" if one_label else ""),
        f"  {VALIDATION_CAVEAT}",
        _calibrated_on(model.card.calibration),
        "",
        f"{'class':<24} {'train share':>11} {'train rows':>10} {'precision':>9} {'recall':>7} {'val rows':>8}",
    ]
    shown = sorted(figures, key=lambda f: -f.support)[:MAX_CLASS_LINES]
    for f in shown:
        flag = "  < 100 examples" if f.train_count < FEW_EXAMPLES else ""
        lines.append(
            f"{f.name[:24]:<24} {f.train_share:>11.1%} {f.train_count:>10} {f.precision:>9.3f} {f.recall:>7.3f} "
            f"{f.support:>8}{flag}"
        )
    if len(figures) > len(shown):
        lines.append(f"... and {len(figures) - len(shown)} more classes")
    lines += ["", model.task.decision_summary(model.card.decision, classes)]
    watched = model.card.monitored_features or ()
    first = ", ".join(watched[:10])
    lines += ["", f"Monitoring watches {len(watched)} features for drift, most important first: {first}"]
    if columns.text:
        lines.append(f"  text columns ({', '.join(columns.text)}) are watched for missing values only")
    warnings = _warnings(one_label, figures, truth, validation.accuracy)
    lines += ["", "Warnings:" if warnings else "Warnings: none", *[f"  - {w}" for w in warnings]]
    return "\n".join(lines) + "\n"


def _ignored(columns: Sequence[str]) -> list[str]:
    """The line naming the file's columns that rows may hold and the model does not use, if any."""
    return [f"  ignored columns (accepted in rows, not used): {', '.join(columns)}"] if columns else []


def _as_sets(
    one_label: bool, y: Any, records: Sequence[Mapping[str, Any]], labels: list[str]
) -> tuple[list[Any], list[Any]]:
    """Truth and decisions as comparable values: a class per row, or a frozenset of labels (a set per row)."""
    if not one_label:
        truth = [frozenset(label for label, on in zip(labels, row, strict=True) if on) for row in np.asarray(y)]
        return truth, [frozenset(r["labels"]) for r in records]
    return [str(v) for v in y], [r.get("label") for r in records]


def _figures(classes: list[str], train: list[Any], truth: list[Any], decided: list[Any]) -> list[ClassFigures]:
    def has(value: Any, name: str) -> bool:
        return name in value if isinstance(value, frozenset) else value == name

    figures = []
    for name in classes:
        in_train = sum(has(v, name) for v in train)
        actual = np.array([has(v, name) for v in truth], dtype=bool)
        called = np.array([has(v, name) for v in decided], dtype=bool)
        hits = int((actual & called).sum())
        figures.append(
            ClassFigures(
                name=name,
                train_share=in_train / max(len(train), 1),
                train_count=in_train,
                precision=hits / called.sum() if called.any() else 0.0,
                recall=hits / actual.sum() if actual.any() else 0.0,
                support=int(actual.sum()),
                predicted=int(called.sum()),
            )
        )
    return figures


def _calibrated_on(calibration: CalibrationMap | None) -> str:
    """Which rows the confidence calibration (the label-free accuracy estimate) rests on."""
    if calibration is None:
        return "Confidence not calibrated: registered before calibration existed"
    rows, folds = calibration.rows, calibration.folds
    if folds:
        return (
            f"Confidence calibrated on {rows} rows, cross-fitted: the validation rows and {folds} parts of the "
            "training rows, each scored by a model refitted without it"
        )
    return f"Confidence calibrated on the {rows} validation rows alone"


def _majority(truth: list[Any]) -> float:
    return Counter(truth).most_common(1)[0][1] / len(truth) if truth else 0.0


def _warnings(one_label: bool, figures: list[ClassFigures], truth: list[Any], accuracy: float) -> list[str]:
    warnings = [
        f"class '{f.name}' has {f.train_count} training examples (fewer than {FEW_EXAMPLES})"
        for f in figures
        if f.train_count < FEW_EXAMPLES
    ]
    warnings += [
        f"class '{f.name}' is never predicted on validation ({f.support} validation rows hold it)"
        for f in figures
        if f.predicted == 0
    ]
    if one_label:
        baseline = _majority(truth)
        if accuracy < baseline + BARELY_BEATS:
            warnings.append(
                f"the model's accuracy {accuracy:.3f} barely beats always answering the majority class ({baseline:.3f})"
            )
    return warnings
