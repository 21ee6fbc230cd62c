"""httpx-backed transport: runs on any anyio backend (trio included) and wraps the client's ``AsyncClient``.

The ``AsyncClient`` is openai's own (``client._client``: the user's ``http_client``, or the one openai
made), of whichever httpx flavour it is (``httpx`` or openai 3.x's ``httpx2``); openai owns and closes it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from .._compat import httpx_module_of
from .._exceptions import APIConnectionError, ServerUnreachable, _Timeout
from ._base import describe_request


class HttpxResponse:
    __slots__ = ("_chunks", "_errors", "_resp")

    def __init__(self, resp: Any, errors: type[BaseException]) -> None:
        self._resp = resp
        self._errors = errors
        self._chunks: AsyncIterator[bytes] | None = None

    @property
    def status(self) -> int:
        status: int = self._resp.status_code
        return status

    @property
    def headers(self) -> Mapping[str, str]:
        headers: Mapping[str, str] = self._resp.headers
        return headers

    async def read(self) -> bytes:
        try:
            body: bytes = await self._resp.aread()
            return body
        except self._errors as exc:
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
        except self._errors as exc:
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


def _broken_body(resp: Any, exc: BaseException) -> APIConnectionError:
    return APIConnectionError(
        message=f"Connection lost while reading the response: {exc!r}",
        request=describe_request(resp.request.method, str(resp.request.url)),
    )


class HttpxTransport:
    def __init__(self, client: Any) -> None:
        self._client = client
        self._httpx = httpx_module_of(client)

    @property
    def client(self) -> Any:
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
        httpx = self._httpx
        request = self._client.build_request(method, url, headers=dict(headers), content=content)
        request.extensions["timeout"] = httpx.Timeout(None, connect=connect_timeout).as_dict()
        try:
            resp = await self._client.send(request, stream=True)
        except httpx.TimeoutException as exc:
            raise _Timeout(
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
        return HttpxResponse(resp, httpx.TransportError)

    async def aclose(self) -> None:
        """The ``AsyncClient`` is openai's: it closes it with the client."""
