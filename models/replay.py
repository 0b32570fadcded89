"""`python -m models replay`: a labelled file through a running service, as production would send it.

Each row (minus the target) goes to `POST /predict`, then its target to `POST /feedback` as the label of the
prediction it got, in the model's own form (`label`; `labels` joined by `--label-sep`; `path` joined by
`--path-sep`, as `train` reads them). So the prediction log holds labelled predictions that `retrain` and `compare`
read, and realized figures move: docs/loop.md's loop, without waiting for production.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol

import pandas as pd

from .dataset import LABEL_SEP, PATH_SEP, DataError

BATCH_ROWS = 100  # rows per /predict request, and labels per /feedback request
TIMEOUT_S = 300.0  # one request: a loaded machine's first requests have taken minutes


class Client(Protocol):
    """The service's HTTP API: the JSON answer of a 2xx, else a `DataError` saying what came back."""

    def get(self, path: str) -> dict[str, Any]: ...

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]: ...


class HttpClient:
    """The service at `url`, through the standard library."""

    def __init__(self, url: str) -> None:
        self.url = url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"

    def get(self, path: str) -> dict[str, Any]:
        return self._call(urllib.request.Request(self.url + path))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        return self._call(urllib.request.Request(self.url + path, data=data, headers=headers, method="POST"))

    def _call(self, request: urllib.request.Request) -> dict[str, Any]:
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
                answer: dict[str, Any] = json.loads(response.read())
                return answer
        except urllib.error.HTTPError as exc:
            body = exc.read().decode(errors="replace")
            raise DataError(f"{request.get_method()} {request.full_url} answered {exc.code}: {body}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DataError(f"no service answers at {self.url} ({reason}); start one with make serve") from None


@dataclass(frozen=True)
class Replayed:
    version: str  # the version that answered (the last request's)
    predictions: int
    labelled: int  # labels the service accepted
    right: int  # predictions whose decision was the file's label


def replay(
    client: Client, model: str, table: pd.DataFrame, target: str, label_sep: str = LABEL_SEP, path_sep: str = PATH_SEP
) -> Replayed:
    """Predict every row of `table` with `model`, then send its `target` as the label of that prediction."""
    if target not in table.columns:
        raise DataError(f"--target '{target}' is not a column of the file; its columns: {list(table.columns)}")
    task = str(client.get(f"/models/{model}")["task"])
    rows = json.loads(table.drop(columns=[target]).to_json(orient="records"))  # NaN -> null
    truths = [_truth(task, value, label_sep, path_sep) for value in table[target]]
    version, labelled, right = "", 0, 0
    for start in range(0, len(rows), BATCH_ROWS):
        answer = client.post("/predict", {"model": model, "instances": rows[start : start + BATCH_ROWS]})
        version = str(answer["version"])
        items = []
        for prediction, truth in zip(answer["predictions"], truths[start : start + BATCH_ROWS], strict=True):
            if truth is None:
                continue
            items.append({"prediction_id": prediction["id"], **truth})
            right += _decided(prediction) == _as_decision(truth)
        if items:
            fed = client.post("/feedback", {"feedback": items})
            if fed["errors"]:
                first = fed["errors"][0]
                refused = len(fed["errors"])
                raise DataError(f"{refused} labels refused; the first: {first['message']} ({first['field']})")
            labelled += int(fed["accepted"])
    return Replayed(version, len(rows), labelled, right)


def _truth(task: str, value: Any, label_sep: str, path_sep: str) -> dict[str, Any] | None:
    """The feedback fields of one target value; None for a row without one."""
    missing = pd.isna(value) or str(value).strip() == ""
    if task == "multilabel":  # an empty target: no label applies
        return {"labels": [] if missing else [p.strip() for p in str(value).split(label_sep) if p.strip()]}
    if missing:
        return None
    if task == "hierarchical":
        return {"path": [p.strip() for p in str(value).split(path_sep) if p.strip()]}
    return {"label": str(value).strip()}


def _decided(prediction: dict[str, Any]) -> Any:
    return frozenset(prediction["labels"]) if "labels" in prediction else prediction.get("label")


def _as_decision(truth: dict[str, Any]) -> Any:
    if "labels" in truth:
        return frozenset(truth["labels"])
    return truth["path"][-1] if "path" in truth else truth["label"]
