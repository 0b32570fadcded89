"""What the benchmark measures: scenarios, server variants, reference figures and targets."""

from __future__ import annotations

from dataclasses import dataclass

CATALOG_MODELS = ("breast_cancer", "digits")
BENCH_MODELS = ("flat_1000", "hier_40x25")
ALL_MODELS = CATALOG_MODELS + BENCH_MODELS

DEFAULT_DURATION_S = 10.0
QUICK_DURATION_S = 3.0
WARMUP_S = 1.0
WRK_TIMEOUT = "5s"  # a request slower than this counts as a socket timeout error


@dataclass(frozen=True)
class Scenario:
    key: str
    rows: int
    connections: int

    @property
    def label(self) -> str:
        rows = "row" if self.rows == 1 else "rows"
        conns = "conn" if self.connections == 1 else "conns"
        return f"{self.rows} {rows}, {self.connections} {conns}"

    @property
    def threads(self) -> int:
        return min(2, self.connections)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("1x1", rows=1, connections=1),
    Scenario("1x16", rows=1, connections=16),
    Scenario("64x4", rows=64, connections=4),
)


@dataclass(frozen=True)
class Variant:
    """One server configuration. `baseline` is the FastAPI app; the others are `bentoml serve` with CLF_* settings."""

    key: str
    label: str
    baseline: bool = False
    workers: int = 1
    monitoring: bool = True
    batching: bool = True
    log_sample_rate: float = 1.0  # share of /predict requests written to the prediction log; 0: the log is off
    models: tuple[str, ...] = ALL_MODELS

    def settings_env(self) -> dict[str, str]:
        """The CLF_* variables this variant passes to `bentoml serve` (besides CLF_MODELS and CLF_DATA_DIR)."""
        return {
            "CLF_WORKERS": str(self.workers),
            "CLF_MONITORING": str(self.monitoring).lower(),
            "CLF_BATCHING": str(self.batching).lower(),
            "CLF_LOG_SAMPLE_RATE": f"{self.log_sample_rate:g}",
        }


VARIANTS: tuple[Variant, ...] = (
    Variant("default", "service 1 worker"),
    Variant("workers2", "service 2 workers", workers=2),
    Variant("monitoring_off", "service 1 worker, monitoring off", monitoring=False, models=CATALOG_MODELS),
    Variant("batching_off", "service 1 worker, batching off", batching=False, models=CATALOG_MODELS),
    Variant("log_off", "service 1 worker, prediction log off", log_sample_rate=0.0, models=CATALOG_MODELS),
    Variant("baseline", "FastAPI baseline", baseline=True),
)
VARIANT_BY_KEY = {v.key: v for v in VARIANTS}
SCENARIO_BY_KEY = {s.key: s for s in SCENARIOS}


@dataclass(frozen=True)
class Reference:
    """A throughput figure measured outside this harness, to compare against."""

    model: str
    scenario: str
    req_per_s: float
    what: str
    source: str = "issue #4 reference, measured earlier on this machine (MLServer)"


# breast_cancer is the catalog's LogisticRegression, digits its RandomForest(100).
MLSERVER_REFERENCE: tuple[Reference, ...] = (
    Reference("breast_cancer", "1x16", 2250.0, "MLServer, LogisticRegression, 1 row, 16 conns"),
    Reference("breast_cancer", "64x4", 1850.0, "MLServer, LogisticRegression, 64 rows, 4 conns"),
    Reference("digits", "1x16", 240.0, "MLServer, RandomForest(100) digits, 1 row, 16 conns"),
)


@dataclass(frozen=True)
class Targets:
    mlserver_ratio: float = 1.0  # breast_cancer 1 row 16 conns vs MLServer
    baseline_ratio: float = 1.0  # breast_cancer 1 row 16 conns vs the FastAPI baseline
    batching_ratio: float = 3.0  # digits 1 row 16 conns, batching on vs off
    max_p99_over_p50: float = 5.0  # every service point
    max_monitoring_cost: float = 0.10  # monitoring on vs off: at most 10 % fewer req/s
    max_log_cost: float = 0.10  # prediction log on vs off, LOG_COST_SCENARIOS: at most 10 % fewer req/s
    baseline_rows_ratio_64x4: float = 1.0  # breast_cancer 64 rows 4 conns, rows/s vs the FastAPI baseline
    max_p50_over_baseline_1x1: float = 1.2  # breast_cancer 1 row 1 conn, p50 vs the FastAPI baseline's
    min_feedback_items_per_s: float = 5000.0  # POST /feedback, FEEDBACK_ITEMS-item batches, per database


TARGETS = Targets()
LOG_COST_SCENARIOS = ("1x16", "64x4")  # the points the prediction log's cost target is held to


# The feedback benchmark: one server per database, predictions created first, then /feedback bodies of label items.
FEEDBACK_MODEL = "breast_cancer"
FEEDBACK_DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}  # key: label
FEEDBACK_PREDICTIONS = 100_000  # predictions created (and labelled) before the measured run
FEEDBACK_PREDICT_ROWS = 1000  # rows per /predict request creating them (the service's CLF_MAX_BATCH_ROWS default)
FEEDBACK_ITEMS = 100  # label items per /feedback body
FEEDBACK_CONNECTIONS = 4  # concurrent client connections, each posting its next body when the answer arrives
FEEDBACK_WRITE_TIMEOUT_S = 300.0  # how long the created predictions may take to reach the database
FEEDBACK_REQUEST_TIMEOUT_S = 30.0
