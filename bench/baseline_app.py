"""The FastAPI baseline: the minimal web wrapper around the same stored models, for comparison.

One uvicorn worker (uvloop, httptools), the models of `BENCH_MODELS` loaded from the BentoML store in
`BENTOML_HOME` with `service.store.load_model`, and `POST /predict` with `{"model": name, "instances": [[...]]}`
answering `{"probabilities": task.score(X)}` (hierarchical models: the path scores). No validation, no
monitoring, no decisions: what is left is HTTP, JSON and the model, called through scikit-learn's `predict_proba`
as a hand-rolled wrapper calls it.

    BENTOML_HOME=.bench BENCH_MODELS=breast_cancer uvicorn bench.baseline_app:app --loop uvloop --http httptools
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request, Response

from service.classifiers import linear
from service.store import LoadedModel, load_model

# The service evaluates linear models as one matrix product (service/classifiers/linear.py): that is part of what
# the service is measured for, not of the minimal wrapper, which keeps calling predict_proba.
linear.linear_node = lambda estimator, n_features: None

DEFAULT_MODELS = "breast_cancer,digits,flat_1000,hier_40x25"


def load_models(names: str) -> dict[str, LoadedModel]:
    return {name: load_model(f"{name}:latest") for name in (n.strip() for n in names.split(",")) if name}


MODELS = load_models(os.environ.get("BENCH_MODELS", DEFAULT_MODELS))

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@app.post("/predict")
async def predict(request: Request) -> Response:
    body = orjson.loads(await request.body())
    X = np.asarray(body["instances"], dtype=float)
    scores: Any = MODELS[body["model"]].task.score(X)
    matrix = scores.scores if hasattr(scores, "scores") else scores  # hierarchical: rows x levels
    return Response(orjson.dumps({"probabilities": matrix.tolist()}), media_type="application/json")


@app.get("/readyz")
async def readyz() -> Response:
    return Response(b"ok", media_type="text/plain")
