"""BentoML's TimeoutMiddleware, as fixed by service/bentoml_fixes.py, leaves no timer behind a request."""

from __future__ import annotations

import asyncio

from starlette.testclient import TestClient

from service.bentoml_fixes import _call
from tests.helpers import digits_rows


def live_timeout_timers() -> int:
    loop = asyncio.get_running_loop()
    scheduled = loop._scheduled  # type: ignore[attr-defined]
    return sum(1 for h in scheduled if not h.cancelled() and "_set_timer_out" in repr(h._callback))


def test_answered_requests_leave_no_timeout_timer(api: TestClient) -> None:
    from bentoml._internal.server.http.traffic import TimeoutMiddleware

    assert TimeoutMiddleware.__call__ is _call
    for _ in range(20):
        assert (
            api.post("/predict", json={"model": "digits", "instances": digits_rows(1)[0].tolist()}).status_code == 200
        )
    assert api.portal.call(_count_in_loop) == 0  # type: ignore[union-attr]


async def _count_in_loop() -> int:
    return live_timeout_timers()
