"""HTTP I/O: the transport contract (``_base``) and its aiohttp and httpx implementations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import sniffio

from ._base import Transport


def default_transport(http_client: Callable[[], Any], *, user_given: bool) -> Callable[[], Transport]:
    """aiohttp on asyncio (fast); otherwise the client's own ``AsyncClient`` through httpx.

    ``http_client`` returns openai's ``AsyncClient`` (the user's ``http_client`` when ``user_given``):
    a user's client carries their proxies, certificates and auth, so the library's own I/O goes
    through it too.
    """

    def make() -> Transport:
        if not user_given and sniffio.current_async_library() == "asyncio":
            from ._aiohttp import AiohttpTransport

            return AiohttpTransport()
        from ._httpx import HttpxTransport

        return HttpxTransport(http_client())

    return make


__all__ = ["Transport", "default_transport"]
