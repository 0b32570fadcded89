"""Request bodies: the same JSON body file for the service and the baseline, per model and row count."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson

from .config import BENCH_MODELS


def rows(model: str) -> np.ndarray:
    """Held-out rows: catalog models' evaluation rows, the bench pair's synthetic validation rows."""
    if model in BENCH_MODELS:
        from .models import validation_rows

        return validation_rows()
    from models.catalog import evaluation_rows

    return evaluation_rows(model)[0]


def take(model: str, count: int) -> np.ndarray:
    """The first `count` held-out rows (repeated if the model has fewer)."""
    available = rows(model)
    return np.resize(available, (count, available.shape[1])) if count > len(available) else available[:count]


def body(model: str, count: int) -> bytes:
    return orjson.dumps({"model": model, "instances": take(model, count).tolist()})


def write_bodies(directory: Path, models: list[str], counts: list[int]) -> dict[tuple[str, int], Path]:
    """One body file per (model, row count), for wrk's Lua script."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for model in models:
        for count in sorted(set(counts)):
            path = directory / f"{model}-{count}.json"
            path.write_bytes(body(model, count))
            files[model, count] = path
    return files
