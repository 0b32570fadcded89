"""What the benchmark measures: scenarios, server variants (the service and its peers) and targets."""

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
class Peer:
    """A server other than the service, measured in the same run on the same model files (bench/peers/).

    `launcher` says how it is started (`bench/peers/__init__.py`: `uvicorn` runs `bench/peers/<app>.py`, `bentoml`
    serves it, `mlserver` starts MLServer on a model repository the bench writes); it runs from its own environment,
    `.bench/peers/<requirements>/`, installed from the pinned `bench/peers/<requirements>.txt`. The other fields are
    the report's table of what it does and does not do.
    """

    app: str  # the module in bench/peers/ that `uvicorn` or `bentoml` serves; "" for MLServer (no code of ours)
    requirements: str
    launcher: str  # uvicorn | bentoml | mlserver
    work: str  # which arithmetic answers: the service's fold, predict_proba, or nothing
    answer: str  # what the response holds
    validation: str = "none"
    batching: str = "none"
    http: str = "uvicorn, httptools, uvloop"  # the HTTP stack its environment gives it
    ready_path: str = "/readyz"
    returns_probabilities: bool = True  # False: a fixed answer, nothing to check against the model


FASTAPI_ANSWER = '{"probabilities": [[...]]} (orjson)'
PEERS: dict[str, Peer] = {
    "fastapi_proba": Peer(
        "fastapi_proba", "fastapi", "uvicorn", "`predict_proba`", FASTAPI_ANSWER, validation="none"
    ),
    "fastapi_fold": Peer(
        "fastapi_fold", "fastapi", "uvicorn",
        "the service's own: the linear fold (`service/classifiers/linear.py`), forests tree by tree "
        "(`service/classifiers/forest.py`)",
        FASTAPI_ANSWER,
    ),
    "mlserver": Peer(
        "", "mlserver", "mlserver", "`predict_proba` (MLServer's scikit-learn runtime)",
        "V2 response: one FP64 tensor, rows x classes",
        validation="V2 request schema (pydantic)", batching="off (MLServer's default)",
        http="uvicorn, h11, uvloop (as pip installs it)",
        ready_path="/v2/health/ready",
    ),
    "bentoml_minimal": Peer(
        "bentoml_minimal", "bentoml", "bentoml", "`predict_proba`",
        "a JSON list of rows of probabilities", validation="request schema (pydantic: a list of float rows)",
        batching="off", http="BentoML's uvicorn, h11, asyncio (as pip installs it)",
    ),
    "floor": Peer(
        "floor", "floor", "uvicorn", "none: reads the body, returns a fixed answer",
        '{"probabilities": [[0.5, 0.5]]}', returns_probabilities=False,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Variant:
    """One server configuration: the service (`bentoml serve` with CLF_* settings), or a peer when `peer` is set.

    `protocol` is the body it is sent and where (bench/payloads.py PROTOCOLS, bench/peers `path`): "json"
    (`{"model", "instances"}` at `/predict`) or "v2" (one FP64 tensor at `/v2/models/<model>/infer`, `predict_proba`
    asked as the output: MLServer's, and the service's own Open Inference Protocol route).
    """

    key: str
    label: str
    peer: Peer | None = None
    protocol: str = "json"
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

    @property
    def log_on(self) -> bool:
        return self.peer is None and self.log_sample_rate > 0


# Adding a peer: one entry here (and in PEERS), its app file and requirements in bench/peers/.
VARIANTS: tuple[Variant, ...] = (
    Variant("default", "service 1 worker"),
    Variant("workers2", "service 2 workers", workers=2),
    Variant("monitoring_off", "service 1 worker, monitoring off", monitoring=False, models=CATALOG_MODELS),
    Variant("batching_off", "service 1 worker, batching off", batching=False, models=CATALOG_MODELS),
    Variant("log_off", "service 1 worker, prediction log off", log_sample_rate=0.0, models=CATALOG_MODELS),
    Variant(
        "workers2_log_off",
        "service 2 workers, prediction log off",
        workers=2,
        log_sample_rate=0.0,
        models=CATALOG_MODELS,
    ),  # fmt: skip
    Variant("v2", "service 1 worker, V2", protocol="v2", models=CATALOG_MODELS),  # /v2/models/<model>/infer
    Variant("fastapi_proba", "FastAPI, predict_proba", peer=PEERS["fastapi_proba"], models=CATALOG_MODELS),
    Variant("fastapi_fold", "FastAPI, same fold", peer=PEERS["fastapi_fold"], models=CATALOG_MODELS),
    Variant(
        "mlserver", "MLServer (scikit-learn runtime)", peer=PEERS["mlserver"], protocol="v2", models=CATALOG_MODELS
    ),
    Variant("bentoml_minimal", "minimal BentoML service", peer=PEERS["bentoml_minimal"], models=CATALOG_MODELS),
    Variant("floor", "bare ASGI floor (fixed answer)", peer=PEERS["floor"], models=CATALOG_MODELS),
)
VARIANT_BY_KEY = {v.key: v for v in VARIANTS}
SCENARIO_BY_KEY = {s.key: s for s in SCENARIOS}
LOG_TWINS = {"default": "log_off", "workers2": "workers2_log_off"}  # log on: its log-off twin


@dataclass(frozen=True)
class Targets:
    """Issue 20's targets: same run, same machine, ratios."""

    max_p99_over_p50: float = 3.0  # every TARGET_POINTS point of a log-on service variant
    max_log_cost: float = 0.05  # prediction log on vs its log-off twin: at most 5 % fewer req/s, every TARGET_POINTS
    fold_ratio: float = 1.0  # 1 worker vs fastapi_fold at PEER_SCENARIOS (req/s; rows/s for 64 rows)
    proba_ratio: float = 1.5  # 1 worker vs fastapi_proba at PEER_SCENARIOS
    mlserver_ratio: float = 2.0  # 1 worker vs MLServer at 1 row x 16
    # issue 22: the service's V2 /infer (`v2`) vs MLServer on the same V2 body, and vs the service's own /predict
    v2_mlserver_ratio: float = 2.0  # req/s at 1 row x 16
    v2_mlserver_rows_ratio: float = 1.5  # rows/s at 64 rows x 4
    v2_predict_ratio: float = 0.90  # V2 req/s within 10 % of /predict's (`default`) on the same rows, both scenarios
    max_startup_s: float = 8.0  # `make serve`, installed, to /readyz 200 (bench/startup.py's median)
    min_feedback_items_per_s: float = 5000.0  # POST /feedback, FEEDBACK_ITEMS-item batches, per database


TARGETS = Targets()
PEER_SCENARIOS = ("1x16", "64x4")  # the points the service is held against the FastAPI peers at
MLSERVER_SCENARIO = "1x16"
V2_SCENARIOS = ("1x16", "64x4")  # the points the V2 route is held against MLServer and /predict at


# The feedback benchmark: one server per database, predictions created first, then /feedback bodies of label items.
FEEDBACK_MODEL = "breast_cancer"
FEEDBACK_DATABASES = {"sqlite": "SQLite", "postgresql": "PostgreSQL"}  # key: label
FEEDBACK_PREDICTIONS = 100_000  # predictions created (and labelled) before the measured run
FEEDBACK_PREDICT_ROWS = 1000  # rows per /predict request creating them (the service's CLF_MAX_BATCH_ROWS default)
FEEDBACK_ITEMS = 100  # label items per /feedback body
FEEDBACK_CONNECTIONS = 4  # concurrent client connections, each posting its next body when the answer arrives
FEEDBACK_WRITE_TIMEOUT_S = 300.0  # how long the created predictions may take to reach the database
FEEDBACK_REQUEST_TIMEOUT_S = 30.0
