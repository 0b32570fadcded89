"""Adaptive batching: rows of concurrent requests to one model share one model call.

Requests validate their rows on the event loop and queue them; one drain task per model takes everything
queued (up to `max_rows` rows, FIFO, whole requests) and scores it in one call on the worker's inference
thread (a lone request with nothing else queued is scored on the loop: the hop would only add latency).
While a call runs, new requests queue up, so the batch size follows the load: one row at low traffic, many
under load, with no fixed wait unless `max_wait` asks for one. Each request gets back exactly
its rows' scores and applies its own options to them.
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

from .classifiers import Task

logger = logging.getLogger(__name__)

ModelCallObserver = Callable[[float, int], None]  # (seconds inside the model, rows)
RowsObserver = Callable[[Any], None]  # the joined input of a model call


@dataclass
class _Queued:
    X: Any
    rows: int
    future: asyncio.Future[Any]


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
    ) -> None:
        """`observe_rows` sees each call's joined input once, so per-row monitoring is paid per batch."""
        self.task = task
        self.executor = executor
        self.max_rows = max_rows
        self.max_wait = max_wait
        self.observe = observe
        self.observe_rows = observe_rows
        self._queue: deque[_Queued] = deque()
        self._draining = False

    async def score(self, X: Any, rows: int) -> Any:
        """The scores of `X`, computed in a model call shared with other queued requests."""
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
        loop = asyncio.get_running_loop()
        X = self.task.join_inputs([q.X for q in batch])
        if self.observe_rows is not None:
            # after the callers have their answers: monitoring stays off the requests' critical path
            loop.call_soon(self._observe_rows, X)
        try:
            # a lone request with nobody waiting gains nothing from the thread hop: score it on the loop
            scores = self._call(X) if len(batch) == 1 and not self._queue else await self._score(X)
        except Exception:  # noqa: BLE001 -- isolate the failure: score each request on its own
            if len(batch) > 1:
                logger.warning("a batched model call failed; scoring its %d requests one by one", len(batch))
            for queued in batch:
                await self._run_alone(queued)
            return
        start = 0
        for queued in batch:
            if not queued.future.done():  # a caller that went away cancelled its future
                queued.future.set_result(self.task.slice_scores(scores, start, start + queued.rows))
            start += queued.rows

    async def _run_alone(self, queued: _Queued) -> None:
        try:
            scores = await self._score(queued.X)
        except Exception as exc:  # noqa: BLE001 -- handed to the one request it belongs to
            if not queued.future.done():
                queued.future.set_exception(exc)
            return
        if not queued.future.done():
            queued.future.set_result(scores)

    async def _score(self, X: Any) -> Any:
        """One model call, on the inference thread: the event loop reads and answers requests meanwhile."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, self._call, X)

    def _call(self, X: Any) -> Any:
        started = time.perf_counter()
        scores = self.task.score(X)
        self.observe(time.perf_counter() - started, int(X.shape[0]))
        return scores

    def _observe_rows(self, X: Any) -> None:
        try:
            self.observe_rows(X)  # type: ignore[misc]
        except Exception:  # noqa: BLE001 -- a monitoring fault must not fail the predictions
            logger.exception("monitoring the rows of a model call failed")
