"""The soak's clean traffic: every endpoint a client uses, at a steady rate, and a ledger of what was answered.

A few client threads (httpx, one keep-alive connection each) send requests on a fixed schedule, open loop: thread
i of n sends at start + (i + k·n) / rate, so the total rate holds whatever one request takes; a thread that falls
more than one interval behind skips ahead instead of bursting (the ledger counts the sends skipped). Each request
is drawn from `MIX`:
- `/predict` with 1–`MAX_ROWS` held-out rows of one catalog model (each row a list, or an object keyed by feature
  name) and each option the model takes (`GET /models/{name}` `options`) with probability one half;
- `/feedback` with 1–`MAX_ITEMS` items on earlier predictions (at least `FEEDBACK_AFTER_S` old), each a true
  label in the task's form, an outcome, or both; every prediction gets feedback at most once, so what the log
  must hold after the run is exact;
- reads: `GET /predictions/{id}` of an earlier prediction, `GET /models`, `GET /models/{name}`,
  `GET /models/{name}/performance`.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from ..scorecard.traffic import Model, Truth
from .figures import Call

logger = logging.getLogger("bench.soak")

MIX: tuple[tuple[str, float], ...] = (
    ("predict", 0.55),
    ("feedback", 0.15),
    ("prediction", 0.12),
    ("performance", 0.07),
    ("model", 0.06),
    ("models", 0.05),
)
GROUP = {"predict": "predict", "feedback": "feedback"}  # every other kind is a read
MAX_ROWS = 8
MAX_ITEMS = 8
FEEDBACK_AFTER_S = 2.0  # labels arrive after their prediction: feedback and reads take predictions this old
OUTCOMES = ("clicked", "accepted", "played")  # the service's default CLF_OUTCOMES
POOL_SIZE = 20_000  # predictions waiting for feedback; the oldest are dropped beyond (they never get any)
RECENT_IDS = 5_000  # predictions `GET /predictions/{id}` picks from
REQUEST_TIMEOUT_S = 120.0
ROOT = "__root__"  # the hierarchy's top key in `GET /models/{name}` `decision.hierarchy`


@dataclass(frozen=True)
class Served:
    """A served catalog model as the traffic uses it: its held-out rows and labels, and its description."""

    model: Model
    task: str
    features: list[str]
    options: tuple[str, ...]
    classes: int
    parents: dict[str, str]  # hierarchical: node -> parent (top-level nodes are absent)

    @property
    def name(self) -> str:
        return self.model.name


def served(model: Model, description: Mapping[str, Any]) -> Served:
    hierarchy: Mapping[str, Sequence[str]] = description.get("decision", {}).get("hierarchy") or {}
    parents = {child: node for node, children in hierarchy.items() if node != ROOT for child in children}
    return Served(
        model,
        str(description["task"]),
        list(description["features"]["names"]),
        tuple(description["options"]),
        int(description["classes"]["count"]),
        parents,
    )


def options(model: Served, rng: np.random.Generator) -> dict[str, Any]:
    """Each option the model takes, with probability one half, at a valid value."""
    chosen: dict[str, Any] = {}
    for name in model.options:
        if rng.random() >= 0.5:
            continue
        if name == "top_k":
            chosen[name] = int(rng.integers(1, min(3, model.classes) + 1))
        elif name == "threshold":
            chosen[name] = round(float(rng.uniform(0.2, 0.8)), 3)
        elif name == "min_confidence":
            chosen[name] = round(float(rng.uniform(0.3, 0.9)), 3)
        elif name == "return_probabilities":
            chosen[name] = bool(rng.random() < 0.5)
    if "top_k" in chosen and "threshold" in chosen:  # multilabel: top_k replaces the thresholds; both is a 400
        del chosen["top_k" if rng.random() < 0.5 else "threshold"]
    return chosen


def predict_body(model: Served, rng: np.random.Generator) -> tuple[dict[str, Any], list[int]]:
    """A `/predict` body of 1–MAX_ROWS held-out rows (lists or objects keyed by feature name), and the rows' indices
    into the held-out set."""
    picked = [int(i) for i in rng.integers(0, len(model.model.X), int(rng.integers(1, MAX_ROWS + 1)))]
    instances: list[Any] = []
    for i in picked:
        values = model.model.X[i].tolist()
        instances.append(dict(zip(model.features, values, strict=True)) if rng.random() < 0.5 else values)
    body: dict[str, Any] = {"model": model.name, "instances": instances}
    chosen = options(model, rng)
    if chosen:
        body["options"] = chosen
    return body, picked


def ground_truth(model: Served, truth: Truth, rng: np.random.Generator) -> dict[str, Any]:
    """The true label in the task's form: `labels` (multilabel), `label` or `path` (hierarchical: a leaf, or the
    path from the top level down to it), `label` otherwise."""
    if isinstance(truth, list):
        return {"labels": truth}
    if model.task == "hierarchical" and rng.random() < 0.5:
        path = [truth]
        while path[0] in model.parents:
            path.insert(0, model.parents[path[0]])
        return {"path": path}
    return {"label": truth}


@dataclass(frozen=True)
class Issued:
    """A prediction answered 200, waiting for its feedback."""

    ready_at: float  # monotonic time from which it may get feedback
    model: int  # index into the traffic's models
    version: str
    prediction_id: str
    row: int  # index into the model's held-out rows


@dataclass(frozen=True)
class Acknowledged:
    """A feedback item the service accepted: what the log must hold for its prediction."""

    prediction_id: str
    model: str
    version: str
    truth: dict[str, Any] | None  # label fields as sent
    outcome: str | None
    value: float


def feedback_item(model: Served, issued: Issued, rng: np.random.Generator) -> tuple[dict[str, Any], Acknowledged]:
    """A label (60 %), an outcome (20 %), or both (20 %), for one earlier prediction."""
    draw = rng.random()
    truth = ground_truth(model, model.model.truth[issued.row], rng) if draw < 0.8 else None
    outcome = str(rng.choice(OUTCOMES)) if draw >= 0.6 else None
    value = 1.0 if rng.random() < 0.5 else round(float(rng.uniform(0.0, 100.0)), 2)
    item: dict[str, Any] = {"prediction_id": issued.prediction_id, **(truth or {})}
    if outcome is not None:
        item["outcome"] = outcome
        if value != 1.0:
            item["value"] = value
    return item, Acknowledged(issued.prediction_id, model.name, issued.version, truth, outcome, value)


@dataclass
class Ledger:
    """What the traffic sent and was answered; shared by the client threads (appends under `lock`)."""

    calls: list[Call] = field(default_factory=list)
    requests: dict[str, tuple[str, str, int]] = field(default_factory=dict)  # request key -> (model, version, rows)
    acknowledged: list[Acknowledged] = field(default_factory=list)
    refused: list[dict[str, Any]] = field(default_factory=list)  # the `errors` of feedback answers
    unexpected: Counter[str] = field(default_factory=Counter)  # non-200 answers: "kind status: body" -> count
    skipped: int = 0  # sends skipped by threads that fell behind the schedule
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, kind: str, response: httpx.Response) -> None:
        with self.lock:
            self.unexpected[f"{kind} {response.status_code}: {response.text[:300]}"] += 1


class Traffic:
    """The client threads, the predictions they may give feedback on, and the ledger."""

    def __init__(self, url: str, models: Sequence[Served], rate: float, threads: int, seed: int) -> None:
        self.url = url
        self.models = list(models)
        self.rate = rate
        self.threads = threads
        self.seed = seed
        self.ledger = Ledger()
        self.pool: collections.deque[Issued] = collections.deque(maxlen=POOL_SIZE)
        self.recent: collections.deque[Issued] = collections.deque(maxlen=RECENT_IDS)
        self.started = 0.0
        self.errors: list[BaseException] = []

    def run(self, duration_s: float, started: float, stop: threading.Event) -> None:
        """Send for `duration_s` seconds from `started` (a `time.monotonic()`), or until `stop` is set."""
        self.started = started
        workers = [
            threading.Thread(target=self._client, args=(i, started + duration_s, stop), daemon=True, name=f"soak-{i}")
            for i in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        if self.errors:
            raise RuntimeError("a client thread failed") from self.errors[0]

    def _client(self, index: int, end: float, stop: threading.Event) -> None:
        rng = np.random.default_rng([self.seed, index])
        kinds = [kind for kind, _ in MIX]
        weights = np.array([weight for _, weight in MIX]) / sum(weight for _, weight in MIX)
        interval = self.threads / self.rate
        next_at = self.started + index / self.rate
        try:
            with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT_S) as client:
                while not stop.is_set():
                    now = time.monotonic()
                    if now >= end:
                        return
                    if next_at > now:
                        stop.wait(min(next_at, end) - now)
                        continue
                    if now - next_at > interval:
                        behind = int((now - next_at) / interval)
                        with self.ledger.lock:
                            self.ledger.skipped += behind
                        next_at += behind * interval
                    self._send(client, str(rng.choice(kinds, p=weights)), rng)
                    next_at += interval
        except BaseException as exc:  # the harness's own failure: reported by run(), never swallowed
            self.errors.append(exc)
            stop.set()

    def _call(self, client: httpx.Client, kind: str, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        sent = time.monotonic()
        try:
            response: httpx.Response | None = client.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            response = None
            logger.warning("%s %s: no answer (%s)", method, path, type(exc).__name__)
        took = time.monotonic() - sent
        status = 0 if response is None else response.status_code
        with self.ledger.lock:
            self.ledger.calls.append(Call(sent - self.started, GROUP.get(kind, "reads"), status, took))
        if response is not None and response.status_code != 200:
            self.ledger.note(kind, response)
        return response if status == 200 else None

    def _send(self, client: httpx.Client, kind: str, rng: np.random.Generator) -> None:
        index = int(rng.integers(len(self.models)))
        model = self.models[index]
        if kind == "predict":
            self._predict(client, index, rng)
        elif kind == "feedback":
            self._feedback(client, rng)
        elif kind == "prediction" and (issued := self._earlier(rng)) is not None:
            self._call(client, kind, "GET", f"/predictions/{issued.prediction_id}")
        elif kind == "performance":
            self._call(client, kind, "GET", f"/models/{model.name}/performance")
        elif kind == "models":
            self._call(client, kind, "GET", "/models")
        else:  # "model", and a read of a prediction before any is old enough
            self._call(client, "model", "GET", f"/models/{model.name}")

    def _predict(self, client: httpx.Client, index: int, rng: np.random.Generator) -> None:
        model = self.models[index]
        body, rows = predict_body(model, rng)
        response = self._call(client, "predict", "POST", "/predict", json=body)
        if response is None:
            return
        answer = response.json()
        ids = [p["id"] for p in answer["predictions"]]
        key = ids[0].rsplit("-", 1)[0]
        ready_at = time.monotonic() + FEEDBACK_AFTER_S
        issued = [Issued(ready_at, index, answer["version"], pid, row) for pid, row in zip(ids, rows, strict=True)]
        with self.ledger.lock:
            self.ledger.requests[key] = (model.name, answer["version"], len(ids))
            self.pool.extend(issued)
            self.recent.extend(issued)

    def _earlier(self, rng: np.random.Generator) -> Issued | None:
        """A recent prediction old enough to be read, or None."""
        with self.ledger.lock:
            if not self.recent:
                return None
            picked = self.recent[int(rng.integers(len(self.recent)))]
            oldest = self.recent[0]
        for issued in (picked, oldest):
            if issued.ready_at <= time.monotonic():
                return issued
        return None

    def _feedback(self, client: httpx.Client, rng: np.random.Generator) -> None:
        wanted = int(rng.integers(1, MAX_ITEMS + 1))
        taken: list[Issued] = []
        with self.ledger.lock:
            now = time.monotonic()
            while self.pool and len(taken) < wanted and self.pool[0].ready_at <= now:
                taken.append(self.pool.popleft())
        if not taken:
            self._call(client, "models", "GET", "/models")  # nothing old enough yet: keep the rate with a read
            return
        pairs = [feedback_item(self.models[issued.model], issued, rng) for issued in taken]
        response = self._call(client, "feedback", "POST", "/feedback", json={"feedback": [item for item, _ in pairs]})
        if response is None:
            return
        errors = response.json()["errors"]
        refused = {error["index"] for error in errors}
        with self.ledger.lock:
            self.ledger.acknowledged += [ack for i, (_, ack) in enumerate(pairs) if i not in refused]
            self.ledger.refused += errors
