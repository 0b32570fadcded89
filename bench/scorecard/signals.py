"""What the scorecard reads from a phase: when each alert held and fired, and the signals' largest clean values.

The margins recompute the alerts' signals from the scrapes over the rules' windows (in steps of virtual minutes),
with the rules' traffic guards, so the report can say how far clean traffic stayed from each threshold.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .alerts import Evaluation, Firing, Scrape
from .run import PhaseRun

HOUR_STEPS = 60
QUARTER_STEPS = 15


@dataclass(frozen=True)
class Detection:
    """For one model under one fault: the first step at which each alert naming the fault held, and fired."""

    model: str
    held: dict[str, int]  # naming alert -> first step its condition held
    fired: dict[str, int]  # naming alert -> first step it fired
    others: tuple[str, ...]  # every other alert that held at some step

    @property
    def first(self) -> int | None:
        return min(self.held.values(), default=None)


@dataclass(frozen=True)
class Margin:
    """The largest value of one signal over a run, against its alert threshold (NaN: never enough rows)."""

    signal: str
    threshold: str
    largest: float
    where: str


def alert_model(firing: Firing) -> str | None:
    return firing.label("model")


def detections(phase: PhaseRun, evaluation: Evaluation) -> list[Detection]:
    assert phase.fault is not None
    named = phase.fault.named_by

    def first_steps(found: list[Firing], model: str) -> dict[str, int]:
        steps: dict[str, int] = {}
        for f in found:
            if alert_model(f) == model and f.alert in named:
                steps[f.alert] = min(f.step, steps.get(f.alert, f.step))
        return dict(sorted(steps.items(), key=lambda item: (item[1], item[0])))

    return [
        Detection(
            model,
            first_steps(evaluation.pending, model),
            first_steps(evaluation.firing, model),
            tuple(sorted({f.alert for f in evaluation.pending if alert_model(f) == model} - set(named))),
        )
        for model in phase.models
    ]


def _values(scrape: Scrape, name: str, model: str) -> Iterable[tuple[dict[str, str], float]]:
    for (sample, key), value in scrape.samples.items():
        labels = dict(key)
        if sample == name and labels.get("model") == model:
            yield labels, value


def margins(phase: PhaseRun, model: str) -> list[Margin]:
    scrapes = phase.scrapes
    found = []
    for name, signal in (("classifier_feature_drift_psi", "feature PSI"), ("classifier_prediction_drift_psi",
                                                                          "prediction PSI")):  # fmt: skip
        largest, where = math.nan, ""
        for step, scrape in enumerate(scrapes):
            for labels, value in _values(scrape, name, model):
                if not math.isnan(value) and (math.isnan(largest) or value > largest):
                    largest, where = value, f"step {step}" + (f", {labels['feature']}" if "feature" in labels else "")
        found.append(Margin(signal, "> 0.25", largest, where))
    found.append(_class_share(scrapes, model))
    found.append(_estimate_drop(scrapes, model))
    found.append(_issue_ratio(scrapes, model))
    return found


def _window(scrapes: list[Scrape], step: int, steps: int) -> tuple[Scrape, Scrape]:
    return scrapes[max(0, step - steps)], scrapes[step]


def _class_share(scrapes: list[Scrape], model: str) -> Margin:
    validation = {
        (labels.get("level", ""), labels["label"]): value
        for labels, value in _values(scrapes[-1], "classifier_validation_prediction_share", model)
    }
    largest, where = math.nan, ""
    for step in range(1, len(scrapes)):
        start, end = _window(scrapes, step, HOUR_STEPS)
        counts: dict[tuple[str, str], float] = {}
        for labels, value in _values(end, "classifier_predictions_total", model):
            key = (labels.get("level", ""), labels["label"])
            counts[key] = value - start.total("classifier_predictions_total", **labels)
        for (level, label), count in counts.items():
            level_total = sum(c for (lv, _), c in counts.items() if lv == level)
            if level_total >= 100 and validation.get((level, label), 1.0) < 0.6:
                share = count / level_total
                if math.isnan(largest) or share > largest:
                    largest, where = share, f"step {step}, {label}" + (f" (level {level})" if level else "")
    return Margin("share of a class (validation share < 0.6), 1 h", "> 0.9", largest, where)


def _estimate_drop(scrapes: list[Scrape], model: str) -> Margin:
    validation = max((v for _, v in _values(scrapes[-1], "classifier_validation_accuracy", model)), default=math.nan)
    largest, where = math.nan, ""
    for step in range(1, len(scrapes)):
        start, end = _window(scrapes, step, HOUR_STEPS)
        rows = end.total("classifier_estimated_rows_total", model=model) - start.total(
            "classifier_estimated_rows_total", model=model
        )
        if rows >= 100:
            correct = end.total("classifier_estimated_correct_total", model=model) - start.total(
                "classifier_estimated_correct_total", model=model
            )
            drop = validation - correct / rows
            if math.isnan(largest) or drop > largest:
                largest, where = drop, f"step {step}"
    return Margin("validation accuracy − estimated accuracy, 1 h", "> 0.05", largest, where)


def _issue_ratio(scrapes: list[Scrape], model: str) -> Margin:
    """Per feature and kind, as `classifier:input_issue_ratio:rate15m`."""
    largest, where = math.nan, ""
    for step in range(1, len(scrapes)):
        start, end = _window(scrapes, step, QUARTER_STEPS)
        rows = end.total("classifier_rows_total", model=model) - start.total("classifier_rows_total", model=model)
        if rows < 50:
            continue
        largest = 0.0 if math.isnan(largest) else largest
        for labels, value in _values(end, "classifier_input_issues_total", model):
            share = (value - start.total("classifier_input_issues_total", **labels)) / rows
            if share > largest:
                largest, where = share, f"step {step}, {labels['feature']}: {labels['kind']}"
    return Margin("rows with one fault on one feature, 15 min", "> 0.05", largest, where or "no input issue")
