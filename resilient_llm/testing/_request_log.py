"""The simulator's request log: one line per HTTP request when it ends, for ``simulate --log-requests``.

::

    127.0.0.1:50712 POST /v1/chat/completions 200 stream 5.104s
    127.0.0.1:50714 POST /v1/chat/completions client went away after 60.002s

Lines go to the ``resilient_llm.testing.requests`` logger at INFO. A request the client gives up on
(a ghosted or lost answer, say) is logged when its connection closes. The attempt's fault, if any,
is logged when it is drawn, by the ``resilient_llm.testing`` logger at DEBUG.
"""

from __future__ import annotations

import asyncio
import logging
import time

from aiohttp import web
from aiohttp.typedefs import Handler

__all__ = ["REQUEST_LOGGER", "log_requests"]

REQUEST_LOGGER = logging.getLogger("resilient_llm.testing.requests")


def _peer(request: web.Request) -> str:
    peername = request.transport.get_extra_info("peername") if request.transport is not None else None
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return request.remote or "-"


@web.middleware
async def log_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Log each request with its status, whether it streamed, and how long it took."""
    started = time.monotonic()
    where = f"{_peer(request)} {request.method} {request.path}"
    try:
        response = await handler(request)
    except asyncio.CancelledError:
        REQUEST_LOGGER.info("%s client went away after %.3fs", where, time.monotonic() - started)
        raise
    except web.HTTPException as exc:
        REQUEST_LOGGER.info("%s %d %.3fs", where, exc.status, time.monotonic() - started)
        raise
    streamed = " stream" if response.content_type == "text/event-stream" else ""
    REQUEST_LOGGER.info("%s %d%s %.3fs", where, response.status, streamed, time.monotonic() - started)
    return response
