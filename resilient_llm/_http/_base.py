"""The HTTP contract: the smallest surface the call pipeline needs from an HTTP library.

Two implementations: :mod:`._aiohttp` (asyncio, the fast default) and :mod:`._httpx` (any anyio backend,
trio included, and whenever the user passes their own ``http_client``). Foreign errors are mapped to the
openai-style tree in one place per implementation, with ``raise ... from exc``.

Only the connect timeout is given to the HTTP library. Every other limit (silence, deadline) is a cancel
scope held by the caller, so both implementations behave the same when time runs out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from .._compat import httpx_flavour

_REDACTED = frozenset({"authorization", "api-key", "x-api-key", "openai-organization", "openai-project"})


def describe_request(method: str, url: str, headers: Mapping[str, str] | None = None) -> Any:
    """The request attached to exceptions (openai's httpx flavour), without credentials in it."""
    safe = {k: v for k, v in (headers or {}).items() if k.lower() not in _REDACTED}
    return httpx_flavour.Request(method, url, headers=safe)


class RawResponse(Protocol):
    """An HTTP response whose body has not been read yet."""

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    async def read(self) -> bytes: ...

    async def read_some(self) -> bytes:
        """Whatever part of the body has arrived (waiting for at least one byte); ``b""`` at the end."""
        ...

    def close(self) -> None:
        """Best effort, synchronous (for ``__del__``): drop the connection if the library can."""
        ...

    async def aclose(self) -> None:
        """Drop the connection now (safe to call twice). The server sees a disconnect and aborts."""
        ...

    async def release(self) -> None:
        """Give the connection back to the pool after a fully read body, else close it."""
        ...


class Transport(Protocol):
    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None,
        connect_timeout: float | None,
    ) -> RawResponse:
        """Send a request and return once the status line and headers arrived.

        Raises :class:`~resilient_llm.APIConnectionError` (or ``APITimeoutError`` for the connect
        timeout) when no response arrives.
        """
        ...

    async def aclose(self) -> None: ...


def to_httpx_response(raw: RawResponse, request: Any, body: bytes) -> Any:
    """A response of openai's httpx flavour, for openai's error and result machinery.

    The body was already decoded by the transport: the encoding headers no longer describe it.
    """
    headers = [(k, v) for k, v in raw.headers.items() if k.lower() not in _BODY_FRAMING]
    return httpx_flavour.Response(raw.status, headers=headers, content=body, request=request)


#: Headers that describe the body as it came over the wire, not as it is handed on.
_BODY_FRAMING = frozenset({"content-encoding", "content-length", "transfer-encoding"})
