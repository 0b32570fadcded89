"""Adaptive batching: concurrent requests share model calls, each gets its own rows, options and failures."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
from starlette.testclient import TestClient

from service import batching
from service.batching import INLINE_CALL_S, Batcher
from service.classifiers import NonFiniteScoreError, Options, Task
from service.store import load_model
from tests.helpers import catalog_rows


class Recording:
    """Wraps a task's `score`: records each call's row count and fails calls that hold a poisoned row."""

    def __init__(self, task: Task) -> None:
        self.task = task
        self.calls: list[int] = []

    def __call__(self, X: Any) -> Any:
        self.calls.append(len(X))
        if (np.asarray(X)[:, 0] < 0).any():
            raise ValueError("poisoned row")
        return type(self.task).score(self.task, X)


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(max_workers=1) as pool:
        yield pool


def batcher_for(tag: str, executor: ThreadPoolExecutor, max_rows: int = 1000) -> tuple[Batcher, Recording, Task]:
    task = load_model(tag).task
    recording = Recording(task)
    task.score = recording  # type: ignore[method-assign]
    observed: list[tuple[float, int]] = []
    return Batcher(task, executor, max_rows, 0.0, lambda s, n: observed.append((s, n))), recording, task


def assert_same(got: Any, expected: Any) -> None:
    """Equal structure and labels; floats equal up to rounding (BLAS may sum a bigger batch in another order)."""
    if isinstance(expected, dict):
        assert got.keys() == expected.keys()
        for key in expected:
            assert_same(got[key], expected[key])
    elif isinstance(expected, list):
        assert len(got) == len(expected)
        for g, e in zip(got, expected, strict=True):
            assert_same(g, e)
    elif isinstance(expected, float):
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-12)
    else:
        assert got == expected


def requests_of(X: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    bounds = np.cumsum([0, *sizes])
    return [X[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


async def score_all(batcher: Batcher, parts: list[np.ndarray]) -> list[Any]:
    return list(await asyncio.gather(*(batcher.score(p, len(p)) for p in parts), return_exceptions=True))


@pytest.mark.parametrize("model", ["digits", "digit_groups", "digit_attributes"])
def test_concurrent_requests_share_one_call_and_get_their_own_rows(
    catalog: dict[str, str], executor: ThreadPoolExecutor, model: str
) -> None:
    batcher, recording, task = batcher_for(catalog[model], executor)
    parts = requests_of(catalog_rows(model, 20), [1, 5, 3, 1, 10])
    options = [Options(), Options(top_k=2), Options(return_probabilities=True), Options(), Options(top_k=3)]
    if model == "digit_attributes":
        options = [Options(), Options(top_k=2), Options(threshold=0.2), Options(), Options(threshold=0.9)]
    results = asyncio.run(score_all(batcher, parts))
    assert recording.calls == [20]  # one model call for five requests
    for part, scores, option in zip(parts, results, options, strict=True):
        alone = task.decide(type(task).score(task, part), option)
        batched = task.decide(scores.scores, option)
        assert_same(list(batched.records()), list(alone.records()))


def test_a_batch_never_exceeds_max_rows_and_keeps_requests_whole(
    catalog: dict[str, str], executor: ThreadPoolExecutor
) -> None:
    batcher, recording, _ = batcher_for(catalog["digits"], executor, max_rows=8)
    parts = requests_of(catalog_rows("digits", 23), [3, 4, 2, 5, 9])  # 9 > max_rows: scored alone
    results = asyncio.run(score_all(batcher, parts))
    assert recording.calls == [7, 7, 9]  # [3, 4], [2, 5], [9]
    assert [len(r.scores) for r in results] == [3, 4, 2, 5, 9]


def test_a_failing_request_does_not_fail_the_others(catalog: dict[str, str], executor: ThreadPoolExecutor) -> None:
    batcher, recording, task = batcher_for(catalog["breast_cancer"], executor)
    parts = requests_of(catalog_rows("breast_cancer", 6), [2, 2, 2])
    parts[1] = parts[1].copy()
    parts[1][0, 0] = -1.0  # the model raises on this request's rows
    results = asyncio.run(score_all(batcher, parts))
    assert isinstance(results[1], ValueError)
    for part, scores in ((parts[0], results[0]), (parts[2], results[2])):
        np.testing.assert_array_equal(scores.scores, type(task).score(task, part))
    assert recording.calls == [6, 2, 4, 2, 2]  # the batch failed: its halves, then the failing half's


def test_a_failed_batch_is_bisected_not_scored_again_request_by_request(
    catalog: dict[str, str], executor: ThreadPoolExecutor
) -> None:
    """One bad request among 8 one-row requests: halves are scored, and only a half that fails is split again,
    down to the bad request alone; every other request gets its scores."""
    batcher, recording, task = batcher_for(catalog["digits"], executor)
    parts = requests_of(catalog_rows("digits", 8), [1] * 8)
    parts[5] = parts[5].copy()
    parts[5][0, 0] = -1.0
    results = asyncio.run(score_all(batcher, parts))
    assert recording.calls == [8, 4, 4, 2, 1, 1, 2]  # [0-7], [0-3], [4-7], [4-5], [4], [5], [6-7]: depth first
    assert [isinstance(r, ValueError) for r in results] == [i == 5 for i in range(8)]
    for i in (0, 4, 7):
        np.testing.assert_array_equal(results[i].scores, type(task).score(task, parts[i]))


def test_one_bad_request_among_many_costs_a_logarithmic_number_of_calls(
    catalog: dict[str, str], executor: ThreadPoolExecutor
) -> None:
    batcher, recording, _ = batcher_for(catalog["breast_cancer"], executor)
    parts = requests_of(catalog_rows("breast_cancer", 64), [1] * 64)
    parts[37] = parts[37].copy()
    parts[37][0, 0] = -1.0
    results = asyncio.run(score_all(batcher, parts))
    assert len(recording.calls) == 1 + 2 * 6  # the batch, then two halves on each of log2(64) levels
    assert sum(isinstance(r, ValueError) for r in results) == 1 and isinstance(results[37], ValueError)


def test_a_failure_deciding_a_call_fails_its_requests_instead_of_leaving_them_waiting(
    catalog: dict[str, str], executor: ThreadPoolExecutor
) -> None:
    """The model's own decisions are made once per call, for monitoring, the log and shadows; if that fails every
    request of the call gets the error (an internal error, the service's fault) and the next call is served."""
    batcher, _, task = batcher_for(catalog["breast_cancer"], executor)
    failures = iter([RuntimeError("deciding failed")])

    def failing_once(scores: Any) -> Any:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return type(task).default_decisions(task, scores)

    task.default_decisions = failing_once  # type: ignore[method-assign]
    parts = requests_of(catalog_rows("breast_cancer", 6), [2, 2, 2])

    async def twice() -> tuple[list[Any], list[Any]]:
        return await score_all(batcher, parts), await score_all(batcher, parts)

    first, second = asyncio.run(asyncio.wait_for(twice(), timeout=120))
    assert all(isinstance(result, RuntimeError) for result in first)
    for part, scored in zip(parts, second, strict=True):
        np.testing.assert_array_equal(scored.scores, type(task).score(task, part))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_a_request_given_non_finite_scores_fails_alone_without_scoring_again(
    catalog: dict[str, str], executor: ThreadPoolExecutor
) -> None:
    """Rows so far out of range that the model's arithmetic overflows score NaN: their request gets
    `NonFiniteScoreError` naming its first such row, the others their scores, from the one call; monitoring sees
    the answered requests' rows only."""
    batcher, recording, inputs, scored = recorded_and_observed(catalog["breast_cancer"], executor)
    task = batcher.task
    parts = requests_of(catalog_rows("breast_cancer", 7), [2, 3, 2])
    parts[1] = parts[1].copy()
    parts[1][1:] = 1e308  # rows 1 and 2 of the second request
    results = score_then_observe(batcher, parts)
    assert recording.calls == [7]
    assert isinstance(results[1], NonFiniteScoreError) and results[1].row == 1
    for part, scores in ((parts[0], results[0]), (parts[2], results[2])):
        np.testing.assert_array_equal(scores.scores, type(task).score(task, part))
    assert inputs == [4] and scored == [4]


def test_concurrent_http_requests_with_mixed_options(api: TestClient) -> None:
    """Through the service: requests sent at once answer exactly as the same requests sent one by one."""
    X = catalog_rows("digits", 12)
    bodies = [
        {"model": "digits", "instances": X[i : i + 3].tolist(), "options": options}
        for i, options in zip(
            range(0, 12, 3), [{}, {"top_k": 2}, {"min_confidence": 0.99}, {"return_probabilities": True}], strict=True
        )
    ]

    def strip_ids(response: Any) -> list[dict[str, Any]]:
        return [{k: v for k, v in p.items() if k != "id"} for p in response.json()["predictions"]]

    one_by_one = [strip_ids(api.post("/predict", json=body)) for body in bodies]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        at_once = list(pool.map(lambda body: strip_ids(api.post("/predict", json=body)), bodies))
    assert_same(at_once, one_by_one)


def observing_batcher(
    tag: str, executor: ThreadPoolExecutor, every: float = 60.0, max_rows: int = 4096
) -> tuple[Batcher, list[int], list[int]]:
    """A batcher whose monitoring records the row counts it is handed: inputs, and scores."""
    task = load_model(tag).task
    inputs: list[int] = []
    scored: list[int] = []
    batcher = Batcher(
        task, executor, 1000, 0.0, lambda s, n: None,
        lambda X: inputs.append(len(X)), lambda decisions: scored.append(len(decisions.drift_labels)),
    )  # fmt: skip
    batcher.to_observe.every = every
    batcher.to_observe.max_rows = max_rows
    return batcher, inputs, scored


def recorded_and_observed(tag: str, executor: ThreadPoolExecutor) -> tuple[Batcher, Recording, list[int], list[int]]:
    """`observing_batcher` whose task's model calls are recorded (`Recording`)."""
    batcher, inputs, scored = observing_batcher(tag, executor)
    recording = Recording(batcher.task)
    batcher.task.score = recording  # type: ignore[method-assign]
    return batcher, recording, inputs, scored


def score_then_observe(batcher: Batcher, parts: list[np.ndarray]) -> list[Any]:
    """Every request's scores (or exception), then monitoring handed what waits for it."""

    async def run() -> list[Any]:
        results = await score_all(batcher, parts)
        batcher.to_observe.flush()
        return results

    return asyncio.run(run())


def test_monitoring_gets_the_calls_of_a_while_joined_after_the_answers(
    catalog: dict[str, str], executor: ThreadPoolExecutor
) -> None:
    batcher, inputs, scored = observing_batcher(catalog["digit_groups"], executor)
    rows = catalog_rows("digit_groups", 9)

    async def three_calls_then_flush() -> list[int]:
        for part in requests_of(rows, [2, 3, 4]):
            await batcher.score(part, len(part))  # one after the other: three model calls
        waiting = list(inputs)
        batcher.to_observe.flush()
        return waiting

    assert asyncio.run(three_calls_then_flush()) == []  # answered, not yet observed
    assert inputs == [9] and scored == [9]  # one observation of the three calls' rows


def test_monitoring_observes_at_once_when_max_rows_wait(catalog: dict[str, str], executor: ThreadPoolExecutor) -> None:
    batcher, inputs, _ = observing_batcher(catalog["digits"], executor, max_rows=5)  # the interval: a minute
    rows = catalog_rows("digits", 6)

    async def calls() -> None:
        await batcher.score(rows[:2], 2)
        assert inputs == []
        await batcher.score(rows[2:], 4)  # 6 rows wait: over max_rows, observed at once

    asyncio.run(calls())
    assert inputs == [6]


def test_monitoring_observes_after_its_interval(catalog: dict[str, str], executor: ThreadPoolExecutor) -> None:
    batcher, inputs, _ = observing_batcher(catalog["digits"], executor, every=0.05)

    async def call_then_wait() -> None:
        await batcher.score(catalog_rows("digits", 1), 1)
        deadline = asyncio.get_running_loop().time() + 120
        while not inputs and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)  # the interval's timer fires on the loop

    asyncio.run(call_then_wait())
    assert inputs == [1]


def test_rows_of_a_failed_request_are_not_observed(catalog: dict[str, str], executor: ThreadPoolExecutor) -> None:
    """Monitoring sees the rows that got an answer; the serving layer counts a failed request's rows as rejected."""
    batcher, recording, inputs, scored = recorded_and_observed(catalog["breast_cancer"], executor)
    parts = requests_of(catalog_rows("breast_cancer", 6), [2, 2, 2])
    parts[1] = parts[1].copy()
    parts[1][0, 0] = -1.0
    results = score_then_observe(batcher, parts)
    assert isinstance(results[1], ValueError) and recording.calls == [6, 2, 4, 2, 2]
    assert inputs == [4] and scored == [4]


class CountingExecutor(ThreadPoolExecutor):
    """Counts the model calls handed to the inference thread."""

    def __init__(self) -> None:
        super().__init__(max_workers=1)
        self.calls = 0

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


# the quick case raises the bound far above any call: a loaded machine can slow a real call past 200 µs
@pytest.mark.parametrize("seconds, inline_call_s, on_thread", [(0.0, 1.0, False), (0.002, INLINE_CALL_S, True)])
def test_calls_quicker_than_a_thread_hop_run_on_the_loop(
    catalog: dict[str, str], monkeypatch: pytest.MonkeyPatch, seconds: float, inline_call_s: float, on_thread: bool
) -> None:
    monkeypatch.setattr(batching, "INLINE_CALL_S", inline_call_s)
    task = load_model(catalog["breast_cancer"]).task
    score = type(task).score

    def timed(X: Any) -> Any:
        time.sleep(seconds)  # a model this slow is worth the hop: the loop reads requests meanwhile
        return score(task, X)

    task.score = timed  # type: ignore[method-assign]
    with CountingExecutor() as executor:
        batcher = Batcher(task, executor, 1000, 0.0, lambda s, n: None)
        parts = requests_of(catalog_rows("breast_cancer", 30), [3] * 10)
        for _ in range(10):  # concurrent requests: batched calls
            asyncio.run(score_all(batcher, parts))
        assert (executor.calls == 10) is on_thread
        assert executor.calls >= 1  # without a record of the model's speed, the first call goes to the thread
