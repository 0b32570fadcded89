"""docs/monitoring-quality.md and its figure: the scorecard's findings and whether they meet the targets."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..machine import changed_paths, describe_commit, git
from ..servers import PROJECT
from .alerts import STEP_MINUTES, ratio_alert, severities
from .run import ROWS_PER_STEP
from .signals import episodes, realized_interval
from .traffic import FAULTS, Fault

if TYPE_CHECKING:
    from .__main__ import PhaseResult

MEDIUM_WITHIN = 30  # virtual minutes: 1,500 rows per model, medium size on 50 % of the rows
STRONG_WITHIN = 20  # 1,000 rows, strong size on 100 %
LABELLED_WITHIN = 500  # labelled predictions after the labels reflect concept drift
CLEAN_RATIO = 0.7
CLEAN_GAP, SHIFT_GAP = 0.03, 0.05
SIZE_NAMES = ("mild", "medium", "strong")


def _commit() -> str:
    return describe_commit(git(PROJECT, "rev-parse", "--short", "HEAD") or "unknown", changed_paths(PROJECT))


def _n(value: float | None, digits: int = 3) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _when(minutes: int | None) -> str:
    return "—" if minutes is None else f"{minutes * ROWS_PER_STEP:,} rows, {minutes * STEP_MINUTES} min"


def _size(fault: Fault, size: float) -> str:
    level = SIZE_NAMES[fault.sizes.index(size)] if size in fault.sizes and not fault.ramp else "ramp to"
    return f"{level} {size:g} {fault.unit}"


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def write_report(
    path: Path, command: str, results: Sequence[PhaseResult], descriptions: Mapping[str, Mapping[str, Any]],
    args: argparse.Namespace, timing: Mapping[str, float],
) -> None:  # fmt: skip
    clean = next(r for r in results if r.run.phase.fault is None)
    faults = [r for r in results if r.run.phase.fault is not None]
    commit = _commit()  # before the figure is written: the report's own outputs are not uncommitted changes
    path.parent.mkdir(parents=True, exist_ok=True)
    figure = path.with_name(path.stem + "-detection.svg")
    figure.write_text(detection_svg(faults))
    lines = [
        "# Monitoring quality scorecard",
        "",
        f"Written by `{command}` (`make scorecard`) on {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, commit {commit}, "
        f"{os.cpu_count()} CPUs, in {timing['total_s'] / 60:.0f} minutes ({timing['step_s']:.2f} s of wall time a "
        f"step, {timing['promtool_s'] / 60:.0f} minutes of promtool, run beside the traffic). Do not edit by hand: "
        "run it again.",
        "",
        *_method(args, timing["step_s"]),
        *_targets(clean, faults, args.label_delay),
        *_detection_table(faults),
        f"![detection time against fault size]({figure.name})",
        "",
        *_clean_section(clean, args.clean_steps),
        *_estimate_table(results),
        *_faults_section(descriptions),
    ]
    path.write_text("\n".join(lines) + "\n")


def _method(args: argparse.Namespace, step_s: float) -> list[str]:
    grid = {
        "full": "every fault at its three sizes on 10 %, 50 % and 100 % of the rows",
        "reduced": "every fault at its three sizes on 100 % of the rows, and at medium size on 10 % and 50 % (the "
        "full 3 × 3 grid, `--grid full`, does not fit the hour the run is given)",
        "quick": "a smoke run (`--quick`): two faults at medium size on 100 % of the rows, too short for the rules' "
        "windows; its figures mean nothing",
    }[args.grid]
    return [
        "## Method",
        "",
        "- **One server** (`bentoml serve`, 2 workers, the default catalog plus `drifting_world`, a synthetic 3-class "
        "model with a categorical column that the scorecard trains), never restarted. A step is one virtual minute: "
        f"one `/predict` request of {ROWS_PER_STEP} rows per model. The signals are per row, so this is the same "
        f"as {ROWS_PER_STEP} one-row requests a minute; *rows* below count rows per model. After each step the "
        "scorecard scrapes `/metrics` once every worker's writes of the step show.",
        f"- **Phases.** First {args.clean_steps:,} clean steps ({args.clean_steps / 60:.3g} virtual hours), every "
        f"model at once. Then each fault phase: {args.warmup} clean steps that flush every window the rules read "
        f"(the longest is 1 h), then {args.fault_steps} steps of the fault, every model it applies to at once "
        f"(the other models keep clean traffic). Grid: {grid}.",
        f"- **Labels.** Every accepted prediction's true label is sent through `POST /feedback` {args.label_delay} "
        "steps after its step, during the run, in clean and faulty steps alike. The `classifier_realized_*` gauges "
        "cover a wall-clock window of the prediction log (`CLF_FEEDBACK_WINDOW_SECONDS="
        f"{args.feedback_window_seconds:g}` here, about {args.feedback_window_seconds / step_s:.0f} virtual minutes "
        "at the measured step time); rules on counters of labels count in virtual time.",
        "- **Data.** Catalog traffic is drawn from each model's evaluation split (`models.catalog.evaluation_rows`, "
        "never read at registration); `drifting_world` is registered on rows of two seeds and its traffic comes "
        "from a third.",
        f"- **One rule.** The shipped rules (`deploy/prometheus/rules/`) are evaluated on the scraped series by "
        f"`promtool test rules` in virtual time (one step = {STEP_MINUTES} min). A fault is detected when an alert "
        "that names it *fires as shipped* (after its `for`) for that model; on clean traffic any alert that fires "
        "is a false alarm. *Condition held* (the alert without its `for`) is shown beside it, labelled as such. Within "
        "promtool's 10,000-samples-per-query cap the `*_bin_rows_total` series are evaluated in chunks of "
        "(model, feature) groups with the rules that read them, and the firings are united.",
        "- **Estimate vs realized.** Estimate: the live label-free estimate (`classifier_estimated_correct_total / "
        "classifier_estimated_rows_total`) over the phase's measured rows. Realized: the accuracy of the same "
        "predictions against their true labels; its 95 % interval (Wilson) takes as n the number of *distinct* "
        "evaluation rows behind it (rows are resampled: sending a row twice does not make a new sample).",
        "- **What resampling costs.** A catalog model's traffic resamples its evaluation split (114 rows for "
        "`breast_cancer`, 360 for the digits models), so a drift window of n rows carries the sampling error of "
        "d distinct rows, not of n: under no drift its PSI is about (bins − 1)(1/d + 1/m) against m reference "
        "rows, where the alert's threshold allows for n independent rows, as production traffic has. The smaller "
        "the split, the closer clean catalog traffic runs to the drift thresholds; `drifting_world`'s traffic is "
        "fresh rows and has no such floor.",
        "",
    ]


def _cell(results: Sequence[PhaseResult], key: str, size_index: int, share: float) -> list[PhaseResult]:
    return [
        r for r in results
        if r.run.phase.fault is not None and r.run.phase.fault.key == key and not r.run.phase.fault.ramp
        and r.run.phase.size == r.run.phase.fault.sizes[size_index] and r.run.phase.share == share
    ]  # fmt: skip


def _misses(results: Sequence[PhaseResult], size_index: int, share: float, within: int) -> tuple[int, list[str]]:
    checked, missed = 0, []
    for fault in FAULTS:
        for r in _cell(results, fault.key, size_index, share):
            for d in r.detections:
                checked += 1
                if d.first is None or d.first > within:
                    missed.append(f"{fault.key}/{d.model} ({_when(d.first)})")
    return checked, missed


def _targets(clean: PhaseResult, faults: Sequence[PhaseResult], delay: int) -> list[str]:
    medium_n, medium_missed = _misses(faults, 1, 0.5, MEDIUM_WITHIN)
    strong_n, strong_missed = _misses(faults, 2, 1.0, STRONG_WITHIN)
    joint = [d for r in _cell(faults, "joint_broken", 1, 1.0) for d in r.detections]
    joint_missed = [d.model for d in joint if d.fired.get("ClassifierMultivariateDrift", 1 << 30) > MEDIUM_WITHIN]
    concept = []
    for r in _cell(faults, "concept_drift", 1, 0.5) + _cell(faults, "concept_drift", 1, 1.0):
        for d in r.detections:
            labelled = None if d.first is None else max(0, d.first - delay) * ROWS_PER_STEP
            concept.append((f"{r.run.phase.share:.0%}", d.model, labelled))
    concept_missed = [f"{share}/{m}" for share, m, n in concept if n is None or n > LABELLED_WITHIN]
    severity = severities()
    firings = episodes(clean.evaluation.firing)
    paged = [f"{p.alert}/{p.label('model')}" for p in firings if severity.get(p.alert) == "page"]
    ticketed = [f"{p.alert}/{p.label('model')}" for p in firings if severity.get(p.alert) != "page"]
    peaks = [p for p in clean.evaluation.peaks if p.value > CLEAN_RATIO]
    gaps = _gaps([clean, *[r for r in faults if r.run.phase.fault and r.run.phase.fault.key == "covariate_shift"]])
    over = [f"{key}/{model} ({gap:.3f})" for key, model, gap, limit in gaps if gap > limit]

    def listed(items: Sequence[str]) -> str:
        return ", ".join(items[:12]) + (f" and {len(items) - 12} more" if len(items) > 12 else "")

    return [
        "## Targets",
        "",
        "| target | result | |",
        "|---|---|---|",
        f"| every fault at medium size on 50 % of the rows fires an alert naming it within "
        f"{MEDIUM_WITHIN * ROWS_PER_STEP:,} rows ({MEDIUM_WITHIN} min) | {medium_n - len(medium_missed)} of "
        f"{medium_n}{'; missed: ' + listed(medium_missed) if medium_missed else ''} | "
        f"{_verdict(bool(medium_n) and not medium_missed)} |",
        f"| strong faults on 100 % within {STRONG_WITHIN * ROWS_PER_STEP:,} rows | {strong_n - len(strong_missed)} "
        f"of {strong_n}{'; missed: ' + listed(strong_missed) if strong_missed else ''} | "
        f"{_verdict(bool(strong_n) and not strong_missed)} |",
        f"| marginals kept, joint broken (medium, 100 %) fires `ClassifierMultivariateDrift` within "
        f"{MEDIUM_WITHIN * ROWS_PER_STEP:,} rows | {len(joint) - len(joint_missed)} of {len(joint)}"
        f"{'; missed: ' + listed(joint_missed) if joint_missed else ''} | "
        f"{_verdict(bool(joint) and not joint_missed)} |",
        f"| concept drift (medium) fires the realized-accuracy alert within {LABELLED_WITHIN} labelled predictions "
        f"after the labels reflect it | {len(concept) - len(concept_missed)} of {len(concept)}"
        f"{'; missed: ' + listed(concept_missed) if concept_missed else ''} | "
        f"{_verdict(bool(concept) and not concept_missed)} |",
        f"| no page over {clean.run.phase.steps / 60:.3g} virtual hours of clean traffic | {len(paged)} page(s)"
        f"{': ' + listed(paged) if paged else ''}; tickets (not pages): {len(ticketed)}"
        f"{': ' + listed(ticketed) if ticketed else ''} | {_verdict(not paged)} |",
        f"| every alert's largest clean value ≤ {CLEAN_RATIO} × its threshold | "
        f"{'all under' if not peaks else listed([f'{p.rule}/{p.model} {p.value:.2f}' for p in peaks])} | "
        f"{_verdict(bool(clean.evaluation.peaks) and not peaks)} |",
        f"| \\|estimate − realized\\| ≤ {CLEAN_GAP} clean, ≤ {SHIFT_GAP} under covariate shift | largest "
        f"{max((g for _, _, g, _ in gaps), default=math.nan):.3f}{'; over: ' + listed(over) if over else ''} | "
        f"{_verdict(bool(gaps) and not over)} |",
        "| monitoring costs ≤ 10 % of req/s at every `make bench` point | not measured here: `make bench`, "
        "variants `default` and `monitoring_off` (docs/benchmarks.md) | — |",
        "",
    ]


def _gaps(results: Sequence[PhaseResult]) -> list[tuple[str, str, float, float]]:
    out = []
    for r in results:
        limit = CLEAN_GAP if r.run.phase.fault is None else SHIFT_GAP
        for model, tally in r.run.tallies.items():
            gap = abs(tally.estimated - tally.realized)
            if not math.isnan(gap) and model != "drifting_world":
                out.append((r.run.phase.key, model, gap, limit))
    return out


def _detection_table(faults: Sequence[PhaseResult]) -> list[str]:
    lines = [
        "## Detection",
        "",
        "Rows per model (and virtual minutes) after the fault's onset until the first alert that names the fault "
        "fired as shipped; *condition held*: when the first naming alert's condition first held (not a "
        "detection); — where it did not within the phase. *Other alerts*: alerts not naming the fault that fired "
        "for the model after the onset; *in warm-up*: alerts that fired during the clean warm-up before it.",
        "",
        "| fault | size | share | model | fired after | first naming alert | condition held after | other alerts "
        "| in warm-up |",
        "|---|---|---:|---|---:|---|---:|---|---|",
    ]
    for r in faults:
        fault = r.run.phase.fault
        assert fault is not None
        for d in r.detections:
            name = next(iter(d.fired), "—").removeprefix("Classifier")
            lines.append(
                f"| {fault.key} | {_size(fault, r.run.phase.size)} | {r.run.phase.share:.0%} | {d.model} | "
                f"{_when(d.first)} | {name} | {_when(d.first_held)} | "
                f"{', '.join(a.removeprefix('Classifier') for a in d.others) or '—'} | "
                f"{', '.join(a.removeprefix('Classifier') for a in d.warmup) or '—'} |"
            )
    return [*lines, ""]


def _clean_section(clean: PhaseResult, steps: int) -> list[str]:
    severity = severities()
    per_model: dict[str, list[str]] = {}
    for p in episodes(clean.evaluation.firing):
        per_model.setdefault(p.label("model") or "?", []).append(f"{p.alert} ({severity.get(p.alert, '?')})")
    days = steps * STEP_MINUTES / (24 * 60)
    lines = [
        "## Clean traffic",
        "",
        f"Alerts that fired over {steps:,} clean steps ({steps * STEP_MINUTES / 60:.3g} virtual hours), per model, "
        "per day:",
        "",
        "| model | pages / day | tickets / day | which |",
        "|---|---:|---:|---|",
    ]
    for model in clean.run.tallies:
        found = per_model.get(model, [])
        pages = sum(f.endswith("(page)") for f in found)
        lines.append(
            f"| {model} | {pages / days:.1f} | {(len(found) - pages) / days:.1f} | {', '.join(found) or '—'} |"
        )
    lines += [
        "",
        "The largest value of each `*:ratio` rule (the alert's signal over its threshold: above 1 its condition "
        f"holds; the target is ≤ {CLEAN_RATIO}) over the clean phase, per model:",
        "",
        "| model | ratio rule | alert | largest | where | hour |",
        "|---|---|---|---:|---|---:|",
    ]
    for peak in clean.evaluation.peaks:
        where = ", ".join(f"{k}={v}" for k, v in sorted(peak.labels)) or "—"
        lines.append(f"| {peak.model} | `{peak.rule}` | {ratio_alert(peak.rule)} | {peak.value:.3f} | {where} | "
                     f"{math.ceil(peak.step / 60)} |")  # fmt: skip
    return [*lines, ""]


def _estimate_table(results: Sequence[PhaseResult]) -> list[str]:
    lines = [
        "## Estimated against realized accuracy",
        "",
        "Over each phase's measured rows (the fault's steps; the whole clean phase). n: distinct rows behind the "
        "realized accuracy (fresh synthetic rows each count).",
        "",
        "| phase | model | rows | accepted | estimate | realized | 95 % interval | n | \\|gap\\| |",
        "|---|---|---:|---:|---:|---:|---|---:|---:|",
    ]
    for r in results:
        for model, t in r.run.tallies.items():
            low, high = realized_interval(t.realized, t.distinct)
            lines.append(
                f"| {r.run.phase.key} | {model} | {t.sent:,} | {t.accepted:,} | {_n(t.estimated)} | {_n(t.realized)} "
                f"| {_n(low)}–{_n(high)} | {t.distinct:,} | {_n(abs(t.estimated - t.realized))} |"
            )
    return [*lines, ""]


def _faults_section(descriptions: Mapping[str, Mapping[str, Any]]) -> list[str]:
    lines = [
        "## The faults",
        "",
        "| fault | what | sizes (mild, medium, strong) | alerts that name it |",
        "|---|---|---|---|",
    ]
    for fault in FAULTS:
        sizes = ", ".join(f"{s:g} {fault.unit}" for s in fault.sizes)
        lines.append(f"| {fault.key} | {fault.title} | {sizes} | {', '.join(fault.named_by)} |")
    lines += [
        "",
        "`missing` runs only on models that accept missing values; the others refuse such rows with a 400 naming the "
        "field, which is not silent. `unseen_category` and `stale_model` run on `drifting_world` only (the only model "
        "with a categorical column, and the only one whose world the scorecard can move). The most important "
        "features are the first of `GET /models/{name}` `monitored_features`:",
        "",
    ]
    lines += [f"- {name}: `{', '.join(d['monitored_features'][:3])}`, …" for name, d in descriptions.items()]
    return [*lines, ""]


def detection_svg(faults: Sequence[PhaseResult]) -> str:
    """Minutes to the first firing of a naming alert against the size level (100 % of rows): one line per fault,
    the median over its models; a fault with no firing is drawn at the top, as 'not fired'."""
    width, height, left, bottom, top = 720, 420, 60, 50, 30
    keys = [f for f in FAULTS if not f.ramp]
    ceiling = max([d.first for r in faults for d in r.detections if d.first is not None] + [40])
    colours = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
               "#17becf", "#393b79"]  # fmt: skip

    def x(level: int) -> float:
        return left + 40 + level * (width - left - 200) / 2

    def y(minutes: float) -> float:
        return height - bottom - minutes / (ceiling * 1.1) * (height - bottom - top)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" '
        'font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{width / 2}" y="18" text-anchor="middle">Minutes (×{ROWS_PER_STEP} rows) to the first firing '
        "of an alert naming the fault, 100 % of rows (median over models)</text>",
        f'<line x1="{left}" y1="{height - bottom}" x2="{width - 150}" y2="{height - bottom}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{height - bottom}" stroke="black"/>',
    ]
    for level, name in enumerate(SIZE_NAMES):
        parts.append(f'<text x="{x(level)}" y="{height - bottom + 18}" text-anchor="middle">{name}</text>')
    for tick in range(0, int(ceiling * 1.1) + 1, max(5, int(ceiling / 6) // 5 * 5 or 5)):
        parts.append(f'<text x="{left - 6}" y="{y(tick) + 4}" text-anchor="end">{tick}</text>')
        parts.append(f'<line x1="{left}" y1="{y(tick)}" x2="{width - 150}" y2="{y(tick)}" stroke="#eee"/>')
    drawn = 0
    for fault in keys:
        points = []
        for level in range(3):
            found = [d.first for r in _cell(faults, fault.key, level, 1.0) for d in r.detections]
            if found:
                fired = sorted(f for f in found if f is not None)
                value = fired[len(fired) // 2] if len(fired) * 2 > len(found) else None
                points.append((x(level), y(value) if value is not None else y(ceiling * 1.08), value is None))
        if not points:
            continue
        colour = colours[drawn % len(colours)]
        parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="2" points="'
                     + " ".join(f"{px:.1f},{py:.1f}" for px, py, _ in points) + '"/>')  # fmt: skip
        for px, py, missed in points:
            fill = "white" if missed else colour
            parts.append(f'<circle cx="{px:.1f}" cy="{py:.1f}" r="4" fill="{fill}" stroke="{colour}"/>')
        parts.append(f'<text x="{width - 140}" y="{top + 16 * drawn + 10}" fill="{colour}">{fault.key}</text>')
        drawn += 1
    parts.append(f'<text x="{width - 140}" y="{top + 16 * drawn + 20}">open circle: not fired</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
