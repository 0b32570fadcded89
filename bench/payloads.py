"""Request bodies, per model and row count: the service's JSON body (also the body of the peers that take it) and
the same rows as a V2 inference request (MLServer, and the service's own V2 route)."""

from __future__ import annotations

from collections.abc import Iterable
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


def body(model: str, count: int, options: dict[str, object] | None = None) -> bytes:
    request: dict[str, object] = {"model": model, "instances": take(model, count).tolist()}
    return orjson.dumps(request if options is None else {**request, "options": options})


def v2_body(model: str, count: int) -> bytes:
    """The same rows as one FP64 tensor [rows, features] (row-major data), `predict_proba` asked as the output."""
    rows = take(model, count).astype(np.float64)
    tensor = {"name": "input-0", "shape": list(rows.shape), "datatype": "FP64", "data": rows.ravel().tolist()}
    return orjson.dumps({"inputs": [tensor], "outputs": [{"name": "predict_proba"}]})


PROTOCOLS = {"json": body, "v2": v2_body}  # a Variant's `protocol`: its body


def write_bodies(
    directory: Path, models: list[str], counts: list[int], protocols: Iterable[str] = ("json",)
) -> dict[tuple[str, int, str], Path]:
    """One body file per (model, row count, protocol), for wrk's Lua script."""
    directory.mkdir(parents=True, exist_ok=True)
    files = {}
    for model in models:
        for count in sorted(set(counts)):
            for protocol in protocols:
                path = directory / f"{model}-{count}.{protocol}"
                path.write_bytes(PROTOCOLS[protocol](model, count))
                files[model, count, protocol] = path
    return files
