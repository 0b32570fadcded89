"""Peer `fastapi_fold`: the same work as the service, so what remains is framework overhead. As `fastapi_proba`, but
a linear model is evaluated with the service's own fold (`service.classifiers.linear.Probabilities`: one matrix
product and a softmax, proved equal to `predict_proba` at load), a forest tree by tree (`service.classifiers.forest`,
proved the same way), as the service does.
"""

from __future__ import annotations

import os
from pathlib import Path

import joblib
import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

from service.classifiers.linear import Probabilities


def load(path: Path) -> Probabilities:
    estimator = joblib.load(path)
    return Probabilities(estimator, int(estimator.n_features_in_))


FOLDER = Path(os.environ["BENCH_PEER_MODELS"])
MODELS = {name: load(FOLDER / f"{name}.joblib") for name in os.environ["BENCH_MODELS"].split(",")}

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/predict")
async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    proba = MODELS[body["model"]](np.asarray(body["instances"], dtype=np.float64))
    return Response(
        orjson.dumps({"probabilities": proba}, option=orjson.OPT_SERIALIZE_NUMPY), media_type="application/json"
    )


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b"ok", media_type="text/plain")
