"""The scorecard's traffic on one running server: phases of steps, a scrape after each step, labels after a delay.

A step is one virtual minute: one `/predict` request of `ROWS_PER_STEP` rows per model (the signals are per row, so
this is the same as that many one-row requests a minute), the labels that are due (`POST /feedback`, every accepted
prediction's true label `delay` steps after its step, in clean and faulty steps alike), then a scrape of `/metrics`
once every worker's writes of the step show (rows, estimate rows and labels equal what was sent), so scrape i holds
exactly the first i steps. Scrape 0 is taken before any traffic. The server is never restarted: a fault phase starts
with a clean warm-up that flushes every window the rules read.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from .alerts import Scrapes, Series, stem
from .traffic import Batch, Fault, Model, Truth, clean

logger = logging.getLogger("bench.scorecard")

ROWS_PER_STEP = 50
SETTLE_TIMEOUT_S = 120.0
TIMEOUT = httpx.Timeout(120.0)
SETTLED_BY = ("classifier_rows_total", "classifier_estimated_rows_total", "classifier_feedback_items_total")


@dataclass(frozen=True)
class Phase:
    """`warmup` clean steps, then `steps` steps of `fault` at `size` on `share` of the rows (clean: no fault)."""

    fault: Fault | None
    size: float
    share: float
    warmup: int
    steps: int

    @property
    def key(self) -> str:
        return "clean" if self.fault is None else f"{self.fault.key} {self.size:g} {self.share:.0%}"

    def size_at(self, step: int) -> float:
        """The fault's size at fault step `step` (0-based): a ramp grows to `size` at the last step."""
        assert self.fault is not None
        return self.size * (step + 1) / self.steps if self.fault.ramp else self.size

    def applies(self, model: Model) -> bool:
        return self.fault is not None and self.fault.models(model)


@dataclass
class Tally:
    """One model's predictions of a phase's measured steps (the fault's, or all of a clean phase's)."""

    sent: int = 0
    accepted: int = 0
    correct: int = 0
    sources: set[int] = field(default_factory=set)  # distinct evaluation rows
    fresh: int = 0  # rows drawn fresh from a generator (each distinct)
    estimated: float = math.nan  # the live label-free estimate over the same rows (from the counters)

    @property
    def realized(self) -> float:
        return self.correct / self.accepted if self.accepted else math.nan

    @property
    def distinct(self) -> int:
        return len(self.sources) + self.fresh


@dataclass
class PhaseRun:
    phase: Phase
    start: int  # scrape before the phase's first step
    onset: int  # scrape at the end of the warm-up (= start for a clean phase)
    stop: int  # one past the phase's last scrape
    tallies: dict[str, Tally]
    seconds: float = 0.0


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
_ESCAPED = re.compile(r'\\[\\"n]')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


class Reader:
    """The wanted samples of a `/metrics` text (a histogram's samples by their stem), parsed by hand: the same few
    thousand series come back every step, so each one's labels are parsed once and the rest is a dict lookup per
    line (prometheus_client's parser took most of a step)."""

    def __init__(self, wanted: set[str]) -> None:
        self.wanted = wanted
        self.parsed: dict[str, Series | None] = {}  # a line's name and labels, as text (None: not wanted)

    def __call__(self, text: str) -> dict[Series, float]:
        found: dict[Series, float] = {}
        for line in text.splitlines():
            if not line.startswith("classifier_"):
                continue
            head, _, value = line.rpartition(" ")
            if head not in self.parsed:
                self.parsed[head] = self._series(head)
            series = self.parsed[head]
            if series is not None:
                found[series] = float(value)
        return found

    def _series(self, head: str) -> Series | None:
        name, _, labels = head.partition("{")
        if stem(name) not in self.wanted or name.endswith("_created"):
            return None
        unescaped = {k: _ESCAPED.sub(lambda m: _UNESCAPE[m.group(0)], v) for k, v in _LABEL.findall(labels)}
        return name, frozenset(unescaped.items())


def correct(prediction: dict[str, Any], truth: Truth) -> bool:
    """The default decision against the label, by the task's truth rules: the same label (binary, multiclass;
    hierarchical: the deepest decided node is the leaf), the same set (multilabel)."""
    if isinstance(truth, list):
        return set(prediction.get("labels", [])) == set(truth)
    return prediction.get("label") == truth


class Runner:
    """Steps of traffic on one server, with the scrapes and the labels still to send across phases."""

    def __init__(
        self, url: str, models: Sequence[Model], wanted: set[str], delay: int, log_tail: Callable[[], str],
        transport: httpx.BaseTransport | None = None,
    ) -> None:  # fmt: skip
        self.url, self.models, self.delay, self.log_tail = url, list(models), delay, log_tail
        self.read = Reader(wanted | set(SETTLED_BY))
        self.scrapes = Scrapes()
        self.client = httpx.Client(timeout=TIMEOUT, transport=transport)
        self.pool = ThreadPoolExecutor(len(self.models))
        self.due: deque[tuple[int, list[dict[str, Any]]]] = deque()  # (step, feedback items)
        self.sent = dict.fromkeys((m.name for m in self.models), 0)
        self.accepted = dict.fromkeys((m.name for m in self.models), 0)
        self.labels_sent = 0
        self.step_seconds: list[float] = []
        self.scrapes.add(self._scrape(), time.time())

    def close(self) -> None:
        self.pool.shutdown()
        self.client.close()

    def run(self, phase: Phase, rng: np.random.Generator) -> PhaseRun:
        began = time.monotonic()
        start = len(self.scrapes) - 1
        measured = {m.name: Tally() for m in self.models if phase.fault is None or phase.applies(m)}
        for _ in range(phase.warmup):
            self._step({m.name: clean(m, rng, ROWS_PER_STEP) for m in self.models}, {})
        onset = len(self.scrapes) - 1
        for step in range(phase.steps):
            batches = {}
            for model in self.models:
                batch = clean(model, rng, ROWS_PER_STEP)
                if phase.fault is not None and phase.applies(model):
                    batch = phase.fault.apply(model, rng, batch, phase.size_at(step), phase.share)
                batches[model.name] = batch
            self._step(batches, measured)
        stop = len(self.scrapes)
        for name, tally in measured.items():
            rows = self.scrapes.total(stop - 1, "classifier_estimated_rows_total", model=name) - self.scrapes.total(
                onset, "classifier_estimated_rows_total", model=name
            )
            hits = self.scrapes.total(stop - 1, "classifier_estimated_correct_total", model=name) - self.scrapes.total(
                onset, "classifier_estimated_correct_total", model=name
            )
            tally.estimated = hits / rows if rows else math.nan
        return PhaseRun(phase, start, onset, stop, measured, time.monotonic() - began)

    def _step(self, batches: dict[str, Batch], measured: dict[str, Tally]) -> None:
        began = time.monotonic()
        step = len(self.scrapes)
        by_name = {m.name: m for m in self.models}
        items: list[dict[str, Any]] = []
        for name, batch, answer in self.pool.map(lambda job: (*job, self._predict(*job)), batches.items()):
            self.sent[name] += len(batch.truth)
            tally = measured.get(name)
            if tally is not None:
                tally.sent += len(batch.truth)
            if answer is None:
                continue  # refused with 400 (not silent): no prediction to label
            self.accepted[name] += len(answer)
            for prediction, truth in zip(answer, batch.truth, strict=True):
                items.append(by_name[name].feedback_item(str(prediction["id"]), truth))
            if tally is not None:
                tally.accepted += len(answer)
                tally.correct += sum(correct(p, t) for p, t in zip(answer, batch.truth, strict=True))
                tally.sources.update(int(s) for s in batch.source if s >= 0)
                tally.fresh += int((batch.source < 0).sum())
        self.due.append((step + self.delay, items))
        while self.due and self.due[0][0] <= step:
            self._feedback(self.due.popleft()[1])
        self.scrapes.add(self._settled(), time.time())
        self.step_seconds.append(time.monotonic() - began)

    def _scrape(self) -> dict[Series, float]:
        return self.read(self.client.get(f"{self.url}/metrics").text)

    def _predict(self, name: str, batch: Batch) -> list[dict[str, Any]] | None:
        answer = self.client.post(f"{self.url}/predict", json={"model": name, "instances": batch.rows()})
        if answer.status_code == 200:
            predictions: list[dict[str, Any]] = answer.json()["predictions"]
            return predictions
        if answer.status_code != 400:
            raise RuntimeError(f"/predict {name} answered {answer.status_code}: {answer.text[:300]}")
        return None

    def _feedback(self, items: list[dict[str, Any]]) -> None:
        if not items:
            return
        answer = self.client.post(f"{self.url}/feedback", json={"feedback": items})
        if answer.status_code != 200 or answer.json()["errors"]:
            raise RuntimeError(f"/feedback answered {answer.status_code}: {answer.text[:500]}")
        self.labels_sent += len(items)

    def _settled(self) -> dict[Series, float]:
        """The first scrape in which every worker's writes of the step show."""
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            found = self._scrape()
            if self._complete(found):
                return found
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"metrics did not settle in {SETTLE_TIMEOUT_S:.0f} s (sent {self.sent}, accepted {self.accepted}, "
                    f"labels {self.labels_sent}; found {self._counts(found)}):\n{self.log_tail()}"
                )
            time.sleep(0.02)

    def _counts(self, found: dict[Series, float]) -> tuple[float, dict[str, tuple[float, float]]]:
        """Labels accepted, and per model the rows received and estimated, in a scrape."""

        def total(name: str, **labels: str) -> float:
            wanted = set(labels.items())
            return sum(v for (sample, key), v in found.items() if sample == name and wanted <= key)

        per_model = {
            name: (total("classifier_rows_total", model=name), total("classifier_estimated_rows_total", model=name))
            for name in self.sent
        }
        return total("classifier_feedback_items_total", kind="label", result="accepted"), per_model

    def _complete(self, found: dict[Series, float]) -> bool:
        labels, per_model = self._counts(found)
        return labels == self.labels_sent and all(
            per_model[name] == (self.sent[name], self.accepted[name]) for name in self.sent
        )
