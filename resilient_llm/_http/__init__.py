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


def default_transport(
    http_client: Callable[[], Any], *, user_given: bool, limits: Limits = DEFAULT_LIMITS
) -> Callable[[], Transport]:
    """aiohttp on asyncio (fast); otherwise the client's own ``AsyncClient`` through httpx.

    ``http_client`` returns openai's ``AsyncClient`` (the user's ``http_client`` when ``user_given``):
    a user's client carries their proxies, certificates and auth, so the library's own I/O goes
    through it too.
    """

    def make() -> Transport:
        if not user_given and sniffio.current_async_library() == "asyncio":
            from ._aiohttp import AiohttpTransport

            return AiohttpTransport(limits=limits)
        from ._httpx import HttpxTransport

        return HttpxTransport(http_client(), limits=limits)

    return make
