"""HTTP I/O: the transport contract (``_base``) and its aiohttp and httpx implementations.

Shared by both: request preparation and the request/response descriptions errors carry (``_base``),
bounded decoding (``_decode``), size limits and pacing of body reads (``_body``), redirects
(``_redirects``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sniffio

from .._limits import DEFAULT_LIMITS, Limits
from ._base import RawResponse, Transport, describe_request, describe_response

__all__ = ["RawResponse", "Transport", "default_transport", "describe_request", "describe_response"]


def default_transport(http_client: Any = None, *, limits: Limits = DEFAULT_LIMITS) -> Callable[[], Transport]:
    """aiohttp on asyncio (fast); httpx on other backends or around a user's ``http_client``."""

    def make() -> Transport:
        if http_client is None and sniffio.current_async_library() == "asyncio":
            from ._aiohttp import AiohttpTransport

            return AiohttpTransport(limits=limits)
        from ._httpx import HttpxTransport

        return HttpxTransport(http_client, limits=limits)

    return make
