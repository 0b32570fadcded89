"""What the scorecard reads from a phase's evaluation: when an alert naming its fault fired, which others fired,
the pages of clean traffic, and the realized accuracy's interval."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .alerts import Evaluation, Firing
from .run import PhaseRun

Z95 = 1.959964


@dataclass(frozen=True)
class Detection:
    """For one model under one fault phase, in steps (virtual minutes) after the fault's onset."""

    model: str
    fired: dict[str, int]  # alert naming the fault -> first step after the onset it fired (as shipped)
    held: dict[str, int]  # alert naming the fault -> first step after the onset its condition held
    others: tuple[str, ...]  # other alerts that fired for this model after the onset
    warmup: tuple[str, ...]  # alerts that fired for this model during the clean warm-up

    @property
    def first(self) -> int | None:
        return min(self.fired.values(), default=None)

    @property
    def first_held(self) -> int | None:
        return min(self.held.values(), default=None)


def _first(found: Iterable[Firing], model: str, alerts: tuple[str, ...], onset: int) -> dict[str, int]:
    steps: dict[str, int] = {}
    for f in found:
        if f.label("model") == model and f.alert in alerts and f.step > onset:
            steps[f.alert] = min(f.step - onset, steps.get(f.alert, f.step - onset))
    return dict(sorted(steps.items(), key=lambda item: (item[1], item[0])))


def detections(run: PhaseRun, evaluation: Evaluation) -> list[Detection]:
    """Per model the fault applies to; the evaluation's steps are relative to the phase's first scrape."""
    assert run.phase.fault is not None
    named = run.phase.fault.named_by
    onset = run.onset - run.start
    found = []
    for model in run.tallies:
        mine = [f for f in evaluation.firing if f.label("model") == model]
        found.append(
            Detection(
                model,
                _first(evaluation.firing, model, named, onset),
                _first(evaluation.held, model, named, onset),
                tuple(sorted({f.alert for f in mine if f.step > onset} - set(named))),
                tuple(sorted({f.alert for f in mine if f.step <= onset})),
            )
        )
    return found


def episodes(firing: Iterable[Firing]) -> list[Firing]:
    """Each firing's first step: an alert with the same labels firing again after a gap is a new page."""
    steps: dict[tuple[str, frozenset[tuple[str, str]]], set[int]] = {}
    for f in firing:
        steps.setdefault((f.alert, f.labels), set()).add(f.step)
    return sorted(
        (
            Firing(step, alert, labels)
            for (alert, labels), held in steps.items()
            for step in held
            if step - 1 not in held
        ),
        key=lambda f: (f.step, f.alert),
    )


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion `successes / n` (NaN when n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def realized_interval(accuracy: float, distinct: int) -> tuple[float, float]:
    """The 95 % interval of a realized accuracy measured on rows resampled from `distinct` rows: the sample is
    the distinct rows, however many times each was sent (each row's correctness barely varies between sends)."""
    if math.isnan(accuracy):
        return math.nan, math.nan
    return wilson(round(accuracy * distinct), distinct)
