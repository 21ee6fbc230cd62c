"""HTTP I/O: the transport contract (``_base``) and its aiohttp and httpx implementations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sniffio

from ._base import Transport


def default_transport(http_client: Any = None) -> Callable[[], Transport]:
    """aiohttp on asyncio (fast); httpx on other backends or around a user's ``http_client``."""

    def make() -> Transport:
        if http_client is None and sniffio.current_async_library() == "asyncio":
            from ._aiohttp import AiohttpTransport

            return AiohttpTransport()
        from ._httpx import HttpxTransport

        return HttpxTransport(http_client)

    return make


__all__ = ["Transport", "default_transport"]
