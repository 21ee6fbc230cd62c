"""The HTTP contract: the smallest surface the call pipeline needs from an HTTP library.

Two implementations: :mod:`._aiohttp` (asyncio, the fast default) and :mod:`._httpx` (any anyio backend,
trio included, and whenever the user passes their own ``http_client``). Foreign errors are mapped to the
openai-style tree in one place per implementation (no foreign exception object is kept: its repr or
attributes may hold the request's headers).

What both do the same way, whatever the library: credentials in the URL become Basic auth
(:func:`prepare`), redirects are followed by ``_redirects.py`` (same origin only), bodies are decoded
and limited by ``_body.py``.

Only the connect timeout is given to the HTTP library. Every other limit (silence, deadline) is a cancel
scope held by the caller, so both implementations behave the same when time runs out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Protocol

from .._compat import httpx_flavour as httpx  # openai's flavour: httpx2 on openai 3.x
from .._secrets import SENSITIVE_HEADERS, check_headers, mask_url, split_credentials
from ._decode import ACCEPT_ENCODING

_BAD_VALUE = re.compile(r"[^\x20-\x7e\t]")


def describe_request(method: str, url: str, headers: Mapping[str, str] | None = None) -> Any:
    """The request attached to exceptions: no credential headers, the URL masked (:func:`mask_url`)."""
    safe = {k: v for k, v in (headers or {}).items() if k.lower() not in SENSITIVE_HEADERS}
    try:
        return httpx.Request(method, mask_url(url), headers=safe)
    except Exception:  # an unparseable URL still gets a request object
        return httpx.Request(method, "http://invalid-url.invalid/")


def describe_response(status: int, headers: Mapping[str, str], request: Any, body: bytes = b"") -> Any:
    """The response attached to exceptions (status and headers as received; ``body`` as given)."""
    safe = [(k, v) for k, v in headers.items() if k.lower() not in ("set-cookie", "content-encoding")]
    return httpx.Response(status, headers=safe, content=body, request=request)


#: What :func:`prepare` made of a read-only header mapping (a client's own headers, the same object on
#: every call) and a URL: ``(id(headers), url) -> (headers, url sent, headers sent)``. The mapping is
#: kept so that its id cannot be reused; bounded, cleared when full.
_PREPARED: dict[tuple[int, str], tuple[Mapping[str, str], str, Mapping[str, str]]] = {}
_PREPARED_MAX = 64


def prepare(url: str, headers: Mapping[str, str]) -> tuple[str, Mapping[str, str]]:
    """:func:`prepare_headers`, computed once per URL for a read-only mapping (``MappingProxyType``)."""
    if type(headers) is not MappingProxyType:
        return prepare_headers(url, headers)
    key = (id(headers), url)
    hit = _PREPARED.get(key)
    if hit is not None and hit[0] is headers:
        return hit[1], hit[2]
    sent_url, sent = prepare_headers(url, headers)
    if len(_PREPARED) >= _PREPARED_MAX:
        _PREPARED.clear()
    frozen = MappingProxyType(sent)
    _PREPARED[key] = (headers, sent_url, frozen)
    return sent_url, frozen


def prepare_headers(url: str, headers: Mapping[str, str]) -> tuple[str, dict[str, str]]:
    """What is sent: ``user:password@`` moved from the URL to ``Authorization: Basic`` (replacing a
    ``Bearer`` key, as httpx and openai-python do), ``Accept-Encoding`` set to what we decode, and
    header values checked (surrounding whitespace stripped; a control character inside raises
    ``ConfigError`` without the value)."""
    url, basic = split_credentials(url)
    sent = {k.lower(): v.strip() for k, v in headers.items()}
    if _BAD_VALUE.search("".join(sent.values())):
        sent = check_headers(sent, name="headers")  # strips, or names the bad header (never the value)
    if basic is not None:
        sent["authorization"] = basic
    sent["accept-encoding"] = ACCEPT_ENCODING
    return url, sent


class RawResponse(Protocol):
    """An HTTP response whose body has not been read yet.

    Bodies come decoded (Content-Encoding undone by us) and within :class:`~resilient_llm.Limits`;
    ``headers`` are as received (so ``content-encoding`` may still name what was undone).
    """

    @property
    def status(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]:
        """Case-insensitive."""
        ...

    async def read(self) -> bytes:
        """The whole decoded body, at most ``max_body_bytes`` (else ``BodyTooLarge``). For a 4xx/5xx
        status, the first ``max_error_body_bytes`` only, followed by a note when cut."""
        ...

    async def read_some(self) -> bytes:
        """Whatever part of the body has arrived, decoded (at least one byte); ``b""`` at the end.

        Yields to the event loop every few milliseconds even when the bytes are already there.
        """
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
        timeout) when no response arrives; ``CertificateVerificationError`` at once for a TLS
        certificate that does not verify; ``RedirectError`` for a 3xx it does not follow.
        """
        ...

    async def aclose(self) -> None: ...


def stream_response(raw: RawResponse, request: Any, body: Any) -> Any:
    """A response of openai's httpx flavour whose body is ``body`` (an ``AsyncByteStream`` of already
    decoded bytes, e.g. re-serialised events), for a parser downstream such as ``openai.AsyncStream``.
    ``Content-Encoding`` and ``Content-Length`` are dropped: they described the bytes on the wire."""
    headers = [
        (k, v) for k, v in raw.headers.items() if k.lower() not in ("content-encoding", "content-length")
    ]
    return httpx.Response(raw.status, headers=headers, stream=body, request=request)


def to_httpx_response(raw: RawResponse, request: Any, body: bytes) -> Any:
    """A response of openai's httpx flavour for ``APIStatusError.response`` (what users inspect)."""
    return describe_response(raw.status, raw.headers, request, body)
