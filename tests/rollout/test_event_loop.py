"""A promotion or a shadow change never holds the event loop: loading a version, the database, the new monitor's
window files, and the lock the follower thread holds while it loads, are all waited on from worker threads.

Two guards: asyncio's debug mode reports every callback of the loop that ran longer than `BUDGET` (a promotion's
own steps on the loop take microseconds; a skops load, or a wait on the follower's lock, takes far longer), and the
slow steps themselves say which thread ran them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import bentoml
import pytest
import sqlalchemy as sa
from starlette.testclient import TestClient

from service.rollout import promotion
from service.serving import ModelRegistry

BUDGET = 0.05  # seconds a callback of the loop may run: generous for a slow machine, short of any blocking step
HELD = 20 * BUDGET  # how long the follower (played by the test) holds the lock while the route wants it


class SlowCallbacks(logging.Handler):
    """asyncio's debug-mode reports of callbacks that ran longer than the loop's `slow_callback_duration`."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith("Executing"):
            self.reports.append(message)


def slow_callbacks(run: Callable[[], Awaitable[Any]]) -> list[str]:
    """Run `run()` on a new event loop in debug mode; the callbacks that held the loop longer than `BUDGET`."""
    handler = SlowCallbacks()
    asyncio_logger = logging.getLogger("asyncio")
    level = asyncio_logger.level
    asyncio_logger.addHandler(handler)
    asyncio_logger.setLevel(logging.WARNING)
    try:
        with asyncio.Runner(debug=True) as runner:
            runner.get_loop().slow_callback_duration = BUDGET
            runner.run(run())
    finally:
        asyncio_logger.removeHandler(handler)
        asyncio_logger.setLevel(level)
    return handler.reports


def held_for(lock: threading.Lock, seconds: float) -> threading.Timer:
    """`lock` taken now and let go in `seconds` by another thread: the follower, loading a version meanwhile."""
    lock.acquire()
    release = threading.Timer(seconds, lock.release)
    release.start()
    return release


def test_the_watch_reports_a_blocking_call_and_a_wait_on_a_held_lock() -> None:
    async def sleeps() -> None:
        await asyncio.sleep(0)
        time.sleep(4 * BUDGET)  # what a skops load or a slow SELECT on the loop would do

    assert len(slow_callbacks(sleeps)) == 1

    lock = threading.Lock()

    async def waits() -> None:
        await asyncio.sleep(0)
        held_for(lock, 4 * BUDGET)
        with lock:  # what `_swap` on the loop did while the follower thread loaded a version
            pass

    assert len(slow_callbacks(waits)) == 1

    async def hands_over() -> None:
        await asyncio.sleep(0)
        held_for(lock, 4 * BUDGET)
        await asyncio.to_thread(lock.acquire)
        lock.release()

    assert slow_callbacks(hands_over) == []


class Threads:
    """The threads each slow step of the rollout ran on."""

    def __init__(self) -> None:
        self.ran: dict[str, set[int]] = {}

    def record(self, step: str) -> None:
        self.ran.setdefault(step, set()).add(threading.get_ident())


@pytest.fixture
def threads(monkeypatch: pytest.MonkeyPatch, served: tuple[str, str, str]) -> Iterator[Threads]:
    """Which threads loaded versions, ran SQL, built monitors and took the rollout's lock, while the test runs."""
    service = bentoml.get_current_service()
    found = Threads()
    load_model, serving = promotion.load_model, ModelRegistry.serving

    def loading(*args: Any) -> Any:
        found.record("load a version")
        return load_model(*args)

    def building(registry: ModelRegistry, *args: Any) -> Any:
        found.record("build a monitor and its window files")
        return serving(registry, *args)

    class RecordedLock:
        def __init__(self, lock: threading.Lock) -> None:
            self.lock = lock

        def __enter__(self) -> None:
            found.record("take the rollout's lock")
            self.lock.acquire()

        def __exit__(self, *exc: object) -> None:
            self.lock.release()

    def executing(*args: Any) -> None:
        found.record("run SQL")

    rollout = service.registry.rollout
    monkeypatch.setattr(promotion, "load_model", loading)
    monkeypatch.setattr(ModelRegistry, "serving", building)
    monkeypatch.setattr(rollout, "_lock", RecordedLock(rollout._lock))
    engine = service.log.stores.rollout.engine
    sa.event.listen(engine, "before_cursor_execute", executing)
    yield found
    sa.event.remove(engine, "before_cursor_execute", executing)


def test_promotions_and_shadow_changes_never_hold_the_event_loop(
    api: TestClient, served: tuple[str, str, str], threads: Threads
) -> None:
    name, v1, v2 = served
    rollout = bentoml.get_current_service().registry.rollout
    lock: threading.Lock = rollout._lock.lock  # type: ignore[attr-defined]
    loop_thread: set[int] = set()

    async def changes() -> list[dict[str, Any]]:
        loop_thread.add(threading.get_ident())
        held_for(lock, HELD)
        answers = [await rollout.promote(name, v2, "test", force=True)]
        held_for(lock, HELD)
        answers.append(await rollout.shadow(name, v1, "test"))
        answers.append(await rollout.shadow(name, None, "test"))
        answers.append(await rollout.promote(name, v1, "test", force=True))  # the rollback
        return answers

    answers: list[dict[str, Any]] = []

    async def run() -> None:
        answers.extend(await changes())

    assert slow_callbacks(run) == []
    assert [(answer["version"], answer.get("previous"), answer.get("shadow")) for answer in answers] == [
        (v2, v1, None),
        (v2, None, v1),
        (v2, None, None),
        (v1, v2, None),
    ]
    assert set(threads.ran) == {
        "load a version",
        "build a monitor and its window files",
        "take the rollout's lock",
        "run SQL",
    }
    assert {step: bool(ran & loop_thread) for step, ran in threads.ran.items()} == dict.fromkeys(threads.ran, False)
