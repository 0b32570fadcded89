"""The report: docs/benchmarks.md, generated from one run's measurements (never edited by hand)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .config import (
    FEEDBACK_CONNECTIONS,
    FEEDBACK_DATABASES,
    FEEDBACK_ITEMS,
    FEEDBACK_MODEL,
    FEEDBACK_PREDICT_ROWS,
    FEEDBACK_PREDICTIONS,
    LOG_COST_SCENARIOS,
    MLSERVER_REFERENCE,
    SCENARIOS,
    TARGETS,
    VARIANT_BY_KEY,
    VARIANTS,
    Targets,
)
from .machine import Machine
from .results import FeedbackResult, FloorResult, ModelQuality, Point

NA = "—"
PASS, FAIL, UNKNOWN = "pass", "**FAIL**", "n/a (not measured)"


@dataclass(frozen=True)
class Run:
    machine: Machine
    command: str
    duration_s: float
    warmup_s: float
    points: list[Point]
    floor: list[FloorResult]
    settings_support: dict[str, bool] = field(default_factory=dict)
    process_counts: dict[str, int] = field(default_factory=dict)
    load_after: str = ""
    repeats: int = 1
    feedback: list[FeedbackResult] = field(default_factory=list)
    quality: list[ModelQuality] = field(default_factory=list)


@dataclass(frozen=True)
class Target:
    name: str
    required: str
    measured: str
    status: str


# ---------------------------------------------------------------- formatting


def number(value: float | None, digits: int = 0) -> str:
    return NA if value is None else f"{value:,.{digits}f}"


def ratio(value: float | None) -> str:
    return NA if value is None else f"{value:.2f}x"


def percent(value: float | None) -> str:
    return NA if value is None else f"{value:+.1f} %"


def table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: int = 0) -> str:
    """A Markdown table; with `right` > 0, the columns from index `right` on are right-aligned."""
    align = ["---:" if 0 < right <= i else "---" for i in range(len(headers))]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def divide(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


# ---------------------------------------------------------------- lookups


def find(points: Sequence[Point], variant: str, model: str, scenario: str) -> Point | None:
    """The successfully measured point, if any."""
    for point in points:
        if point.ok and (point.variant.key, point.model, point.scenario.key) == (variant, model, scenario):
            return point
    return None


def req_per_s(points: Sequence[Point], variant: str, model: str, scenario: str) -> float | None:
    point = find(points, variant, model, scenario)
    return None if point is None or point.wrk is None else point.wrk.req_per_s


def models_of(points: Sequence[Point]) -> list[str]:
    return list(dict.fromkeys(p.model for p in points))


# ---------------------------------------------------------------- tables


def model_table(points: Sequence[Point], model: str) -> str:
    rows = []
    for point in points:
        if point.model != model:
            continue
        head = [point.variant.label, point.scenario.label]
        if point.wrk is None:
            rows.append([*head, *([NA] * 8)])
            continue
        w = point.wrk
        errors = str(w.errors) if not w.errors else f"{w.errors} (non-2xx {w.non_2xx}, socket {w.errors - w.non_2xx})"
        rows.append(
            [
                *head,
                number(w.req_per_s),
                number(point.rows_per_s),
                number(w.p50_ms, 2),
                number(w.p99_ms, 2),
                ratio(point.tail_ratio),
                errors,
                number(point.cpu_ms_per_request, 2),
                number(point.rss_mb),
            ]
        )
    headers = ["variant", "scenario", "req/s", "rows/s", "p50 ms", "p99 ms", "p99/p50", "errors", "server CPU ms/req"]
    text = table([*headers, "RSS MB"], rows)
    failures = [p for p in points if p.model == model and p.error]
    if failures:
        text += "\n\n" + "\n".join(
            f"- not measured, {p.variant.label}, {p.scenario.label}: {p.error}" for p in failures
        )
    return text


def floor_table(floor: Sequence[FloorResult]) -> str:
    return table(
        ["model", "rows", "BLAS threads", "median µs/call", "p90 µs/call", "calls", "ceiling calls/s (1/median)"],
        [
            [
                f.model,
                str(f.rows),
                str(f.blas_threads),
                number(f.median_us, 1),
                number(f.p90_us, 1),
                number(f.calls),
                number(1e6 / f.median_us),
            ]
            for f in floor
        ],
    )


def pair_table(quality: Sequence[ModelQuality], floor: Sequence[FloorResult], points: Sequence[Point]) -> str:
    """Flat against hierarchical on the same classes: accuracy, the in-process cost per row, served rows/s."""
    counts = sorted({f.rows for f in floor})
    served = [s for s in SCENARIOS if s.rows > 1]
    rows = []
    for q in quality:
        per_row = []
        for count in counts:
            found = [f for f in floor if f.model == q.model and f.rows == count]
            per_row.append(number(min(f.median_us for f in found) / count, 1) if found else NA)
        rows_per_s = [
            number(None if (r := req_per_s(points, "default", q.model, s.key)) is None else r * s.rows) for s in served
        ]
        levels = ", ".join(f"{a:.3f}" for a in q.per_level_accuracy) if q.per_level_accuracy else NA
        rows.append([q.model, f"{q.accuracy:.3f}", f"{q.macro_f1:.3f}", levels, *per_row, *rows_per_s])
    return table(
        ["model", "validation accuracy", "macro-F1", "accuracy per level",
         *[f"floor µs/row, {c} rows" for c in counts], *[f"service rows/s, {s.label}" for s in served]],
        rows,
    )  # fmt: skip


def baseline_table(points: Sequence[Point]) -> str:
    rows = []
    for model in models_of(points):
        for scenario in SCENARIOS:
            base = req_per_s(points, "baseline", model, scenario.key)
            one = req_per_s(points, "default", model, scenario.key)
            two = req_per_s(points, "workers2", model, scenario.key)
            if base is None and one is None and two is None:
                continue
            rows.append(
                [model, scenario.label, number(one), number(two), number(base), ratio(divide(one, base)),
                 ratio(divide(two, base))]
            )  # fmt: skip
    return table(
        ["model", "scenario", "service 1 worker req/s", "service 2 workers req/s", "FastAPI req/s",
         "1 worker / FastAPI", "2 workers / FastAPI"],
        rows,
    )  # fmt: skip


def mlserver_table(points: Sequence[Point]) -> str:
    rows = []
    for ref in MLSERVER_REFERENCE:
        scenario = next(s for s in SCENARIOS if s.key == ref.scenario)
        one = req_per_s(points, "default", ref.model, ref.scenario)
        two = req_per_s(points, "workers2", ref.model, ref.scenario)
        rows.append(
            [ref.model, scenario.label, number(ref.req_per_s), number(one), ratio(divide(one, ref.req_per_s)),
             number(two), ratio(divide(two, ref.req_per_s))]
        )  # fmt: skip
    return table(
        ["model", "scenario", "MLServer req/s (reference)", "service 1 worker req/s", "ratio",
         "service 2 workers req/s", "ratio"],
        rows,
    )  # fmt: skip


def on_off_table(points: Sequence[Point], off_variant: str, what: str) -> str:
    """Default (feature on) against `off_variant`, per model and scenario both were measured on."""
    rows = []
    for model in models_of(points):
        for scenario in SCENARIOS:
            on = req_per_s(points, "default", model, scenario.key)
            off = req_per_s(points, off_variant, model, scenario.key)
            if on is None or off is None:
                continue
            change = divide(on - off, off)
            rows.append(
                [model, scenario.label, number(on), number(off), ratio(divide(on, off)),
                 percent(None if change is None else 100 * change)]
            )  # fmt: skip
    return table(
        ["model", "scenario", f"{what} on req/s", f"{what} off req/s", "on / off", f"req/s change with {what} on"],
        rows,
    )


def feedback_table(feedback: Sequence[FeedbackResult]) -> str:
    rows = []
    for f in feedback:
        head = [f"{FEEDBACK_DATABASES.get(f.database, f.database)} {f.version}".strip()]
        if not f.ok:
            rows.append([*head, *([NA] * 11)])
            continue
        errors = str(f.failed_requests + f.item_errors)
        if f.failed_requests or f.item_errors:
            errors += f" (failed requests {f.failed_requests}, refused items {f.item_errors})"
        rows.append(
            [
                *head,
                number(f.items_per_s),
                number(f.req_per_s, 1),
                number(f.p50_ms, 1),
                number(f.p99_ms, 1),
                errors,
                number(f.fresh_items),
                number(f.relabel_items),
                number(f.server_cpu_ms_per_request, 1),
                number(f.database_cpu_ms_per_request, 1) if f.database != "sqlite" else "in the server's",
                number(f.client_cpu_ms_per_request, 1),
                number(f.rss_mb),
            ]
        )
    text = table(
        ["database", "items/s", "req/s", "p50 ms", "p99 ms", "errors", "first labels", "relabels",
         "server CPU ms/req", "database CPU ms/req", "client CPU ms/req", "server RSS MB"],
        rows,
    )  # fmt: skip
    problems = [f for f in feedback if f.error or f.first_error]
    if problems:
        text += "\n\n" + "\n".join(
            f"- {FEEDBACK_DATABASES.get(f.database, f.database)}: "
            + (f"not measured: {f.error}" if f.error else f"first error: {f.first_error}")
            for f in problems
        )
    return text


def feedback_method(feedback: Sequence[FeedbackResult], run: Run) -> str:
    """How the feedback figures were taken, with this run's own numbers."""
    created = next((f for f in feedback if f.ok), None)
    written = (
        ""
        if created is None or created.write_wait_s is None
        else f" (this run: {created.predictions:,} predictions readable {created.write_wait_s:.1f} s after the first "
        f"/predict, on {FEEDBACK_DATABASES.get(created.database, created.database)})"
    )
    requests = -(-FEEDBACK_PREDICTIONS // FEEDBACK_PREDICT_ROWS)
    return (
        f"Per database, one `bentoml serve` (1 worker, {FEEDBACK_MODEL} only, prediction log on: the `default` "
        "service settings), with no other bench server running: SQLite is the default file in the server's data "
        "folder (WAL, `synchronous=FULL`), PostgreSQL a throwaway local cluster (`bench/postgres.py`, fsync on, "
        f"default `synchronous_commit`). First {FEEDBACK_PREDICTIONS:,} predictions are created "
        f"({FEEDBACK_PREDICT_ROWS:,}-row /predict requests of held-out rows) and waited for until "
        "`GET /predictions/{last id}` answers 200" + written + ": labels usually arrive long after their prediction, "
        "so the run measures storing labels, not the wait for the log's writer. "
        f"Then {FEEDBACK_CONNECTIONS} client connections (threads of the harness, keep-alive, closed loop) post "
        f"pre-encoded bodies of {FEEDBACK_ITEMS} label items each, one unmeasured {run.warmup_s:.0f} s warm-up, then "
        f"the measured {run.duration_s:.0f} s. The items of one body label predictions of "
        f"{min(FEEDBACK_ITEMS, requests)} different requests (row by row across the {requests} created). Each item "
        "first labels a prediction with its true label (first labels); once every created prediction is labelled, "
        "the bodies cycle with the other class, then the true one again (relabels: an update of the current label "
        "plus a history row). items/s counts the items accepted in 200 answers; p50/p99 are per request, measured "
        "by the client; server CPU is the server tree's, database CPU PostgreSQL's processes' (SQLite runs inside "
        "the server), client CPU the harness's own, all per request."
    )


def tail_table(points: Sequence[Point]) -> str:
    rows = []
    for variant in VARIANTS:
        for model in models_of(points):
            cells = [find(points, variant.key, model, s.key) for s in SCENARIOS]
            if all(c is None for c in cells):
                continue
            rows.append([variant.label, model, *(NA if c is None else ratio(c.tail_ratio) for c in cells)])
    return table(["variant", "model", *(s.label for s in SCENARIOS)], rows)


# ---------------------------------------------------------------- targets


def status(ok: bool | None) -> str:
    return UNKNOWN if ok is None else PASS if ok else FAIL


def targets(points: Sequence[Point], feedback: Sequence[FeedbackResult] = (), goals: Targets = TARGETS) -> list[Target]:
    found: list[Target] = []
    reference = next(r for r in MLSERVER_REFERENCE if (r.model, r.scenario) == ("breast_cancer", "1x16"))
    service = req_per_s(points, "default", "breast_cancer", "1x16")
    vs_ml = divide(service, reference.req_per_s)
    found.append(
        Target(
            "breast_cancer, 1 row, 16 conns: service 1 worker vs MLServer",
            f"≥ {goals.mlserver_ratio:.1f}x ({reference.req_per_s:,.0f} req/s)",
            NA if vs_ml is None else f"{service:,.0f} req/s = {vs_ml:.2f}x",
            status(None if vs_ml is None else vs_ml >= goals.mlserver_ratio),
        )
    )
    base = req_per_s(points, "baseline", "breast_cancer", "1x16")
    vs_base = divide(service, base)
    found.append(
        Target(
            "breast_cancer, 1 row, 16 conns: service 1 worker vs FastAPI baseline",
            f"≥ {goals.baseline_ratio:.1f}x",
            NA if vs_base is None else f"{service:,.0f} vs {base:,.0f} req/s = {vs_base:.2f}x",
            status(None if vs_base is None else vs_base >= goals.baseline_ratio),
        )
    )
    on = req_per_s(points, "default", "digits", "1x16")
    off = req_per_s(points, "batching_off", "digits", "1x16")
    batching = divide(on, off)
    found.append(
        Target(
            "digits, 1 row, 16 conns: batching on vs off",
            f"≥ {goals.batching_ratio:.1f}x",
            NA if batching is None else f"{on:,.0f} vs {off:,.0f} req/s = {batching:.2f}x",
            status(None if batching is None else batching >= goals.batching_ratio),
        )
    )
    found += baseline_targets(points, goals)
    found.append(workers_target(points))
    found.append(tail_target(points, goals))
    found.append(monitoring_target(points, goals))
    found.append(log_target(points, goals))
    found += feedback_targets(feedback, goals)
    return found


def tail_target(points: Sequence[Point], goals: Targets) -> Target:
    measured = [(p, p.tail_ratio) for p in points if p.ok and not p.variant.baseline and p.tail_ratio is not None]
    name, required = "p99 / p50 at every service point", f"≤ {goals.max_p99_over_p50:.0f}x"
    if not measured:
        return Target(name, required, NA, UNKNOWN)
    worst, worst_ratio = max(measured, key=lambda item: item[1] or 0.0)
    over = sum(1 for _, r in measured if r is not None and r > goals.max_p99_over_p50)
    text = (
        f"worst {ratio(worst_ratio)} ({worst.variant.label}, {worst.model}, {worst.scenario.label}); "
        f"{over} of {len(measured)} points over"
    )
    return Target(name, required, text, status(over == 0))


def baseline_targets(points: Sequence[Point], goals: Targets) -> list[Target]:
    """breast_cancer against the FastAPI baseline: rows/s at 64 rows x 4 connections, p50 at 1 row x 1."""
    service, base = find(points, "default", "breast_cancer", "64x4"), find(points, "baseline", "breast_cancer", "64x4")
    rows = divide(service.rows_per_s if service else None, base.rows_per_s if base else None)
    found = [
        Target(
            "breast_cancer, 64 rows, 4 conns: service 1 worker vs FastAPI baseline, rows/s",
            f"≥ {goals.baseline_rows_ratio_64x4:.1f}x",
            NA if rows is None or service is None or base is None
            else f"{service.rows_per_s:,.0f} vs {base.rows_per_s:,.0f} rows/s = {rows:.2f}x",
            status(None if rows is None else rows >= goals.baseline_rows_ratio_64x4),
        )
    ]  # fmt: skip
    service, base = find(points, "default", "breast_cancer", "1x1"), find(points, "baseline", "breast_cancer", "1x1")
    service_p50, base_p50 = _p50(service), _p50(base)
    p50 = divide(service_p50, base_p50)
    found.append(
        Target(
            "breast_cancer, 1 row, 1 conn: service p50 vs FastAPI baseline p50",
            f"≤ {goals.max_p50_over_baseline_1x1:.1f}x",
            NA if p50 is None else f"{service_p50:.2f} vs {base_p50:.2f} ms = {p50:.2f}x",
            status(None if p50 is None else p50 <= goals.max_p50_over_baseline_1x1),
        )
    )
    return found


def _p50(point: Point | None) -> float | None:
    return point.wrk.p50_ms if point is not None and point.wrk is not None else None


def workers_target(points: Sequence[Point]) -> Target:
    """Two workers are never slower than one, at any point both measured."""
    ratios = []
    for point in points:
        if point.ok and point.variant.key == "workers2":
            one = req_per_s(points, "default", point.model, point.scenario.key)
            ratio = divide(req_per_s(points, "workers2", point.model, point.scenario.key), one)
            if ratio is not None:
                ratios.append((ratio, f"{point.model} {point.scenario.key}"))
    worst = min(ratios, default=None)
    return Target(
        "2 workers vs 1 worker, every point",
        "≥ 1.0x",
        NA if worst is None else f"lowest {worst[0]:.2f}x ({worst[1]})",
        status(None if worst is None else worst[0] >= 1.0),
    )


def monitoring_target(points: Sequence[Point], goals: Targets) -> Target:
    return cost_target(
        points, "monitoring_off", "monitoring on vs off, every point measured both ways", goals.max_monitoring_cost
    )


def log_target(points: Sequence[Point], goals: Targets) -> Target:
    name = f"prediction log on vs off, {' and '.join(LOG_COST_SCENARIOS)} points"
    return cost_target(points, "log_off", name, goals.max_log_cost, LOG_COST_SCENARIOS)


def cost_target(
    points: Sequence[Point], off_variant: str, name: str, max_cost: float, scenarios: Sequence[str] | None = None
) -> Target:
    """How many fewer req/s `default` (the feature on) answers than `off_variant`, at the worst point measured both
    ways (among `scenarios`, when given)."""
    required = f"≤ {100 * max_cost:.0f} % fewer req/s"
    costs = []
    for off_point in (p for p in points if p.ok and p.variant.key == off_variant):
        if scenarios is not None and off_point.scenario.key not in scenarios:
            continue
        on = req_per_s(points, "default", off_point.model, off_point.scenario.key)
        off = off_point.wrk.req_per_s if off_point.wrk else None
        cost = None if on is None or off is None else divide(off - on, off)
        if cost is not None:
            costs.append((off_point, cost))
    if not costs:
        return Target(name, required, NA, UNKNOWN)
    worst, worst_cost = max(costs, key=lambda item: item[1])
    over = sum(1 for _, c in costs if c > max_cost)
    text = (
        f"worst {100 * worst_cost:.1f} % fewer ({worst.model}, {worst.scenario.label}); "
        f"{over} of {len(costs)} points over"
    )
    return Target(name, required, text, status(over == 0))


def feedback_targets(feedback: Sequence[FeedbackResult], goals: Targets) -> list[Target]:
    """One row per database, measured or not: a skipped database shows as not applicable, not as missing."""
    found = []
    for database, label in FEEDBACK_DATABASES.items():
        result = next((f for f in feedback if f.database == database), None)
        name = f"POST /feedback, {FEEDBACK_ITEMS}-item label batches, {label}"
        required = f"≥ {goals.min_feedback_items_per_s:,.0f} items/s"
        rate = None if result is None else result.items_per_s
        if result is None or rate is None:
            found.append(Target(name, required, NA, UNKNOWN))
            continue
        text = f"{rate:,.0f} items/s ({number(result.req_per_s, 1)} req/s; {label_kinds(result)})"
        found.append(Target(name, required, text, status(rate >= goals.min_feedback_items_per_s)))
    return found


def label_kinds(result: FeedbackResult) -> str:
    """Whether the measured items labelled predictions for the first time, relabelled them, or both."""
    if not result.relabel_items:
        return "all first labels"
    if not result.fresh_items:
        return "all relabels"
    return f"{result.fresh_items:,} first labels, {result.relabel_items:,} relabels"


def targets_table(found: Sequence[Target]) -> str:
    return table(
        ["target", "required", "measured", "result"], [[t.name, t.required, t.measured, t.status] for t in found]
    )


# ---------------------------------------------------------------- the document


SWITCHES = (("monitoring", "monitoring_off"), ("batching", "batching_off"), ("log_sample_rate", "log_off"))


def notes(run: Run) -> list[str]:
    found = [
        "wrk is closed loop: each connection sends its next request only when the previous answer has arrived, so "
        "its percentiles are not corrected for coordinated omission. A server stall delays the requests that would "
        "have been sent during it, which are then never counted as slow: a stall shows as p99 far above p50, and "
        "the true tail is worse than the p99 printed. `wrk2` (constant rate, corrected) is not packaged by Debian "
        "bookworm, so it is not used.",
        "The load generator runs on the same machine as the server (2 cores, shared with other work): wrk's own "
        "CPU competes with the server's. Absolute figures are therefore lower and noisier than with a separate "
        "client; the ratios compare points of the same run.",
        "Server CPU is user + system seconds of the whole server process tree (arbiter and workers, via psutil) "
        "over the measured run, divided by the requests wrk completed; RSS is the sum over the tree after the run.",
        f"Each point: one unmeasured {run.warmup_s:.0f} s wrk warm-up, then the measured {run.duration_s:.0f} s "
        "run; threads = min(2, connections), every request the same JSON body "
        '(`{"model": name, "instances": rows}`, held-out rows).',
        f"All variant servers run at once and each (model, scenario) is measured on every variant back to back, "
        f"{run.repeats} time(s), variants alternating; the run with the median req/s is reported. Ratios thus "
        "compare figures taken minutes apart, not a whole matrix apart, on a machine whose load drifts.",
        "The FastAPI baseline answers the full score matrix (`task.score(X)`; flat_1000: 1,000 probabilities per "
        "row) while the service answers decisions (label, confidence, id per row); its flat_1000 figures include "
        "that larger response.",
        "Every server ran from a copy of service/, models/ and bench/ taken when the run started (`.bench/src/`), "
        "so all variants measured the same code, the tree of the git line above.",
        "The MLServer figures are constants (issue #4 reference, measured earlier on this machine), not part of "
        "this run.",
    ]
    served = [path for path in run.machine.changed if path.startswith(("service/", "models/"))]
    if served:
        found.append(
            "The measured tree differed from its commit in the served code (" + ", ".join(served) + "): the "
            "service figures are of that working tree, not of the commit alone."
        )
    found += blas_notes(run.floor)
    for name, off in SWITCHES:
        if run.settings_support and not run.settings_support.get(name, False):
            found.append(
                f"`CLF_{name.upper()}` was passed to the servers, but service/settings.py of the measured tree does "
                f"not define it, so the service ignored it: the '{VARIANT_BY_KEY[off].label}' variant ran with the "
                "default, and its on/off ratios measure only run-to-run noise."
            )
    if any(not p.variant.baseline for p in run.points):
        found.append(
            "Every service server wrote its prediction log to a SQLite file of its own (`CLF_DATA_DIR` in its folder "
            "of `.bench/servers/`, WAL, `synchronous=FULL`); all variants but 'prediction log off' log every request "
            "(`CLF_LOG_SAMPLE_RATE=1`, the default), with its inputs."
        )
    if run.process_counts:
        counts = ", ".join(f"{v.label}: {run.process_counts[v.key]}" for v in VARIANTS if v.key in run.process_counts)
        found.append(f"Processes in each server's tree once ready (arbiter + workers): {counts}.")
    return found


def blas_notes(floor: Sequence[FloorResult]) -> list[str]:
    """Where the multi-threaded BLAS pool made a model call much slower than one thread did."""
    found = []
    for f in floor:
        single = next((g for g in floor if (g.model, g.rows, g.blas_threads) == (f.model, f.rows, 1)), None)
        if f.blas_threads > 1 and single is not None and f.median_us > 2 * single.median_us:
            found.append(
                f"Raw floor, {f.model} with {f.rows} rows: {f.median_us:,.0f} µs per call with the "
                f"{f.blas_threads}-thread BLAS pool the servers run with, {single.median_us:,.0f} µs with one thread: "
                "on this busy 2-core machine the BLAS threads wait for a core. The servers (service and baseline) "
                "run with the default pool."
            )
    return found


def render(run: Run) -> str:
    points = run.points
    parts = [
        "# Benchmarks",
        "Generated by `python -m bench` (`make bench`) from one run; do not edit by hand, re-run it. "
        "`bench/` holds the harness, `bench/config.py` the scenarios, variants, reference figures and targets.",
        "## Machine and command",
        table(["what", "value"], [*run.machine.rows(), ("load average after the run", run.load_after or NA)]),
        f"Command: `{run.command}`",
        "## Targets",
        targets_table(targets(points, run.feedback)),
    ]
    for model in models_of(points):
        parts += [f"## {model}", model_table(points, model)]
    parts += [
        "## Feedback (`POST /feedback`)",
        feedback_method(run.feedback, run) if run.feedback else "(not measured in this run)",
    ]
    if run.feedback:
        parts.append(feedback_table(run.feedback))
    parts += [
        "## Raw floor (in-process `task.score`, no HTTP)",
        "Median of single in-process calls of `load_model(tag).task.score(X)` (flat models: `predict_proba`; "
        "hierarchical: the greedy path, one classifier per level), measured before any server starts; with the BLAS "
        "thread pool as the servers have it and, when that is more than one thread, again limited to one.",
        floor_table(run.floor) if run.floor else "(not measured in this run)",
    ]
    if run.quality:
        parts += [
            "## Flat or hierarchical, on the same 1,000 classes",
            "`flat_1000` (one linear discriminant analysis over 1,000 classes) and `hier_40x25` (one per node: 40 "
            "groups, then 25 classes per group) trained and validated on the same synthetic rows. Accuracy is "
            "measured at registration on the held-out rows; the cost per row is the raw floor's fastest median above "
            "divided by the rows; rows/s is the service's (1 worker).",
            pair_table(run.quality, run.floor, points),
        ]
    if not points:
        return "\n\n".join([*parts, "## Notes", "\n".join(f"- {note}" for note in notes(run))]) + "\n"
    parts += [
        "## Ratios",
        "### Service vs FastAPI baseline (req/s)",
        baseline_table(points),
        "### Service vs MLServer reference (req/s)",
        mlserver_table(points),
        "### Batching on vs off (1 worker)",
        on_off_table(points, "batching_off", "batching"),
        "### Monitoring on vs off (1 worker)",
        on_off_table(points, "monitoring_off", "monitoring"),
        "### Prediction log on vs off (1 worker)",
        on_off_table(points, "log_off", "prediction log"),
        "### p99 / p50 per scenario",
        tail_table(points),
        "## Notes",
        "\n".join(f"- {note}" for note in notes(run)),
    ]
    return "\n\n".join(parts) + "\n"
