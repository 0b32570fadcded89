"""docs/monitoring-quality.md: the scorecard's findings and whether they meet the targets."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..machine import changed_paths, describe_commit, git
from ..servers import PROJECT
from .alerts import STEP_MINUTES, Evaluation, Firing
from .run import PhaseRun
from .signals import Detection, Margin

DETECT_WITHIN = 500  # requests after onset
CLEAN_GAP = 0.03
SHIFT_GAP = 0.05  # covariate shift and noise
GAP_TARGETS = {"clean": CLEAN_GAP, "covariate_shift": SHIFT_GAP, "noise": SHIFT_GAP}


@dataclass(frozen=True)
class PhaseResult:
    phase: PhaseRun
    evaluation: Evaluation
    detections: list[Detection]  # fault phases
    margins: dict[str, list[Margin]]  # the clean phase, by model

    @property
    def key(self) -> str:
        return self.phase.fault.key if self.phase.fault else "clean"


def held_steps(pending: Sequence[Firing]) -> list[str]:
    """Each alert whose condition held, per model (and level), with the steps it held at: a condition that held
    only while the window was small reads differently from one that held throughout."""
    steps: dict[str, set[int]] = {}
    for f in pending:
        level = f.label("level")
        name = f"{f.alert}/{f.label('model')}" + (f" level {level}" if level is not None else "")
        steps.setdefault(name, set()).add(f.step)
    return [f"{name} ({_step_range(sorted(held))})" for name, held in sorted(steps.items())]


def _step_range(steps: list[int]) -> str:
    span = f"step {steps[0]}" if len(steps) == 1 else f"steps {steps[0]}–{steps[-1]}"
    return span if len(steps) == steps[-1] - steps[0] + 1 else f"{span}, {len(steps)} of them"


def _requests(step: int | None, per_step: int) -> str:
    return "—" if step is None else f"{step * per_step:,}"


def _number(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def _commit() -> str:
    """The commit measured, and whether the tree differed from it (as `make bench` says it)."""
    return describe_commit(git(PROJECT, "rev-parse", "--short", "HEAD") or "unknown", changed_paths(PROJECT))


def write_report(
    path: Path, command: str, results: Sequence[PhaseResult], descriptions: Mapping[str, Mapping[str, Any]]
) -> None:
    clean = next(r for r in results if r.phase.fault is None)
    faults = [r for r in results if r.phase.fault is not None]
    step = clean.phase.step
    lines = [
        "# Monitoring quality scorecard",
        "",
        f"Written by `{command}` (`make scorecard`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {_commit()}, "
        f"{os.cpu_count()} CPUs. Do not edit by hand: run it again.",
        "",
        "## Method",
        "",
        "- Each phase runs on a fresh server (`bentoml serve`, 2 workers, the default catalog plus `drifting_world`, "
        "a synthetic 3-class model the scorecard trains), so its drift windows and counters hold that phase only.",
        f"- Traffic is single-row `/predict` requests with default options, {step} per model per step, 8 at a time. "
        "After each step the scorecard scrapes `/metrics` once every worker's writes of the step show.",
        f"- The shipped rules (`deploy/prometheus/rules/`) are evaluated on the scraped series by `promtool test "
        f"rules`, in virtual time: one step is {STEP_MINUTES} minute, so a model gets {step} requests a minute "
        "(a quiet service, where the traffic guards matter). *Holds* is the first step at which an alert's "
        "condition holds (pending); *fires* is when it fires as shipped, after its `for`.",
        "- A fault is detected when an alert that names it holds for that model; requests are counted per model "
        "from the fault's onset.",
        "- Estimate: the live label-free estimate (`classifier_estimated_correct_total / "
        "classifier_estimated_rows_total`) over the phase. Realized: the accuracy of the same predictions once "
        "every one got its true label through `POST /feedback` (`GET /models/{name}/performance`).",
        "",
    ]
    lines += _targets(clean, faults)
    lines += _detection_table(faults)
    lines += _clean_section(clean)
    lines += _estimate_table(results)
    lines += _faults_section(faults, descriptions)
    lines += NOTES
    path.write_text("\n".join(lines) + "\n")


NOTES = [
    "## Notes",
    "",
    "- The label-free estimate assumes that what validation measured still holds: the probability that a decision "
    "is right, given the model's confidence. Rows drawn differently (the covariate shift here, the class-prior "
    "shift) keep it, and there the estimate follows the realized accuracy. Faults that change what the inputs mean "
    "(noise, a scaling bug, values out of range, a drifted world) leave the model confident and wrong: the estimate "
    "stays near validation while realized accuracy falls. Those faults are named by drift and data-quality alerts "
    "at once, and once labels arrive `ClassifierRealizedAccuracyLow` and `ClassifierEstimateDiverges` say the "
    "estimate no longer holds. No label-free estimator can see a confident model being wrong on inputs it has no "
    "reason to doubt.",
    "- *Held* is not *fired*. On clean traffic a drift alert's condition (`ClassifierFeatureDrift`, and "
    "`ClassifierPredictionDrift` at a level of ten labels) can hold for a few steps while "
    "the drift window has 100-150 rows (a small sample's PSI, and a held-out set of a few hundred rows resampled), "
    "and its `for: 15m` keeps it from firing; the clean margins table shows how far each signal went.",
    "- A phase is shorter than the drift window (30 minutes of wall-clock time), so a phase's PSI covers every row "
    "of the phase; in virtual time the window would have slid after 30 steps. Alerts of the service itself "
    "(target down, latency, errors, lost workers), of the prediction log and of labels are not exercised here; "
    "`deploy/prometheus/tests/` unit-tests every alert both ways.",
    "",
]


def _targets(clean: PhaseResult, faults: Sequence[PhaseResult]) -> list[str]:
    missed = [
        f"{r.key}/{d.model}"
        for r in faults
        for d in r.detections
        if d.first is None or d.first * r.phase.step > DETECT_WITHIN
    ]
    gaps = [
        (r.key, name, abs(run.estimated - run.realized))
        for r in [clean, *faults]
        if r.key in GAP_TARGETS
        for name, run in r.phase.models.items()
        if run.estimated is not None and run.realized is not None
    ]
    over = [f"{key}/{name} ({gap:.3f})" for key, name, gap in gaps if gap > GAP_TARGETS[key]]
    fired = sorted({f"{f.alert}/{f.label('model')}" for f in clean.evaluation.firing})
    held = held_steps(clean.evaluation.pending)
    clean_requests = max(run.sent for run in clean.phase.models.values())

    def verdict(ok: bool) -> str:
        return "met" if ok else "**missed**"

    return [
        "## Targets",
        "",
        "| target | result | |",
        "|---|---|---|",
        f"| every fault detected within {DETECT_WITHIN} requests by an alert naming it | "
        f"{'all detected' if not missed else 'missed: ' + ', '.join(missed)} | {verdict(not missed)} |",
        f"| no alert fires over {clean_requests:,} clean requests per model | "
        f"{'none fired' if not fired else ', '.join(fired)}"
        f"{'' if not held else '; conditions held: ' + ', '.join(held)} | {verdict(not fired)} |",
        f"| \\|estimate − realized\\| ≤ {CLEAN_GAP} clean, ≤ {SHIFT_GAP} under covariate shift and noise | "
        f"largest {max((g for *_, g in gaps), default=math.nan):.3f}"
        f"{'' if not over else '; over: ' + ', '.join(over)} | {verdict(not over)} |",
        "",
    ]


def _detection_table(faults: Sequence[PhaseResult]) -> list[str]:
    lines = [
        "## Detection",
        "",
        "Requests per model after the fault's onset until each alert that names the fault holds (its condition "
        "is true: pending) and fires (after its `for`); — where it did not within the phase.",
        "",
        "| fault | model | detected after | alerts naming it: holds / fires after | other alerts that held |",
        "|---|---|---:|---|---|",
    ]
    for result in faults:
        per_step = result.phase.step
        for d in result.detections:
            naming = "; ".join(
                f"{alert.removeprefix('Classifier')} {_requests(step, per_step)} / "
                f"{_requests(d.fired.get(alert), per_step)}"
                for alert, step in d.held.items()
            )
            others = ", ".join(alert.removeprefix("Classifier") for alert in d.others)
            lines.append(
                f"| {result.key} | {d.model} | {_requests(d.first, per_step)} | {naming or '—'} | {others or '—'} |"
            )
    return [*lines, ""]


def _clean_section(clean: PhaseResult) -> list[str]:
    lines = [
        "## Clean traffic: the false-alarm margin",
        "",
        "The largest value each alert's signal took over the clean phase (with the rule's window and traffic guard; "
        "PSI is NaN until the drift window has 100 rows).",
        "",
        "| model | signal | alert threshold | largest | where |",
        "|---|---|---|---:|---|",
    ]
    for model, found in clean.margins.items():
        for m in found:
            lines.append(f"| {model} | {m.signal} | {m.threshold} | {_number(m.largest)} | {m.where or '—'} |")
    return [*lines, ""]


def _estimate_table(results: Sequence[PhaseResult]) -> list[str]:
    lines = [
        "## Estimated against realized accuracy",
        "",
        "| phase | model | requests | accepted | estimate | realized | \\|gap\\| | target |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for result in results:
        for name, run in result.phase.models.items():
            gap = None if run.estimated is None or run.realized is None else abs(run.estimated - run.realized)
            target = GAP_TARGETS.get(result.key)
            lines.append(
                f"| {result.key} | {name} | {run.sent:,} | {run.accepted:,} | {_number(run.estimated)} | "
                f"{_number(run.realized)} | {_number(gap)} | {'≤ ' + str(target) if target else '—'} |"
            )
    return [*lines, ""]


def _faults_section(faults: Sequence[PhaseResult], descriptions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = ["## The faults", "", "| fault | what | alerts that name it | models |", "|---|---|---|---|"]
    for result in faults:
        fault = result.phase.fault
        assert fault is not None
        lines.append(
            f"| {fault.key} | {fault.title} | {', '.join(fault.named_by)} | {', '.join(result.phase.models)} |"
        )
    lines += ["", "The most important feature is the first of `GET /models/{name}` `monitored_features`:", ""]
    lines += [f"- {name}: `{d['monitored_features'][0]}`" for name, d in descriptions.items()]
    return [*lines, ""]
