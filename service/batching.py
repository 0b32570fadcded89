"""Adaptive batching: rows of concurrent requests to one model share one model call.

Requests validate their rows on the event loop and queue them; one drain task per model takes everything
queued (up to `max_rows` rows, FIFO, whole requests) and scores it in one call on the worker's inference
thread (while the model's recent calls took under `INLINE_CALL_S` of CPU, a call runs on the loop: the hop would
cost more than the call).
While a call runs, new requests queue up, so the batch size follows the load: one row at low traffic, many
under load, with no fixed wait unless `max_wait` asks for one. Each request gets back exactly
its rows' scores and applies its own options to them, or its own failure: a call the model fails is bisected by
request until the failing requests are alone, and a request whose rows got a NaN or infinite score gets
`NonFiniteScoreError`; the other requests of the batch get their scores.

The model's default decisions are computed once per call (`Task.default_decisions`) and handed to each request
with its scores (`Scored`), for the prediction log and the shadow runner. Monitoring sees the calls' inputs, scores
and default decisions after the callers have their answers, in groups: `CallsToObserve` holds them for up to
`OBSERVE_EVERY_S` (or `OBSERVE_MAX_ROWS` rows) and hands them over joined, so its fixed cost per call (some 50 µs
for a one-row call) is paid once per group, and no group keeps the loop long (4,096-row groups put breast_cancer's
p99 at 64 rows x 4 connections at 11-14 ms against 4-5 ms without monitoring).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from .classifiers import DefaultDecisions, NonFiniteScoreError, Scored, Task
from .observations import Observations

logger = logging.getLogger(__name__)

INLINE_CALL_S = 0.0002  # model calls quicker than this (CPU time, recent form) run on the loop: the hop costs more
OBSERVE_EVERY_S = 0.1  # how late monitoring may see a model call (the metrics flush later anyway)
OBSERVE_MAX_ROWS = 512  # a group this large is observed at once: each observation holds the loop well under 1 ms

ModelCallObserver = Callable[[float, int], None]  # (seconds inside the model, rows)
RowsObserver = Callable[[Any], None]  # the joined input of a model call
DecisionsObserver = Callable[[Observations], None]  # the default decisions of model calls (`Task.observe`)


class CallsToObserve:
    """Model calls waiting for monitoring, observed together on the event loop.

    Everything runs on the loop: `add` after a call's answers are handed out, `flush` from a timer `every`
    seconds after the first call waits, when `max_rows` rows wait, and before `/metrics` renders.
    """

    def __init__(
        self,
        task: Task,
        observe_rows: RowsObserver | None,
        observe_decisions: DecisionsObserver | None,
        every: float = OBSERVE_EVERY_S,
        max_rows: int = OBSERVE_MAX_ROWS,
    ) -> None:
        self.task = task
        self.observe_rows = observe_rows
        self.observe_decisions = observe_decisions
        self.every = every
        self.max_rows = max_rows
        self._inputs: list[Any] = []
        self._scores: list[Any] = []
        self._expected_correct: list[np.ndarray] = []  # of each call's default decisions: all monitoring reads of them
        self._rows = 0
        self._timer: asyncio.TimerHandle | None = None

    def add(self, X: Any, scores: Any, defaults: DefaultDecisions) -> None:
        """The rows of a model call that got an answer, their scores and the model's default decisions on them."""
        if self.observe_rows is None and self.observe_decisions is None:
            return
        self._inputs.append(X)
        self._scores.append(scores)
        self._expected_correct.append(defaults.expected_correct)
        self._rows += int(X.shape[0])
        if self._rows >= self.max_rows:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.every, self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        inputs, scores, expected_correct = self._inputs, self._scores, self._expected_correct
        self._inputs, self._scores, self._expected_correct, self._rows = [], [], [], 0
        if inputs and self.observe_rows is not None:
            _observed(self.observe_rows, lambda: self.task.join_inputs(inputs))
        if scores and self.observe_decisions is not None:
            task = self.task
            _observed(
                self.observe_decisions,
                lambda: task.observe(task.join_scores(scores), _joined(expected_correct)),
            )


def _joined(parts: list[np.ndarray]) -> np.ndarray:
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _observed(observer: Callable[[Any], None], joined: Callable[[], Any]) -> None:
    try:
        observer(joined())
    except Exception:  # noqa: BLE001 -- a monitoring fault must not fail the predictions
        logger.exception("monitoring model calls failed")


@dataclass
class _Queued:
    X: Any
    rows: int
    future: asyncio.Future[Scored]


class Batcher:
    """Coalesces the model calls of one model's concurrent requests."""

    def __init__(
        self,
        task: Task,
        executor: Executor,
        max_rows: int,
        max_wait: float,
        observe: ModelCallObserver,
        observe_rows: RowsObserver | None = None,
        observe_decisions: DecisionsObserver | None = None,
    ) -> None:
        """`observe_rows` and `observe_decisions` see the calls' joined inputs and default decisions, in groups, after
        the callers have their answers (`CallsToObserve`): monitoring stays off the requests' critical path."""
        self.task = task
        self.executor = executor
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.observe = observe
        self.to_observe = CallsToObserve(task, observe_rows, observe_decisions)
        self._recent_call_s = INLINE_CALL_S  # no form yet: the first batched calls go to the thread
        self._queue: deque[_Queued] = deque()
        self._draining = False

    async def score(self, X: Any, rows: int) -> Scored:
        """The scores of `X` and the model's default decisions on them, computed in a model call shared with other
        queued requests."""
        loop = asyncio.get_running_loop()
        queued = _Queued(X, rows, loop.create_future())
        self._queue.append(queued)
        if not self._draining:
            self._draining = True
            loop.create_task(self._drain())
        return await queued.future

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self.max_wait > 0 and sum(q.rows for q in self._queue) < self.max_rows:
                    await asyncio.sleep(self.max_wait)
                await self._run(self._take())
                await asyncio.sleep(0)  # let the loop read the requests that arrived during the call
        finally:
            self._draining = False

    def _take(self) -> list[_Queued]:
        batch = [self._queue.popleft()]
        rows = batch[0].rows
        while self._queue and rows + self._queue[0].rows <= self.max_rows:
            rows += self._queue[0].rows
            batch.append(self._queue.popleft())
        return batch

    async def _run(self, batch: list[_Queued]) -> None:
        """Score `batch` in one call; a call that fails is bisected by request, so that a request the model cannot
        score costs about 2 log2(n) extra calls, not one per request, and the others get their scores."""
        X = self.task.join_inputs([q.X for q in batch])
        try:
            # by the model's speed only: a slow call on the loop (a forest on 64 rows) holds every other request
            scores = self._call(X) if self._recent_call_s < INLINE_CALL_S else await self._score(X)
        except Exception as exc:  # noqa: BLE001 -- the model's failure is the failing request's 400
            if len(batch) == 1:
                if not batch[0].future.done():  # a caller that went away cancelled its future
                    batch[0].future.set_exception(exc)
                return
            middle = len(batch) // 2
            await self._run(batch[:middle])
            await self._run(batch[middle:])
            return
        if len(self.task.non_finite_rows(scores)):  # one vectorised test per call
            self._hand_out_finite(batch, scores)
            return
        defaults = self._default_decisions(batch, scores)
        if defaults is None:
            return
        start = 0
        for queued in batch:
            if not queued.future.done():
                piece = self.task.slice_scores(scores, start, start + queued.rows)
                queued.future.set_result(Scored(piece, defaults, start, start + queued.rows))
            start += queued.rows
        self.to_observe.add(X, scores, defaults)

    def _hand_out_finite(self, batch: list[_Queued], scores: Any) -> None:
        """Scores to the requests whose rows all got finite ones; `NonFiniteScoreError` to the others, whose rows
        monitoring must not count as decisions (the default decisions are those of the finite rows)."""
        task = self.task
        finite: list[tuple[_Queued, Any]] = []
        start = 0
        for queued in batch:
            piece = task.slice_scores(scores, start, start + queued.rows)
            start += queued.rows
            try:
                task.check_finite(piece)
            except NonFiniteScoreError as exc:
                if not queued.future.done():
                    queued.future.set_exception(exc)
                continue
            finite.append((queued, piece))
        if not finite:
            return
        joined = task.join_scores([piece for _, piece in finite])
        defaults = self._default_decisions([queued for queued, _ in finite], joined)
        if defaults is None:
            return
        start = 0
        for queued, piece in finite:
            if not queued.future.done():
                queued.future.set_result(Scored(piece, defaults, start, start + queued.rows))
            start += queued.rows
        self.to_observe.add(task.join_inputs([queued.X for queued, _ in finite]), joined, defaults)

    def _default_decisions(self, batch: list[_Queued], scores: Any) -> Any:
        """The model's own decisions on the call's scores, once per call: monitoring, the log and shadows read them.
        A failure here is the service's (the scores are finite), so every request of the batch gets it rather than
        waiting for its timeout; None then."""
        try:
            return self.task.default_decisions(scores)
        except Exception as exc:  # noqa: BLE001 -- handed to the requests: each answers it as an internal error
            for queued in batch:
                if not queued.future.done():
                    queued.future.set_exception(exc)
            return None

    async def _score(self, X: Any) -> Any:
        """One model call, on the inference thread: the event loop reads and answers requests meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._call, X)

    def _call(self, X: Any) -> Any:
        started, computing = time.perf_counter(), time.thread_time()
        scores = self.task.score(X)
        computed = time.thread_time() - computing
        self.observe(time.perf_counter() - started, int(X.shape[0]))
        # recent form, per call: a slow call (a big batch) sends the next ones to the thread until quick again. The
        # call's CPU time, not its wall time: on the thread, a quick call that waited for the interpreter's lock or
        # for a core looked slow and kept the calls on the thread, each paying a hop that cost more than the call
        self._recent_call_s = 0.8 * self._recent_call_s + 0.2 * computed
        return scores
