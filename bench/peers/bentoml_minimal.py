"""Peer `bentoml_minimal`: the smallest BentoML service over the same estimators, one worker. `POST /predict` takes
the service's body (`model`, `instances`: BentoML validates them against the signature) and answers the
`predict_proba` matrix as a JSON list. No monitoring, no log, no batching.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1)
class Peer:
    def __init__(self) -> None:
        folder = Path(os.environ["BENCH_PEER_MODELS"])
        self.models: dict[str, Any] = {
            n: joblib.load(folder / f"{n}.joblib") for n in os.environ["BENCH_MODELS"].split(",")
        }

    @bentoml.api
    def predict(self, model: str, instances: list[list[float]]) -> list[list[float]]:
        proba: list[list[float]] = self.models[model].predict_proba(np.asarray(instances, dtype=np.float64)).tolist()
        return proba
