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
    call: str = "task.score"  # or "predict_proba": the estimator's own, where the service folds a linear model


@dataclass(frozen=True)
class ModelQuality:
    """A model's validation figures, as registration measured them on its held-out rows."""

    model: str
    accuracy: float
    macro_f1: float
    per_level_accuracy: list[float] | None = None


@dataclass(frozen=True)
class FeedbackResult:
    """One measured `POST /feedback` run against one database; `error` instead of figures when it failed."""

    database: str  # a FEEDBACK_DATABASES key
    version: str = ""  # the database's version
    items_per_request: int = 0
    connections: int = 0
    predictions: int = 0  # predictions created and written to the log before the run
    write_wait_s: float | None = None  # from the first /predict until the last created prediction was readable
    duration_s: float = 0.0
    requests: int = 0  # answered 200
    failed_requests: int = 0  # any other status, or no answer
    items: int = 0  # accepted items
    item_errors: int = 0  # items refused inside 200 answers
    fresh_items: int = 0  # items sent in the measured run that labelled a prediction for the first time
    relabel_items: int = 0  # items that labelled an already labelled prediction again (the ids ran out)
    p50_ms: float | None = None
    p99_ms: float | None = None
    server_cpu_ms_per_request: float | None = None
    database_cpu_ms_per_request: float | None = None  # PostgreSQL's processes; SQLite runs inside the server
    client_cpu_ms_per_request: float | None = None
    rss_mb: float | None = None
    first_error: str | None = None  # the first refusal or failure seen, for the report
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None and self.requests > 0

    @property
    def items_per_s(self) -> float | None:
        return self.items / self.duration_s if self.ok and self.duration_s > 0 else None

    @property
    def req_per_s(self) -> float | None:
        return self.requests / self.duration_s if self.ok and self.duration_s > 0 else None
