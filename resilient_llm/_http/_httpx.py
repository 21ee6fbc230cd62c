"""httpx-backed transport: runs on any anyio backend (trio included) and wraps a user's ``http_client``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping

import httpx

from .._exceptions import APIConnectionError, APITimeoutError, ServerUnreachable
from ._base import describe_request


class HttpxResponse:
    __slots__ = ("_chunks", "_resp")

    def __init__(self, resp: httpx.Response) -> None:
        self._resp = resp
        self._chunks: AsyncIterator[bytes] | None = None

    @property
    def status(self) -> int:
        return self._resp.status_code

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.aread()
        except httpx.TransportError as exc:
            raise _broken_body(self._resp, exc) from exc
        finally:
            await self._resp.aclose()

    async def read_some(self) -> bytes:
        if self._chunks is None:
            self._chunks = self._resp.aiter_raw()
        try:
            return await self._chunks.__anext__()
        except StopAsyncIteration:
            return b""
        except httpx.TransportError as exc:
            raise _broken_body(self._resp, exc) from exc

    def close(self) -> None:
        """httpx closes a streamed response only asynchronously: nothing to do here.

        An abandoned stream's connection is reclaimed when the response is garbage collected; close
        streams with ``async with`` or ``aclose()`` to drop the connection at once.
        """

    async def aclose(self) -> None:
        chunks, self._chunks = self._chunks, None
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._resp.aclose()

    async def release(self) -> None:
        await self.aclose()


def _broken_body(resp: httpx.Response, exc: BaseException) -> APIConnectionError:
    return APIConnectionError(
        message=f"Connection lost while reading the response: {exc!r}",
        request=describe_request(resp.request.method, str(resp.request.url)),
    )


class HttpxTransport:
    def __init__(self, client: httpx.AsyncClient | None = None) -> None:
        self._owned = client is None
        self._client = client or httpx.AsyncClient(
            timeout=httpx.Timeout(None),
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=100),
        )

    @property
    def client(self) -> httpx.AsyncClient:
        return self._client

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None,
        connect_timeout: float | None,
    ) -> HttpxResponse:
        request = self._client.build_request(method, url, headers=dict(headers), content=content)
        request.extensions["timeout"] = httpx.Timeout(None, connect=connect_timeout).as_dict()
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise APITimeoutError(
                describe_request(method, url, headers), message=f"Timed out connecting to {url}"
            ) from exc
        except httpx.ConnectError as exc:
            raise ServerUnreachable(
                message=f"Cannot connect: {exc.__class__.__name__}: {exc}",
                request=describe_request(method, url, headers),
            ) from exc
        except httpx.TransportError as exc:
            raise APIConnectionError(
                message=f"Connection error: {exc.__class__.__name__}: {exc}",
                request=describe_request(method, url, headers),
            ) from exc
        return HttpxResponse(resp)

    async def aclose(self) -> None:
        await self._client.aclose()
