"""aiohttp-backed transport for asyncio: several times faster than httpx's pool under high concurrency.

One ``aiohttp.ClientSession`` per event loop: a client created at import time and used from several
``asyncio.run()`` calls gets a fresh session in each loop instead of "Event loop is closed".
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp

from .._exceptions import APIConnectionError, ServerUnreachable, _Timeout
from ._base import describe_request

DEFAULT_POOL_SIZE = 1000


class AiohttpResponse:
    __slots__ = ("_resp",)

    def __init__(self, resp: aiohttp.ClientResponse) -> None:
        self._resp = resp

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    async def read(self) -> bytes:
        try:
            return await self._resp.read()
        except (aiohttp.ClientError, OSError) as exc:
            self._resp.close()
            raise _broken_body(self._resp, exc) from exc

    async def read_some(self) -> bytes:
        try:
            return await self._resp.content.readany()
        except (aiohttp.ClientError, OSError) as exc:
            self._resp.close()
            raise _broken_body(self._resp, exc) from exc

    def close(self) -> None:
        self._resp.close()

    async def aclose(self) -> None:
        self._resp.close()

    async def release(self) -> None:
        self._resp.release()


def _broken_body(resp: aiohttp.ClientResponse, exc: BaseException) -> APIConnectionError:
    request = describe_request(resp.method, str(resp.url))
    return APIConnectionError(message=f"Connection lost while reading the response: {exc!r}", request=request)


class AiohttpTransport:
    def __init__(self, *, pool_size: int = DEFAULT_POOL_SIZE) -> None:
        self._pool_size = pool_size
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
            self._loop = loop
        return self._session

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None,
        connect_timeout: float | None,
    ) -> AiohttpResponse:
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, connect=connect_timeout)
        try:
            resp = await session.request(method, url, headers=headers, data=content, timeout=timeout)
        except (aiohttp.ServerTimeoutError, asyncio.TimeoutError) as exc:
            raise _Timeout(
                describe_request(method, url, headers), message=f"Timed out connecting to {url}"
            ) from exc
        except aiohttp.ClientConnectorError as exc:
            raise ServerUnreachable(
                message=f"Cannot connect: {exc.__class__.__name__}: {exc}",
                request=describe_request(method, url, headers),
            ) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise APIConnectionError(
                message=f"Connection error: {exc.__class__.__name__}: {exc}",
                request=describe_request(method, url, headers),
            ) from exc
        return AiohttpResponse(resp)

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None and not session.closed:
            try:
                same_loop = asyncio.get_running_loop() is self._loop
            except RuntimeError:
                same_loop = False
            if same_loop:
                await session.close()
            else:  # its loop is gone: drop the connections without awaiting on a dead loop
                connector = session.connector
                if connector is not None:
                    connector._close()
                session._connector = None
