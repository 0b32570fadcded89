"""The load matrix: for each variant one server, for each (model, scenario) a warm-up and a measured wrk run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import wrk
from .config import WARMUP_S, Scenario, Variant
from .results import Point
from .servers import Server, ServerError, cpu_delta, cpu_seconds, http_status, rss_mb, serving

logger = logging.getLogger("bench.runner")


@dataclass(frozen=True)
class Plan:
    variants: list[Variant]
    models: list[str]
    scenarios: list[Scenario]
    duration_s: float

    def points(self, variant: Variant) -> list[tuple[str, Scenario]]:
        return [(m, s) for m in self.models if m in variant.models for s in self.scenarios]

    @property
    def size(self) -> int:
        return sum(len(self.points(v)) for v in self.variants)


def measure(server: Server, model: str, scenario: Scenario, body: Path, duration_s: float) -> Point:
    """Preflight one request, warm up for WARMUP_S, then the measured run with the tree's CPU and RSS."""
    status, answer = http_status(f"{server.url}/predict", body.read_bytes())
    if status != 200:
        return Point(server.variant, model, scenario, error=f"preflight HTTP {status}: {answer[:300]!r}")
    wrk.run(server.url, scenario, body, WARMUP_S)
    server.check_alive()
    tree = server.tree()
    before = cpu_seconds(tree)
    result = wrk.run(server.url, scenario, body, duration_s)
    tree_after = server.tree()
    spent = cpu_delta(before, cpu_seconds(tree_after))
    server.check_alive()
    return Point(
        server.variant,
        model,
        scenario,
        wrk=result,
        cpu_ms_per_request=1e3 * spent / result.requests if result.requests else None,
        rss_mb=rss_mb(tree_after),
    )


def describe(point: Point) -> str:
    if point.wrk is None:
        return f"failed: {point.error}"
    w = point.wrk
    return (
        f"{w.req_per_s:,.0f} req/s, p50 {w.p50_ms:.2f} ms, p99 {w.p99_ms:.2f} ms, errors {w.errors}, "
        f"CPU {point.cpu_ms_per_request or 0:.2f} ms/req, RSS {point.rss_mb or 0:.0f} MB"
    )


def run(
    plan: Plan,
    store: Path,
    workdir: Path,
    source: Path,
    bodies: dict[tuple[str, int], Path],
    on_server: Callable[[Server], None] | None = None,
) -> list[Point]:
    """Every point of the plan; a server that fails to start or dies turns its remaining points into errors."""
    points: list[Point] = []
    done = 0
    for variant in plan.variants:
        todo = plan.points(variant)
        if not todo:
            continue
        try:
            with serving(variant, store, workdir / variant.key, source) as server:
                if on_server is not None:
                    on_server(server)
                for model, scenario in todo:
                    done += 1
                    point = measure(server, model, scenario, bodies[model, scenario.rows], plan.duration_s)
                    points.append(point)
                    logger.info(
                        "[%d/%d] %s | %s | %s: %s",
                        done, plan.size, variant.label, model, scenario.label, describe(point),
                    )  # fmt: skip
        except (ServerError, wrk.WrkError) as exc:
            logger.error("%s failed: %s", variant.label, exc)
            measured = {(p.model, p.scenario.key) for p in points if p.variant == variant}
            for model, scenario in todo:
                if (model, scenario.key) not in measured:
                    done += 1
                    points.append(Point(variant, model, scenario, error=str(exc).splitlines()[0]))
    return points
