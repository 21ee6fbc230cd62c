"""httpx-backed transport: runs on any anyio backend (trio included) and wraps the client's ``AsyncClient``.

The ``AsyncClient`` is openai's own (``client._client``: the user's ``http_client``, or the one openai
made), an ``httpx.AsyncClient`` or an ``httpx2.AsyncClient`` (openai-python 3.x's fork, same API): the
transport uses the module the client comes from. openai owns and closes it.

httpx's own decoding and redirect following are bypassed: the raw bytes (``aiter_raw``) go through
``_body.py``, and redirects through ``_redirects.py`` (``follow_redirects=False`` on every send, even
if the user's client sets it), as on the aiohttp transport.
"""

from __future__ import annotations

import functools
import ssl
from collections.abc import AsyncIterator, Mapping
from types import ModuleType
from typing import Any

from .._compat import httpx_module_of
from .._errors_io import CertificateVerificationError
from .._exceptions import APIConnectionError, ServerUnreachable, _Timeout
from .._limits import DEFAULT_LIMITS, Limits
from .._secrets import mask_url, secret_values, summarize_cause
from ._base import RawResponse, describe_request, prepare
from ._body import BodyReader
from ._redirects import follow


class _Chunks:
    """The next raw chunk of one response (``b""`` at its end); a lost connection is a typed error.

    Apart from the response wrapper, which holds it through its body reader: a bound method of the
    wrapper there would make every response a reference cycle, left for the garbage collector.
    """

    __slots__ = ("errors", "iterator", "resp")

    def __init__(self, resp: Any, errors: tuple[type[BaseException], ...]) -> None:
        self.resp = resp
        self.errors = errors
        self.iterator: AsyncIterator[bytes] | None = None

    def describe(self) -> Any:
        return describe_request(self.resp.request.method, str(self.resp.request.url))

    async def __call__(self) -> bytes:
        if self.iterator is None:
            self.iterator = self.resp.aiter_raw()
        error: APIConnectionError
        try:
            return await self.iterator.__anext__()
        except StopAsyncIteration:
            return b""
        except self.errors as exc:
            error = APIConnectionError(
                message="Connection lost while reading the response", request=self.describe()
            )
            cause = summarize_cause(exc)
        raise error from cause


class HttpxResponse:
    __slots__ = ("_body", "_chunks", "_resp")

    def __init__(self, resp: Any, limits: Limits, errors: tuple[type[BaseException], ...]) -> None:
        self._resp = resp
        self._chunks = chunks = _Chunks(resp, errors)
        self._body = BodyReader(
            chunks,
            status=resp.status_code,
            headers=resp.headers,
            limits=limits,
            describe=chunks.describe,
        )

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
            return await self._body.read()
        finally:
            await self.aclose()

    async def read_some(self) -> bytes:
        return await self._body.read_some()

    def close(self) -> None:
        """httpx closes a streamed response only asynchronously: nothing to do here.

        An abandoned stream's connection is reclaimed when the response is garbage collected; close
        streams with ``async with`` or ``aclose()`` to drop the connection at once.
        """

    async def aclose(self) -> None:
        chunks, self._chunks.iterator = self._chunks.iterator, None
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
        await self._resp.aclose()

    async def release(self) -> None:
        await self.aclose()


class HttpxTransport:
    def __init__(self, client: Any, *, limits: Limits = DEFAULT_LIMITS) -> None:
        self._client: Any = client
        self._hx = httpx_module_of(client)
        self._limits = limits

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
    ) -> RawResponse:
        url, sent = prepare(url, headers)
        raw = await self._send_once(method, url, sent, content, connect_timeout)
        if not 300 <= raw.status < 400:
            return raw
        send_once = functools.partial(self._send_once, connect=connect_timeout)
        return await follow(
            send_once, method, url, sent, content, max_redirects=self._limits.max_redirects, first=raw
        )

    async def _send_once(
        self, method: str, url: str, headers: Mapping[str, str], content: bytes | None, connect: float | None
    ) -> HttpxResponse:
        hx = self._hx
        error: Exception
        try:
            request = self._client.build_request(method, url, headers=dict(headers), content=content)
            request.extensions["timeout"] = hx.Timeout(None, connect=connect).as_dict()
            resp = await self._client.send(request, stream=True, follow_redirects=False)
        except (hx.HTTPError, hx.InvalidURL, ValueError) as exc:
            error = _connect_error(hx, exc, method, url, headers)
            cause = summarize_cause(exc, secret_values(headers))
        else:
            return HttpxResponse(resp, self._limits, (hx.TransportError, hx.DecodingError))
        raise error from cause

    async def aclose(self) -> None:
        """The ``AsyncClient`` is openai's: it closes it with the client."""


def _certificate_error(exc: BaseException) -> ssl.SSLCertVerificationError | None:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLCertVerificationError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _connect_error(
    hx: ModuleType, exc: BaseException, method: str, url: str, headers: Mapping[str, str]
) -> Exception:
    """The library's error for a request that got no response (``exc`` itself is not kept)."""
    request = describe_request(method, url, headers)
    shown = mask_url(url)
    cert = _certificate_error(exc)
    if cert is not None:
        return CertificateVerificationError(
            message=f"TLS certificate verification failed for {shown}: {cert.verify_message or cert}; not retried",
            request=request,
        )
    if isinstance(exc, hx.TimeoutException):
        return _Timeout(request, message=f"Timed out connecting to {shown}")
    detail = summarize_cause(exc, secret_values(headers))
    if isinstance(exc, hx.ConnectError):
        return ServerUnreachable(message=f"Cannot connect: {detail}", request=request)
    return APIConnectionError(message=f"Connection error: {detail}", request=request)
