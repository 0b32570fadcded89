"""Realized metrics: what the labelled predictions of a time range say about a model, per version.

The database aggregates the labelled predictions into (decision, label) pairs with counts; the task's ground-truth
rules (`service.classifiers.Truth`) turn those into accuracy, F1 and per-class figures. `/metrics` exports them for
the feedback window, `GET /models/{name}/performance` for any range. Every worker and replica reads the same
database, so every one of them exports the same figures: aggregate them with `max by (model, version)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ..classifiers import ClassFigures
from ..monitoring.metrics import GaugeFamily


@dataclass(frozen=True)
class VersionFigures:
    """The realized figures of one model version over a time range."""

    model: str
    version: str
    predictions: int  # logged predictions made in the range
    labelled: int  # of which have a label
    accuracy: float
    f1: dict[str, float]  # by average: binary, or macro and micro
    level_accuracy: list[float] = field(default_factory=list)  # hierarchical: per level
    estimated_accuracy: float = float("nan")  # the label-free estimate on the same labelled predictions
    classes: list[ClassFigures] = field(default_factory=list)  # per class, those seen


def realized_families(figures: Sequence[VersionFigures]) -> list[GaugeFamily]:
    """The `classifier_realized_*` gauges of CONTRACT.md, labelled by model and version."""

    def per_version(name: str, documentation: str, attribute: str) -> GaugeFamily:
        samples = [((f.model, f.version), float(getattr(f, attribute))) for f in figures]
        return GaugeFamily(name, documentation, ("model", "version"), samples)

    window = "in the feedback window (by prediction time)"
    return [
        per_version("classifier_realized_predictions", f"Logged predictions {window}.", "predictions"),
        per_version("classifier_realized_labelled", f"Labelled predictions {window}.", "labelled"),
        per_version(
            "classifier_realized_accuracy",
            f"Accuracy of the labelled predictions {window} (multilabel: exact set; hierarchical: leaf).",
            "accuracy",
        ),
        GaugeFamily(
            "classifier_realized_f1",
            f"F1 of the labelled predictions {window}.",
            ("model", "version", "average"),
            [((f.model, f.version, average), value) for f in figures for average, value in f.f1.items()],
        ),
        GaugeFamily(
            "classifier_realized_level_accuracy",
            f"Accuracy per level of a hierarchical model's labelled predictions {window}.",
            ("model", "version", "level"),
            [
                ((f.model, f.version, str(level)), value)
                for f in figures
                for level, value in enumerate(f.level_accuracy)
            ],
        ),
        per_version(
            "classifier_realized_estimated_accuracy",
            f"The label-free accuracy estimate on the same labelled predictions {window}.",
            "estimated_accuracy",
        ),
    ]
