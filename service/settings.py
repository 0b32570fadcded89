"""Service settings, read once per worker from `CLF_*` environment variables."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from . import home
from .tags import names_a_version

DEFAULT_CATALOG = ("breast_cancer", "digits", "digit_attributes", "digit_attributes_ovr", "digit_groups")
OUTCOME_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


class MonitoringConfig(BaseModel):
    """The silent-failure signals' bounds and windows (`service.monitoring.monitor.ModelMonitor`)."""

    model_config = ConfigDict(frozen=True)

    monitored_features: int = Field(
        100, ge=1, description="features per model watched for drift and faults (most important first beyond it)"
    )
    monitored_labels: int = Field(20, ge=1, description="labels per model and level with their own series; rest: other")
    drift_window_seconds: float = Field(1800.0, gt=0, description="the drift window: PSI of the last this many seconds")
    drift_slots: int = Field(30, ge=1, le=3600, description="time slots the drift window slides by")
    drift_min_rows: int = Field(100, ge=1, description="fewer rows in the window: PSI is NaN (too noisy to alert on)")


class LogConfig(BaseModel):
    """The prediction log's database and writer (`service.feedback.log.PredictionLog`)."""

    model_config = ConfigDict(frozen=True)

    data_dir: Path = Field(
        default_factory=lambda: home.data_dir()[0],
        description="where the service keeps its files (the SQLite prediction log); default: the checkout's `data`",
    )
    database_url: str | None = Field(
        None, description="the prediction log's database; default SQLite in CLF_DATA_DIR (postgresql+psycopg://...)"
    )
    log_sample_rate: float = Field(1.0, ge=0.0, le=1.0, description="share of /predict requests logged (0: none)")
    log_inputs: bool = Field(True, description="log the rows' inputs, not only decisions and scores")
    log_queue_rows: int = Field(100_000, ge=1, description="predictions a worker queues for the log; beyond: dropped")
    log_flush_seconds: float = Field(1.0, gt=0, le=60, description="how often queued predictions are written")
    log_retention_days: float = Field(30.0, gt=0, le=36500, description="predictions older than this are deleted")

    @property
    def log_database_url(self) -> str:
        """`database_url`, or the SQLite file in `data_dir`."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'predictions.db').resolve()}"

    @property
    def shown_log_database_url(self) -> str:
        """`log_database_url` for a log line: its password, if it has one, as `***` (as SQLAlchemy shows a URL, but
        without importing it in the server's arbiter, which logs it)."""
        url = self.log_database_url
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user_info, _, host = parts.netloc.rpartition("@")
        return parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{host}").geturl()


class Settings(MonitoringConfig, LogConfig, BaseSettings):
    """Every knob of the service, the components' configs included. Lists are comma-separated in the environment."""

    model_config = SettingsConfigDict(env_prefix="CLF_", frozen=True)

    workers: int = Field(1, ge=1, description="worker processes of `bentoml serve` (read when the service is defined)")
    native_threads: int | None = Field(
        None, ge=1, description="BLAS/OpenMP threads per worker; default: the usable CPUs divided by `workers`"
    )
    models: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_CATALOG, description="served models: `name` (latest version) or `name:version`"
    )
    shadow: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="shadow versions, `name:version`: they score a served model's rows off the response path"
    )
    shadow_max_pending_rows: int = Field(
        100_000, ge=1, description="rows a worker's shadows may have waiting; beyond, rows go unscored (counted)"
    )
    max_batch_rows: int = Field(1000, ge=1, description="most instances in one request")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest accepted request body")
    max_concurrent_requests: int = Field(
        64, ge=1, description="requests a worker serves at once; beyond: 503 (the probes and /metrics are exempt)"
    )
    header_timeout_seconds: float = Field(
        10.0, gt=0, le=300, description="a connection that has not sent a request's complete headers by then is closed"
    )
    trusted_types: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="extra fully-qualified types trusted when loading skops files"
    )
    heartbeat_seconds: float = Field(5.0, gt=0, description="how often each worker sets its heartbeat gauge")
    admin: bool = Field(
        False, description="the admin routes (`/admin/...`) without API keys; off: 403 (with keys: scope `admin`)"
    )
    api_keys_file: Path | None = Field(
        None, description="the API keys file (`python -m service.auth`); unset: no route takes a key"
    )
    metrics_open: bool = Field(
        False, description="`GET /metrics` without a key even when API keys are configured (default: scope `metrics`)"
    )
    promotion_poll_seconds: float = Field(
        2.0, gt=0, le=300, description="how often a worker checks for a version promoted by another one"
    )
    metrics_flush_seconds: float = Field(
        1.0, gt=0, le=60, description="how often a worker writes its pending metric increments (the staleness)"
    )
    monitoring: bool = Field(True, description="silent-failure signals per model (inputs, decisions, drift)")
    batching: bool = Field(True, description="coalesce concurrent requests' rows into one model call")
    batch_max_rows: int = Field(1000, ge=1, description="most rows in one coalesced model call")
    batch_max_wait_ms: float = Field(0.0, ge=0, description="wait this long for more rows before a model call")
    feedback_window_seconds: float = Field(
        86400.0, gt=0, le=3650 * 86400, description="the realized metrics' window (prediction time)"
    )
    performance_min_predictions: int = Field(
        20, ge=1, description="/performance withholds figures computed over fewer predictions than this"
    )
    outcomes: Annotated[tuple[str, ...], NoDecode] = Field(
        ("clicked", "accepted", "played"), description="outcome names with their own metric series; rest: other"
    )
    access_log: bool = Field(False, description="BentoML's per-request access log lines")
    trace_requests: bool = Field(False, description="OpenTelemetry spans per request (configure an exporter too)")

    @field_validator("models", "trusted_types", "outcomes", "shadow", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("shadow")
    @classmethod
    def _check_shadows(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [entry for entry in value if not names_a_version(entry.partition(":")[2])]
        if bad:
            raise ValueError(f"shadow entries name a version (name:version): {bad}")
        return value

    @field_validator("outcomes")
    @classmethod
    def _check_outcomes(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if not OUTCOME_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"CLF_OUTCOMES: {bad} are not outcome names (lower case, digits, '_'; at most 64)")
        return value

    @field_validator("models")
    @classmethod
    def _check_models(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("CLF_MODELS names no model")
        names = [entry.split(":", 1)[0] for entry in value]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"CLF_MODELS lists {duplicates} more than once; serve one version per name")
        return value
