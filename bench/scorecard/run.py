"""One scorecard phase: a fresh server, single-row requests in steps, a scrape after each step, then the labels.

Each step sends `step` requests per model (concurrently) and then scrapes `/metrics` once every worker has
written what the step added (the row, estimate and drift-window counts equal what was sent), so scrape i holds
exactly the first i steps. Scrape 0 is taken before any traffic. After the last step every accepted prediction gets
its true label through `POST /feedback`, and `GET /models/{name}/performance` gives the realized accuracy.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from .alerts import Scrape, Series
from .traffic import Fault, Model, Row, Truth, clean

logger = logging.getLogger("bench.scorecard")

CONCURRENCY = 8
SETTLE_TIMEOUT_S = 300.0
FEEDBACK_BATCH = 1000
TIMEOUT = httpx.Timeout(120.0)


@dataclass
class ModelRun:
    """What one model's traffic of a phase gave."""

    sent: int = 0
    accepted: int = 0
    labelled: list[tuple[str, Truth]] = field(default_factory=list)  # (prediction id, true label)
    realized: float | None = None  # accuracy of the default decisions on the accepted rows (from the log)
    estimated: float | None = None  # the live label-free estimate over the same rows (from the counters)


@dataclass
class PhaseRun:
    fault: Fault | None
    step: int
    scrapes: list[Scrape]
    models: dict[str, ModelRun]


def scrape(client: httpx.Client, url: str) -> Scrape:
    taken_at = time.time()
    text = client.get(f"{url}/metrics").text
    samples: dict[Series, float] = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name.startswith("classifier_")
    }
    return Scrape(samples, taken_at)


def run_phase(
    url: str, models: Sequence[Model], fault: Fault | None, requests: int, step: int, seed: int, log_tail: Any
) -> PhaseRun:
    """`requests` single-row requests per model that the fault applies to (all models when clean)."""
    chosen = [m for m in models if fault is None or fault.models(m.name)]
    rows = fault.rows if fault else clean
    runs = {m.name: ModelRun() for m in chosen}
    rng = np.random.default_rng(seed)
    with httpx.Client(timeout=TIMEOUT) as client, ThreadPoolExecutor(CONCURRENCY) as pool:
        scrapes = [scrape(client, url)]
        for _ in range(requests // step):
            jobs: list[tuple[str, Row, Truth]] = []
            for model in chosen:
                batch, truth = rows(model, rng, step)
                jobs += [(model.name, row, label) for row, label in zip(batch, truth, strict=True)]

            def send(job: tuple[str, Row, Truth]) -> tuple[str, str | None, Truth]:
                name, row, label = job
                answer = client.post(f"{url}/predict", json={"model": name, "instances": [row]})
                if answer.status_code == 200:
                    return name, str(answer.json()["predictions"][0]["id"]), label
                if answer.status_code != 400:
                    raise RuntimeError(f"/predict answered {answer.status_code}: {answer.text[:300]}")
                return name, None, label

            for name, prediction_id, label in pool.map(send, jobs):
                run = runs[name]
                run.sent += 1
                if prediction_id is not None:
                    run.accepted += 1
                    run.labelled.append((prediction_id, label))
            scrapes.append(settled(client, url, runs, log_tail))
        give_labels(client, url, models, runs)
    last = scrapes[-1]
    for name, run in runs.items():
        rows_estimated = last.total("classifier_estimated_rows_total", model=name)
        if rows_estimated:
            run.estimated = last.total("classifier_estimated_correct_total", model=name) / rows_estimated
    return PhaseRun(fault, step, scrapes, runs)


def settled(client: httpx.Client, url: str, runs: dict[str, ModelRun], log_tail: Any) -> Scrape:
    """The first scrape in which every worker's writes of the step show: row counts, estimate rows and the drift
    window equal what was sent and accepted."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        found = scrape(client, url)
        if all(
            found.total("classifier_rows_total", model=name) == run.sent
            and found.total("classifier_estimated_rows_total", model=name) == run.accepted
            and found.total("classifier_drift_window_rows", model=name) == run.accepted
            for name, run in runs.items()
        ):
            return found
        if time.monotonic() > deadline:
            raise RuntimeError(f"metrics did not settle in {SETTLE_TIMEOUT_S:.0f} s:\n{log_tail()}")
        time.sleep(0.05)


def give_labels(client: httpx.Client, url: str, models: Sequence[Model], runs: dict[str, ModelRun]) -> None:
    """Every accepted prediction's true label, then the realized accuracy of the served version."""
    by_name = {m.name: m for m in models}
    for name, run in runs.items():
        items = [by_name[name].feedback_item(pid, truth) for pid, truth in run.labelled]
        for start in range(0, len(items), FEEDBACK_BATCH):
            answer = client.post(f"{url}/feedback", json={"feedback": items[start : start + FEEDBACK_BATCH]})
            body = answer.json()
            if answer.status_code != 200 or body["errors"]:
                raise RuntimeError(f"/feedback for {name} answered {answer.status_code}: {answer.text[:500]}")
        if run.labelled:
            performance = client.get(f"{url}/models/{name}/performance").json()
            (figures,) = performance["versions"]
            if figures["labelled"] != run.accepted:
                raise RuntimeError(f"{name}: {figures['labelled']} labelled of {run.accepted} predictions")
            run.realized = figures["accuracy"]
