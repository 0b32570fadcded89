"""The raw floor: what one in-process model call costs, without HTTP, JSON or validation.

Every model is called through `load_model(tag).task.score(X)`, which for the flat models is `predict_proba(X)`
(as an array) and for the hierarchical one the greedy path (one classifier per level). Where the service evaluates a
flat linear model as one matrix product (`service/classifiers/linear.py`), the estimator's own `predict_proba` is
measured beside it: what the fold saves per call.

Measured with the BLAS thread pool as the process finds it (as the servers run) and, when that pool has more
than one thread, again limited to one thread: on a busy 2-core machine a multi-threaded BLAS call can wait for a
core far longer than it computes.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from threadpoolctl import threadpool_info, threadpool_limits

from .payloads import take
from .results import FloorResult, ModelQuality

WARMUP_CALLS = 20
MIN_CALLS = 200


def blas_threads() -> int:
    """Threads of the BLAS pool numpy uses (1 when none is found)."""
    return max((int(pool["num_threads"]) for pool in threadpool_info() if pool.get("user_api") == "blas"), default=1)


def folded_estimator(task: Any) -> Any | None:
    """The estimator of a flat task the service evaluates as one matrix product, or None."""
    from service.classifiers.linear import Probabilities

    probabilities = getattr(task, "probabilities", None)
    if isinstance(probabilities, Probabilities) and probabilities.linear is not None:
        return probabilities.estimator
    return None


def measure(model: str, count: int, budget_s: float, threads: int, own_proba: bool = False) -> FloorResult:
    """Median and p90 of single calls, over at least MIN_CALLS calls or `budget_s` seconds, whichever is longer:
    of `task.score`, or with `own_proba` of the folded estimator's own `predict_proba`."""
    from service.store import load_model

    task = load_model(f"{model}:latest").task
    estimator = folded_estimator(task) if own_proba else None
    call: Callable[[Any], Any] = task.score if estimator is None else estimator.predict_proba
    X = take(model, count).astype(float)
    durations: list[float] = []
    with threadpool_limits(limits=threads, user_api="blas") if threads != blas_threads() else nullcontext():
        for _ in range(WARMUP_CALLS):
            call(X)
        deadline = time.perf_counter() + budget_s
        while len(durations) < MIN_CALLS or time.perf_counter() < deadline:
            started = time.perf_counter_ns()
            call(X)
            durations.append((time.perf_counter_ns() - started) / 1e3)
    durations.sort()
    return FloorResult(
        model=model,
        rows=count,
        blas_threads=threads,
        median_us=statistics.median(durations),
        p90_us=durations[int(0.9 * (len(durations) - 1))],
        calls=len(durations),
        call="predict_proba" if own_proba else "task.score",
    )


def run(models: list[str], counts: list[int], budget_s: float) -> list[FloorResult]:
    from service.store import load_model

    pools = sorted({blas_threads(), 1}, reverse=True)
    found = []
    for model in models:
        folded = folded_estimator(load_model(f"{model}:latest").task) is not None
        for count in sorted(set(counts)):
            found += [measure(model, count, budget_s, threads) for threads in pools]
            if folded:
                found.append(measure(model, count, budget_s, blas_threads(), own_proba=True))
    return found


def quality(models: list[str]) -> list[ModelQuality]:
    """The validation accuracy of each model, from its registered metadata (the same held-out rows for the pair)."""
    from service.store import load_model

    found = []
    for model in models:
        validation = load_model(f"{model}:latest").card.validation
        per_level = validation.figures.get("per_level_accuracy")
        found.append(ModelQuality(model, validation.accuracy, validation.macro_f1, per_level))
    return found
