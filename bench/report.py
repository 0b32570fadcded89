"""The report: docs/benchmarks.md, generated from one run's measurements (never edited by hand)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from .config import (
    CATALOG_MODELS,
    FEEDBACK_CONNECTIONS,
    FEEDBACK_DATABASES,
    FEEDBACK_ITEMS,
    FEEDBACK_MODEL,
    FEEDBACK_PREDICT_ROWS,
    FEEDBACK_PREDICTIONS,
    LOG_TWINS,
    MLSERVER_SCENARIO,
    PEER_SCENARIOS,
    SCENARIO_BY_KEY,
    SCENARIOS,
    TARGETS,
    V2_SCENARIOS,
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
    startup_s: float | None = None  # median `make serve`, installed: `models ensure` + serve to /readyz 200


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
            rows.append([*head, *([NA] * 9)])
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
                number(w.p999_ms, 2),
                ratio(point.tail_ratio),
                errors,
                number(point.cpu_ms_per_request, 2),
                number(point.rss_mb),
            ]
        )
    headers = ["variant", "scenario", "req/s", "rows/s", "p50 ms", "p99 ms", "p99.9 ms", "p99/p50", "errors",
               "server CPU ms/req"]  # fmt: skip
    text = table([*headers, "RSS MB"], rows)
    failures = [p for p in points if p.model == model and p.error]
    if failures:
        text += "\n\n" + "\n".join(
            f"- not measured, {p.variant.label}, {p.scenario.label}: {p.error}" for p in failures
        )
    return text


def floor_table(floor: Sequence[FloorResult]) -> str:
    return table(
        [
            "model",
            "call",
            "rows",
            "BLAS threads",
            "median µs/call",
            "p90 µs/call",
            "calls",
            "ceiling calls/s (1/median)",
        ],
        [
            [
                f.model,
                f"`{f.call}`",
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
            found = [f for f in floor if f.model == q.model and f.rows == count and f.call == "task.score"]
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


def peer_variants(points: Sequence[Point]) -> list[str]:
    return [v.key for v in VARIANTS if v.peer is not None and any(p.variant.key == v.key for p in points)]


def peers_table(points: Sequence[Point]) -> str:
    """The service (1 worker) against each peer measured: the peer's req/s, rows/s for several rows, and the ratio."""
    keys = peer_variants(points)
    rows = []
    for model in models_of(points):
        for scenario in SCENARIOS:
            one = req_per_s(points, "default", model, scenario.key)
            cells = []
            for key in keys:
                peer = req_per_s(points, key, model, scenario.key)
                cells += [number(peer), ratio(divide(one, peer))]
            if one is None and all(req_per_s(points, k, model, scenario.key) is None for k in keys):
                continue
            rows.append([model, scenario.label, number(one), *cells])
    headers = ["model", "scenario", "service 1 worker req/s"]
    for key in keys:
        headers += [f"{VARIANT_BY_KEY[key].label} req/s", "service / it"]
    return table(headers, rows)


def what_table(keys: Sequence[str]) -> str:
    """What each peer does and does not do, next to the service."""
    service = [
        "service (`default`)",
        "the linear fold (`service/classifiers/linear.py`), forests tree by tree (`service/classifiers/forest.py`)",
        "schema, widths, finite values, per-model limits", "on (Prometheus metrics, drift, estimated accuracy)",
        "on (every request, inputs included, SQLite)", "on (adaptive, service/batching.py)",
        "decisions per row (label, confidence, id)", "BentoML's uvicorn, httptools, uvloop",
    ]  # fmt: skip
    rows = [service]
    for key in keys:
        peer = VARIANT_BY_KEY[key].peer
        if peer is None:
            continue
        rows.append(
            [f"{VARIANT_BY_KEY[key].label} (`{key}`)", peer.work, peer.validation, "none", "none", peer.batching,
             peer.answer, peer.http]
        )  # fmt: skip
    headers = ["server", "work", "validation", "monitoring", "prediction log", "batching", "response", "HTTP"]
    return table(headers, rows)


def on_off_table(points: Sequence[Point], off_variant: str, what: str, on_variant: str = "default") -> str:
    """`on_variant` (feature on) against `off_variant`, per model and scenario both were measured on."""
    rows = []
    for model in models_of(points):
        for scenario in SCENARIOS:
            on = req_per_s(points, on_variant, model, scenario.key)
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


def met(ok: bool | None) -> str:
    return NA if ok is None else "met" if ok else "**not met**"


def v2_table(points: Sequence[Point], goals: Targets = TARGETS) -> str:
    """Issue 22's comparison per catalog model at V2_SCENARIOS: the service's V2 route (`v2`) against MLServer on
    the same V2 body, and against the service's own /predict (`default`) on the same rows."""
    rows = []
    for model in CATALOG_MODELS:
        for key in V2_SCENARIOS:
            v2, mlserver, predict = (find(points, k, model, key) for k in ("v2", "mlserver", "default"))
            if v2 is None and mlserver is None and predict is None:
                continue
            to_mlserver, to_predict = divide(rate(v2), rate(mlserver)), divide(rate(v2), rate(predict))
            least_mlserver, least_predict = v2_minimums(goals)[key]
            rows.append(
                [model, SCENARIO_BY_KEY[key].label,
                 number(rate(v2)), number(None if v2 is None else v2.rows_per_s),
                 number(rate(mlserver)), number(None if mlserver is None else mlserver.rows_per_s),
                 ratio(to_mlserver), f"≥ {least_mlserver:.1f}x",
                 met(None if to_mlserver is None else to_mlserver >= least_mlserver),
                 number(rate(predict)), ratio(to_predict), f"≥ {least_predict:.2f}x",
                 met(None if to_predict is None else to_predict >= least_predict),
                 *(number(None if p is None else p.cpu_ms_per_request, 2) for p in (v2, predict, mlserver))]
            )  # fmt: skip
    headers = ["model", "scenario", "V2 req/s", "V2 rows/s", "MLServer req/s", "MLServer rows/s", "V2 / MLServer",
               "target", "result", "/predict req/s", "V2 / /predict", "target", "result",
               "server CPU ms/req: V2", "/predict", "MLServer"]  # fmt: skip
    return table(headers, rows)


def rate(point: Point | None) -> float | None:
    """req/s of a measured point."""
    return None if point is None or point.wrk is None else point.wrk.req_per_s


def v2_text(goals: Targets = TARGETS) -> str:
    return (
        "The service's `POST /v2/models/<model>/infer` (`v2`: 1 worker, monitoring and prediction log on, the "
        "`default` settings) and MLServer's scikit-learn runtime (`mlserver`) sent the same bytes: one FP64 tensor "
        "`[rows, features]` of held-out rows, `predict_proba` asked as the output; both answers were checked "
        "against the estimator's `predict_proba` to 1e-9 before each point. `/predict` is the service's `default` "
        "variant on the JSON body of the same rows. Targets (issue 22): the V2 route at ≥ "
        f"{goals.v2_mlserver_ratio:.1f}x MLServer's req/s at 1 row x 16 and ≥ {goals.v2_mlserver_rows_ratio:.1f}x "
        "its rows/s at 64 rows x 4 (one request holds a fixed number of rows, so the two ratios are the same "
        f"quotient), and within {100 * (1 - goals.v2_predict_ratio):.0f} % of /predict's req/s on the same rows "
        f"(≥ {goals.v2_predict_ratio:.2f}x). On this shared machine req/s swing from run to run; the server CPU "
        "per request (the whole process tree's, as in the model tables) is the steadier comparison of the routes."
    )


def tail_table(points: Sequence[Point]) -> str:
    rows = []
    for variant in VARIANTS:
        for model in models_of(points):
            cells = [find(points, variant.key, model, s.key) for s in SCENARIOS]
            if all(c is None for c in cells):
                continue
            rows.append([variant.label, model, *(NA if c is None else tails(c) for c in cells)])
    return table(["variant", "model", *(s.label for s in SCENARIOS)], rows)


def tails(point: Point) -> str:
    """p99 / p50 and p99.9 / p50 of a point."""
    if point.wrk is None or point.wrk.p50_ms <= 0:
        return NA
    return f"{ratio(point.tail_ratio)} / {ratio(point.wrk.p999_ms / point.wrk.p50_ms)}"


# ---------------------------------------------------------------- targets


def status(ok: bool | None) -> str:
    return UNKNOWN if ok is None else PASS if ok else FAIL


def targets(
    points: Sequence[Point], feedback: Sequence[FeedbackResult] = (), goals: Targets = TARGETS,
    startup_s: float | None = None,
) -> list[Target]:  # fmt: skip
    """Issue 20's targets, each with what it requires, what this run measured and whether it is met."""
    found = [tail_target(points, goals), log_target(points, goals)]
    found += [
        peer_target(points, peer, scenario, minimum)
        for peer, minimum in (("fastapi_fold", goals.fold_ratio), ("fastapi_proba", goals.proba_ratio))
        for scenario in PEER_SCENARIOS
    ]
    found.append(peer_target(points, "mlserver", MLSERVER_SCENARIO, goals.mlserver_ratio))
    found.append(floor_target(points))
    found.append(startup_target(startup_s, goals))
    found += feedback_targets(feedback, goals)
    found += v2_targets(points, goals)
    return found


def v2_minimums(goals: Targets) -> dict[str, tuple[float, float]]:
    """Issue 22's minimum ratios of the service's V2 route per scenario: (to MLServer, to the service's /predict)."""
    return {
        "1x16": (goals.v2_mlserver_ratio, goals.v2_predict_ratio),
        "64x4": (goals.v2_mlserver_rows_ratio, goals.v2_predict_ratio),
    }


def v2_targets(points: Sequence[Point], goals: Targets) -> list[Target]:
    """The V2 route (`v2`) against MLServer on the same V2 body, then against the service's own /predict."""
    minimums = v2_minimums(goals)
    found = [peer_target(points, "mlserver", s, minimums[s][0], ours="v2") for s in V2_SCENARIOS]
    return found + [peer_target(points, "default", s, minimums[s][1], ours="v2") for s in V2_SCENARIOS]


def held(points: Sequence[Point]) -> list[Point]:
    """The service points the tail and log targets hold: catalog models, log on, measured."""
    return [
        p for p in points
        if p.ok and p.variant.key in LOG_TWINS and p.model in CATALOG_MODELS and p.scenario.key in SCENARIO_BY_KEY
    ]  # fmt: skip


def tail_target(points: Sequence[Point], goals: Targets) -> Target:
    name = "p99 / p50, every catalog point, monitoring and log on (1 and 2 workers)"
    required = f"≤ {goals.max_p99_over_p50:.0f}x"
    measured = [(p, p.tail_ratio) for p in held(points) if p.tail_ratio is not None]
    if not measured:
        return Target(name, required, NA, UNKNOWN)
    worst, worst_ratio = max(measured, key=lambda item: item[1] or 0.0)
    over = sum(1 for _, r in measured if r is not None and r > goals.max_p99_over_p50)
    p999 = worst.wrk.p999_ms if worst.wrk else None
    text = (
        f"worst {ratio(worst_ratio)} ({worst.variant.label}, {worst.model}, {worst.scenario.label}; p99.9 "
        f"{number(p999, 1)} ms); {over} of {len(measured)} points over"
    )
    return Target(name, required, text, status(over == 0))


def log_target(points: Sequence[Point], goals: Targets) -> Target:
    """How many fewer req/s each log-on variant answers than its log-off twin, at the worst point."""
    name = "prediction log on vs off, every catalog point (1 and 2 workers)"
    required = f"≤ {100 * goals.max_log_cost:.0f} % fewer req/s"
    costs = []
    for on_point in held(points):
        off = req_per_s(points, LOG_TWINS[on_point.variant.key], on_point.model, on_point.scenario.key)
        on = on_point.wrk.req_per_s if on_point.wrk else None
        cost = None if on is None or off is None else divide(off - on, off)
        if cost is not None:
            costs.append((on_point, cost))
    if not costs:
        return Target(name, required, NA, UNKNOWN)
    worst, worst_cost = max(costs, key=lambda item: item[1])
    over = sum(1 for _, c in costs if c > goals.max_log_cost)
    text = (
        f"worst {100 * worst_cost:.1f} % fewer ({worst.variant.label}, {worst.model}, {worst.scenario.label}); "
        f"{over} of {len(costs)} points over"
    )
    return Target(name, required, text, status(over == 0))


def throughput(point: Point | None) -> tuple[float | None, str]:
    """req/s, or rows/s when a request carries several rows, and the unit."""
    if point is None or point.wrk is None:
        return None, ""
    return (point.rows_per_s, "rows/s") if point.scenario.rows > 1 else (point.wrk.req_per_s, "req/s")


def peer_target(points: Sequence[Point], peer: str, scenario: str, minimum: float, ours: str = "default") -> Target:
    """The service variant `ours` (1 worker, /predict by default) against `peer` on every catalog model at
    `scenario`: the lowest ratio must reach `minimum`."""
    name = f"{VARIANT_BY_KEY[ours].label} vs {VARIANT_BY_KEY[peer].label}, {SCENARIO_BY_KEY[scenario].label}"
    ratios = []
    for model in CATALOG_MODELS:
        (mine, unit), (theirs, _) = (throughput(find(points, k, model, scenario)) for k in (ours, peer))
        value = divide(mine, theirs)
        if value is not None and mine is not None and theirs is not None:
            ratios.append((value, f"{model}: {mine:,.0f} vs {theirs:,.0f} {unit} = {value:.2f}x"))
    if not ratios:
        return Target(name, f"≥ {minimum:.1f}x", NA, UNKNOWN)
    return Target(name, f"≥ {minimum:.1f}x", "; ".join(text for _, text in ratios), status(min(ratios)[0] >= minimum))


def floor_target(points: Sequence[Point]) -> Target:
    """How close the service (1 worker) comes to the bare ASGI floor at 1 row x 16: reported, not judged."""
    name = "service 1 worker vs the bare ASGI floor, 1 row, 16 conns"
    found = []
    for model in CATALOG_MODELS:
        ours, floor_rps = req_per_s(points, "default", model, "1x16"), req_per_s(points, "floor", model, "1x16")
        value = divide(ours, floor_rps)
        if value is not None and ours is not None and floor_rps is not None:
            found.append(f"{model}: {ours:,.0f} vs {floor_rps:,.0f} req/s = {value:.2f}x")
    return Target(name, "reported", "; ".join(found) or NA, "reported" if found else UNKNOWN)


def startup_target(startup_s: float | None, goals: Targets) -> Target:
    return Target(
        "installed start-up, `make serve`: `models ensure` and `bentoml serve` to `/readyz` 200 (section Start-up)",
        f"≤ {goals.max_startup_s:.0f} s",
        NA if startup_s is None else f"{startup_s:.1f} s (median)",
        status(None if startup_s is None else startup_s <= goals.max_startup_s),
    )


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
        "Server CPU is user + system seconds of the whole server process tree (arbiter, workers and their log "
        "writer processes, via psutil) over the measured run, divided by the requests wrk completed; RSS is the sum "
        "over the tree after the run.",
        f"Each point: one unmeasured {run.warmup_s:.0f} s wrk warm-up, then the measured {run.duration_s:.0f} s "
        "run; threads = min(2, connections), every request the same JSON body "
        '(`{"model": name, "instances": rows}`, held-out rows; the V2 variants the same rows as one FP64 tensor).',
        f"All variant servers run at once and each (model, scenario) is measured on every variant back to back, "
        f"{run.repeats} time(s), variants alternating; the run with the median req/s is reported. Ratios thus "
        "compare figures taken minutes apart, not a whole matrix apart, on a machine whose load drifts.",
        "Every peer answers the probability matrix (the floor a fixed one), the service decisions per row (label, "
        "confidence, id). Before each point the harness checked one answer of every server that returns "
        "probabilities (the service's /predict asked with `return_probabilities`, its V2 route's `predict_proba`) "
        "against the estimator's `predict_proba` of the same rows, to 1e-9; a server that differed was not "
        "measured. p99.9 comes from wrk's own histogram (`bench/post.lua`'s `done()`).",
        "Every server ran from a copy of service/, models/ and bench/ taken when the run started (`.bench/src/`), "
        "so all variants measured the same code, the tree of the git line above.",
    ]
    if run.machine.changed:
        found.append(
            f"The working tree was dirty when the run started ({len(run.machine.changed)} paths differ from commit "
            f"{run.machine.commit}): the figures are of that tree, not of the commit alone."
        )
    served = [path for path in run.machine.changed if path.startswith(("service/", "models/"))]
    if served:
        found.append("Of those, the served code: " + ", ".join(served) + ".")
    found += blas_notes(run.floor)
    for name, off in SWITCHES:
        if run.settings_support and not run.settings_support.get(name, False):
            found.append(
                f"`CLF_{name.upper()}` was passed to the servers, but service/settings.py of the measured tree does "
                f"not define it, so the service ignored it: the '{VARIANT_BY_KEY[off].label}' variant ran with the "
                "default, and its on/off ratios measure only run-to-run noise."
            )
    if any(p.variant.peer is None for p in run.points):
        found.append(
            "Every service server wrote its prediction log to a SQLite file of its own (`CLF_DATA_DIR` in its folder "
            "of `.bench/servers/`, WAL, `synchronous=FULL`); all variants but 'prediction log off' log every request "
            "(`CLF_LOG_SAMPLE_RATE=1`, the default), with its inputs."
        )
    if run.process_counts:
        counts = ", ".join(f"{v.label}: {run.process_counts[v.key]}" for v in VARIANTS if v.key in run.process_counts)
        found.append(f"Processes in each server's tree once ready (arbiter, workers, their log writers): {counts}.")
    return found


def blas_notes(floor: Sequence[FloorResult]) -> list[str]:
    """Where the multi-threaded BLAS pool made a model call much slower than one thread did."""
    found = []
    for f in floor:
        single = next(
            (g for g in floor if (g.model, g.rows, g.blas_threads, g.call) == (f.model, f.rows, 1, f.call)), None
        )
        if f.blas_threads > 1 and single is not None and f.median_us > 2 * single.median_us:
            found.append(
                f"Raw floor, {f.model} with {f.rows} rows: {f.median_us:,.0f} µs per call with the "
                f"{f.blas_threads}-thread BLAS pool the servers run with, {single.median_us:,.0f} µs with one thread: "
                "on this busy 2-core machine the BLAS threads wait for a core. The servers (service and peers) "
                "run with the default pool."
            )
    return found


def render(run: Run) -> str:
    points = run.points
    parts = [
        "# Benchmarks",
        "Generated by `python -m bench` (`make bench`) from one run; do not edit by hand, re-run it. "
        "`bench/` holds the harness, `bench/config.py` the scenarios, variants (the service's and the peers') and "
        "targets.",
        "## Machine and command",
        table(["what", "value"], [*run.machine.rows(), ("load average after the run", run.load_after or NA)]),
        f"Command: `{run.command}`",
        "## Targets",
        targets_table(targets(points, run.feedback, startup_s=run.startup_s)),
    ]
    if peer_variants(points):
        parts += [
            "## The peers: what each does",
            "Every peer serves the estimators the service serves (exported from the bench store), in an environment "
            "of its own installed from pinned requirements (`bench/peers/`), one worker, measured in this run "
            "alternating with the service variants.",
            what_table(peer_variants(points)),
        ]
    if any(p.variant.key == "v2" for p in points):
        parts += ["## Open Inference Protocol (V2 REST)", v2_text(), v2_table(points)]
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
        "thread pool as the servers have it and, when that is more than one thread, again limited to one. Where the "
        "service evaluates a linear model as one matrix product (`service/classifiers/linear.py`), `predict_proba` "
        "is the estimator's own call on the same rows, as the `fastapi_proba` peer makes it.",
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
        "### Service vs its peers, measured in this run (req/s)",
        peers_table(points),
        "### Batching on vs off (1 worker)",
        on_off_table(points, "batching_off", "batching"),
        "### Monitoring on vs off (1 worker)",
        on_off_table(points, "monitoring_off", "monitoring"),
        "### Prediction log on vs off (1 worker)",
        on_off_table(points, "log_off", "prediction log"),
        "### Prediction log on vs off (2 workers)",
        on_off_table(points, "workers2_log_off", "prediction log", on_variant="workers2"),
        "### p99 / p50 and p99.9 / p50 per scenario",
        tail_table(points),
        "## Notes",
        "\n".join(f"- {note}" for note in notes(run)),
    ]
    return "\n\n".join(parts) + "\n"
