"""aiohttp-backed transport for asyncio: several times faster than httpx's pool under high concurrency.

One ``aiohttp.ClientSession`` per event loop: a client created at import time and used from several
``asyncio.run()`` calls gets a fresh session in each loop instead of "Event loop is closed".

aiohttp's own decompression and redirect following are off: bodies go through ``_body.py`` and
redirects through ``_redirects.py``, as on the httpx transport.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp

from .._errors_io import CertificateVerificationError
from .._exceptions import APIConnectionError, ServerUnreachable, _Timeout
from .._limits import DEFAULT_LIMITS, Limits
from .._secrets import mask_url, secret_values, summarize_cause
from ._base import RawResponse, describe_request, prepare
from ._body import BodyReader
from ._redirects import follow

DEFAULT_POOL_SIZE = 1000


class _Chunks:
    """The next raw chunk of one response (``b""`` at its end); a lost connection is a typed error.

    Apart from the response wrapper, which holds it through its body reader: a bound method of the
    wrapper there would make every response a reference cycle, left for the garbage collector.
    """

    __slots__ = ("describe", "resp")

    def __init__(self, resp: aiohttp.ClientResponse, describe: Callable[[], Any]) -> None:
        self.resp = resp
        self.describe = describe

    async def __call__(self) -> bytes:
        error: Exception
        try:
            return await self.resp.content.readany()
        except (aiohttp.ClientError, OSError) as exc:
            error = APIConnectionError(
                message="Connection lost while reading the response", request=self.describe()
            )
            cause = summarize_cause(exc)
        self.resp.close()
        raise error from cause


class AiohttpResponse:
    __slots__ = ("_body", "_resp")

    def __init__(self, resp: aiohttp.ClientResponse, method: str, url: str, limits: Limits) -> None:
        self._resp = resp
        describe = functools.partial(describe_request, method, url)
        self._body = BodyReader(
            _Chunks(resp, describe),
            status=resp.status,
            headers=resp.headers,
            limits=limits,
            describe=describe,
        )

    @property
    def status(self) -> int:
        return self._resp.status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._resp.headers

    async def read(self) -> bytes:
        """The whole body; then the connection goes back to the pool, or is dropped if the body was not
        received whole (a cut error body, a limit, an error)."""
        try:
            return await self._body.read()
        finally:
            await self.release()

    async def read_some(self) -> bytes:
        try:
            return await self._body.read_some()
        except Exception:
            self._resp.close()
            raise

    def close(self) -> None:
        self._resp.close()

    async def aclose(self) -> None:
        self._resp.close()

    async def release(self) -> None:
        """Back to the pool when the HTTP message was received whole (aiohttp knows: a stream ended by
        ``[DONE]`` usually was, though its end was not read yet); otherwise the connection is closed."""
        self._resp.release()


class AiohttpTransport:
    def __init__(self, *, pool_size: int = DEFAULT_POOL_SIZE, limits: Limits = DEFAULT_LIMITS) -> None:
        self._pool_size = pool_size
        self._limits = limits
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._timeouts: dict[float | None, aiohttp.ClientTimeout] = {}  # per connect timeout

    def _get_session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(limit=self._pool_size, limit_per_host=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=False,
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
    ) -> RawResponse:
        url, sent = prepare(url, headers)
        timeout = self._timeouts.get(connect_timeout)
        if timeout is None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=connect_timeout, connect=connect_timeout)
            if len(self._timeouts) < 64:
                self._timeouts[connect_timeout] = timeout
        raw = await self._send_once(method, url, sent, content, timeout)
        if not 300 <= raw.status < 400:
            return raw
        send_once = functools.partial(self._send_once, timeout=timeout)  # no closure: no cells per call
        return await follow(
            send_once, method, url, sent, content, max_redirects=self._limits.max_redirects, first=raw
        )

    async def _send_once(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: aiohttp.ClientTimeout,
    ) -> AiohttpResponse:
        session = self._get_session()
        error: Exception
        try:
            resp = await session.request(
                method, url, headers=headers, data=content, timeout=timeout, allow_redirects=False
            )
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError, ValueError) as exc:
            error = _connect_error(exc, method, url, headers)
            cause = summarize_cause(exc, secret_values(headers))
        else:
            return AiohttpResponse(resp, method, url, self._limits)
        raise error from cause

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


def _connect_error(exc: BaseException, method: str, url: str, headers: Mapping[str, str]) -> Exception:
    """The library's error for a request that got no response (``exc`` itself is not kept)."""
    request = describe_request(method, url, headers)
    shown = mask_url(url)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return CertificateVerificationError(
            message=f"TLS certificate verification failed for {shown}: {exc.certificate_error}; not retried",
            request=request,
        )
    if isinstance(exc, (aiohttp.ServerTimeoutError, asyncio.TimeoutError)):
        return _Timeout(request, message=f"Timed out connecting to {shown}")
    detail = summarize_cause(exc, secret_values(headers))
    if isinstance(exc, aiohttp.ClientConnectorError):
        return ServerUnreachable(message=f"Cannot connect: {detail}", request=request)
    return APIConnectionError(message=f"Connection error: {detail}", request=request)
