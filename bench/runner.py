"""The load matrix: for each variant one server, for each (model, scenario) a warm-up and a measured wrk run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import payloads, peers, wrk
from .config import WARMUP_S, Scenario, Variant
from .results import Point
from .servers import Server, ServerError, cpu_delta, cpu_seconds, http_status, rss_mb, serving

logger = logging.getLogger("bench.runner")

TOLERANCE = 1e-9  # the service's own bound between its linear fold and predict_proba


@dataclass(frozen=True)
class Plan:
    variants: list[Variant]
    models: list[str]
    scenarios: list[Scenario]
    duration_s: float
    repeats: int = 1

    def points(self, variant: Variant) -> list[tuple[str, Scenario]]:
        return [(m, s) for m in self.models if m in variant.models for s in self.scenarios]

    @property
    def size(self) -> int:
        return sum(len(self.points(v)) for v in self.variants)


def measure(
    variant: Variant, server: Server, model: str, scenario: Scenario, body: Path, duration_s: float,
    expected: np.ndarray | None = None,
) -> Point:  # fmt: skip
    """Preflight one request (its probabilities checked against `expected`, the estimator's `predict_proba` of the
    body's rows, when given), warm up for WARMUP_S, then the measured run with the tree's CPU and RSS."""
    path = peers.path(variant, model)
    status, answer = http_status(f"{server.url}{path}", body.read_bytes())
    if status != 200:
        return Point(variant, model, scenario, error=f"preflight HTTP {status}: {answer[:300]!r}")
    if expected is not None and (wrong := disagreement(variant, server, model, scenario, answer, expected)):
        return Point(variant, model, scenario, error=wrong)
    wrk.run(server.url, scenario, body, WARMUP_S, path)
    server.check_alive()
    tree = server.tree()
    before = cpu_seconds(tree)
    result = wrk.run(server.url, scenario, body, duration_s, path)
    tree_after = server.tree()
    spent = cpu_delta(before, cpu_seconds(tree_after))
    server.check_alive()
    return Point(
        variant,
        model,
        scenario,
        wrk=result,
        cpu_ms_per_request=1e3 * spent / result.requests if result.requests else None,
        rss_mb=rss_mb(tree_after),
    )


def disagreement(
    variant: Variant, server: Server, model: str, scenario: Scenario, answer: bytes, expected: np.ndarray
) -> str | None:
    """Why the server's probabilities for the body's rows are not `expected` (to TOLERANCE), or None when they are.
    The service's /predict is asked again with `return_probabilities` (its decisions carry no matrix); its V2 route
    answers `predict_proba`, as MLServer does."""
    if variant.peer is None and variant.protocol == "json":
        asked = payloads.body(model, scenario.rows, {"return_probabilities": True})
        status, answer = http_status(f"{server.url}/predict", asked)
        if status != 200:
            return f"HTTP {status} with return_probabilities: {answer[:300]!r}"
    try:
        got = peers.probabilities(variant, answer)
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        return f"answer without probabilities ({exc!r}): {answer[:300]!r}"
    if got is None:
        return None
    if got.shape != expected.shape:
        return f"probabilities of shape {got.shape}, predict_proba's are {expected.shape}"
    worst = float(np.max(np.abs(got - expected)))
    return None if worst <= TOLERANCE else f"probabilities differ from predict_proba's by up to {worst:.3g}"


def describe(point: Point) -> str:
    if point.wrk is None:
        return f"failed: {point.error}"
    w = point.wrk
    return (
        f"{w.req_per_s:,.0f} req/s, p50 {w.p50_ms:.2f} ms, p99 {w.p99_ms:.2f} ms, p99.9 {w.p999_ms:.2f} ms, "
        f"errors {w.errors}, CPU {point.cpu_ms_per_request or 0:.2f} ms/req, RSS {point.rss_mb or 0:.0f} MB"
    )


def run(
    plan: Plan,
    store: Path,
    workdir: Path,
    source: Path,
    bodies: dict[tuple[str, int, str], Path],
    on_server: Callable[[Variant, Server], None] | None = None,
    expected: dict[tuple[str, int], np.ndarray] | None = None,
) -> list[Point]:
    """Every point of the plan, the variants of one (model, scenario) measured back to back.

    All variant servers run at once (idle ones cost no CPU), so the figures a ratio compares are taken
    minutes apart at most, not a whole matrix apart, on a machine whose load drifts. With `plan.repeats`
    > 1 the variants alternate that many times per point and the run with the median req/s is kept.
    A server that fails to start or dies turns its remaining points into errors.
    """
    failed: dict[str, str] = {}
    runs: dict[tuple[str, str, str], list[Point]] = {}
    done = 0
    total = plan.size * plan.repeats
    with ExitStack() as stack:
        servers: dict[str, Server] = {}
        for variant in plan.variants:
            if not plan.points(variant):
                continue
            try:
                servers[variant.key] = stack.enter_context(serving(variant, store, workdir / variant.key, source))
            except ServerError as exc:
                logger.error("%s failed to start: %s", variant.label, exc)
                failed[variant.key] = str(exc).splitlines()[0]
                continue
            if on_server is not None:
                on_server(variant, servers[variant.key])
        for model in plan.models:
            for scenario in plan.scenarios:
                for repeat in range(plan.repeats):
                    for variant in plan.variants:
                        if (model, scenario) not in plan.points(variant) or variant.key not in servers:
                            continue
                        done += 1
                        point = _measure_or_fail(
                            variant, servers[variant.key], model, scenario, bodies, plan, failed, expected or {}
                        )
                        runs.setdefault((variant.key, model, scenario.key), []).append(point)
                        logger.info(
                            "[%d/%d] %s | %s | %s | run %d: %s",
                            done, total, variant.label, model, scenario.label, repeat + 1, describe(point),
                        )  # fmt: skip
    points = []
    for variant in plan.variants:
        for model, scenario in plan.points(variant):
            measured = runs.get((variant.key, model, scenario.key))
            if measured:
                points.append(median_run(measured))
            else:
                points.append(Point(variant, model, scenario, error=failed.get(variant.key, "not measured")))
    return points


def _measure_or_fail(
    variant: Variant, server: Server, model: str, scenario: Scenario, bodies: dict[tuple[str, int, str], Path],
    plan: Plan, failed: dict[str, str], expected: dict[tuple[str, int], np.ndarray],
) -> Point:  # fmt: skip
    if variant.key in failed:
        return Point(variant, model, scenario, error=failed[variant.key])
    body = bodies[model, scenario.rows, variant.protocol]
    try:
        return measure(variant, server, model, scenario, body, plan.duration_s, expected.get((model, scenario.rows)))
    except (ServerError, wrk.WrkError) as exc:
        logger.error("%s failed: %s", variant.label, exc)
        failed[variant.key] = str(exc).splitlines()[0]
        return Point(variant, model, scenario, error=failed[variant.key])


def median_run(measured: list[Point]) -> Point:
    """The run with the median req/s among the successful ones (the lower median for an even count)."""
    ok = sorted((p for p in measured if p.ok and p.wrk is not None), key=lambda p: p.wrk.req_per_s if p.wrk else 0)
    return ok[(len(ok) - 1) // 2] if ok else measured[-1]
