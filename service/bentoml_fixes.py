"""A fix to BentoML 1.4 applied when the service module is imported (BentoML is pinned to 1.4.x).

`TimeoutMiddleware` arms `loop.call_later(timeout, ...)` for every request and never cancels it. The timer
handle holds a copy of the request's context variables, so each request's context stays alive for the
traffic timeout (30 s here): at ~1,000 requests/s that is tens of thousands of live objects that every full
garbage collection walks, the periodic 100-500 ms stalls BENTOML-NOTES.md measured. This version cancels the
timer once the request is answered, and otherwise behaves the same (504 after the timeout).
"""

from __future__ import annotations

import asyncio
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse

from .errors import TIMEOUT


async def _call(self: Any, scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] not in ("http", "websocket"):
        await self.app(scope, receive, send)
        return
    loop = asyncio.get_running_loop()
    answered: asyncio.Future[None] = loop.create_future()
    timer = loop.call_later(self.timeout, self._set_timer_out, answered)

    async def _send(message: Any) -> None:
        if not answered.done():
            answered.set_result(None)
        await send(message)

    handling = asyncio.ensure_future(self.app(scope, receive, _send))
    try:
        await answered
    except TimeoutError:
        if handling.cancel():
            body = {"error": {"code": TIMEOUT, "message": f"no answer within {self.timeout} s"}}
            await JSONResponse(body, status_code=504)(scope, receive, send)
    else:
        await handling
    finally:
        timer.cancel()


def apply() -> None:
    """Replace `TimeoutMiddleware.__call__` with the version that cancels its timer."""
    traffic.TimeoutMiddleware.__call__ = _call  # type: ignore[method-assign]
