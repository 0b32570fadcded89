"""Peer `fastapi_proba`: what a user would write. FastAPI + uvicorn (uvloop, httptools), one worker, `POST /predict`
with the service's body `{"model": name, "instances": [[...]]}` answering `{"probabilities": predict_proba(X)}`
with orjson. No validation beyond what numpy and scikit-learn raise, no monitoring, no log, no batching.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

FOLDER = Path(os.environ["BENCH_PEER_MODELS"])
MODELS: dict[str, Any] = {
    name: joblib.load(FOLDER / f"{name}.joblib") for name in os.environ["BENCH_MODELS"].split(",")
}

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/predict")
async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    proba = MODELS[body["model"]].predict_proba(np.asarray(body["instances"], dtype=np.float64))
    return Response(
        orjson.dumps({"probabilities": proba}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b"ok", media_type="text/plain")
