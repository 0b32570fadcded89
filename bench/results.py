"""What one benchmark run measured: load points per (variant, model, scenario) and the raw model floor."""

from __future__ import annotations

from dataclasses import dataclass

from .config import Scenario, Variant
from .wrk import WrkResult


@dataclass(frozen=True)
class Point:
    """One measured load point; `error` instead of figures when it could not be measured."""

    variant: Variant
    model: str
    scenario: Scenario
    wrk: WrkResult | None = None
    cpu_ms_per_request: float | None = None
    rss_mb: float | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.wrk is not None and self.error is None

    @property
    def rows_per_s(self) -> float | None:
        return None if self.wrk is None else self.wrk.req_per_s * self.scenario.rows

    @property
    def tail_ratio(self) -> float | None:
        """p99 / p50: far above 1 means stalls (wrk is closed loop, so a stall also hides the requests it delayed)."""
        if self.wrk is None or self.wrk.p50_ms <= 0:
            return None
        return self.wrk.p99_ms / self.wrk.p50_ms


@dataclass(frozen=True)
class FloorResult:
    """In-process model cost per call: no HTTP, no JSON, no validation."""

    model: str
    rows: int
    blas_threads: int
    median_us: float
    p90_us: float
    calls: int
