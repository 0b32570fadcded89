"""Service settings, read once per worker from `CLF_*` environment variables."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_CATALOG = ("breast_cancer", "digits", "digit_attributes", "digit_attributes_ovr", "digit_groups")


class Settings(BaseSettings):
    """Every knob of the service. Lists are comma-separated in the environment."""

    model_config = SettingsConfigDict(env_prefix="CLF_", frozen=True)

    workers: int = Field(1, ge=1, description="worker processes of `bentoml serve` (read when the service is defined)")
    models: Annotated[tuple[str, ...], NoDecode] = Field(
        DEFAULT_CATALOG, description="served models: `name` (latest version) or `name:version`"
    )
    max_batch_rows: int = Field(1000, ge=1, description="most instances in one request")
    max_body_bytes: int = Field(10 * 1024 * 1024, ge=1024, description="largest accepted request body")
    trusted_types: Annotated[tuple[str, ...], NoDecode] = Field(
        (), description="extra fully-qualified types trusted when loading skops files"
    )
    monitored_features: int = Field(20, ge=1, description="features per model tracked for drift (most important first)")
    monitored_labels: int = Field(20, ge=1, description="labels per model and level with their own series; rest: other")
    drift_window_seconds: float = Field(1800.0, gt=0, description="the drift window: PSI of the last this many seconds")
    drift_slots: int = Field(30, ge=1, le=3600, description="time slots the drift window slides by")
    drift_min_rows: int = Field(100, ge=1, description="fewer rows in the window: PSI is NaN (too noisy to alert on)")
    drift_sample_rows: int = Field(64, ge=1, description="most rows per model call binned for drift (every k-th)")
    heartbeat_seconds: float = Field(5.0, gt=0, description="how often each worker sets its heartbeat gauge")
    monitoring: bool = Field(True, description="silent-failure signals per model (inputs, decisions, drift)")
    batching: bool = Field(True, description="coalesce concurrent requests' rows into one model call")
    batch_max_rows: int = Field(1000, ge=1, description="most rows in one coalesced model call")
    batch_max_wait_ms: float = Field(0.0, ge=0, description="wait this long for more rows before a model call")
    access_log: bool = Field(False, description="BentoML's per-request access log lines")
    trace_requests: bool = Field(False, description="OpenTelemetry spans per request (configure an exporter too)")

    @field_validator("models", "trusted_types", mode="before")
    @classmethod
    def _split_commas(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
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
