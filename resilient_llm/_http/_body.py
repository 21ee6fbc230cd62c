"""A response body as the call pipeline reads it: decoded by us, size-limited, paced.

Both transports hand their raw wire chunks (compressed as sent) to a :class:`BodyReader`, so the
protections are the same on aiohttp and httpx:

* decompression in bounded steps (``_decode.py``), at most :data:`STEP` bytes per read;
* a :class:`~resilient_llm._pacing.Pacer` tick before every read, so no body, however fast it
  arrives or however far it expands, holds the event loop for more than a few milliseconds;
* :meth:`BodyReader.read` stops at ``Limits.max_body_bytes`` (at once if Content-Length says more)
  with :class:`~resilient_llm._errors_io.BodyTooLarge`;
* for an error status, :meth:`BodyReader.read` keeps at most ``Limits.max_error_body_bytes`` and
  ends the kept part with a note saying it was cut (the rest is not read; the connection is dropped).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from time import perf_counter
from typing import Any, Final

from .._errors_io import BodyTooLarge, MalformedResponse, UnsupportedEncoding
from .._limits import Limits
from .._pacing import Pacer
from ._base import describe_response
from ._decode import DecodeError, Decoder, UnsupportedEncodingName, make_decoder

__all__ = ["STEP", "BodyReader"]

#: The most decoded bytes one read returns from compressed input.
STEP: Final = 64 * 1024


class BodyReader:
    """``next_chunk()`` gives the next raw chunk (``b""`` at the end); ``describe()`` the request
    (credential-free) that errors carry."""

    __slots__ = (
        "_decoder",
        "_describe",
        "_encoding",
        "_eof",
        "_headers",
        "_limits",
        "_next_chunk",
        "_pacer",
        "_status",
        "complete",
        "received",
    )

    def __init__(
        self,
        next_chunk: Callable[[], Awaitable[bytes]],
        *,
        status: int,
        headers: Mapping[str, str],
        limits: Limits,
        describe: Callable[[], Any],
    ) -> None:
        self._next_chunk = next_chunk
        self._status = status
        self._headers = headers
        self._limits = limits
        self._describe = describe
        self._pacer = Pacer()
        self._eof = False
        self._encoding = headers.get("content-encoding")
        self._decoder: Decoder | UnsupportedEncodingName | None
        try:
            self._decoder = make_decoder(self._encoding)
        except UnsupportedEncodingName as exc:
            self._decoder = exc
        self.complete = False  # the body was read to its end
        self.received = 0  # decoded bytes returned so far

    def _response(self) -> Any:
        return describe_response(self._status, self._headers, self._describe())

    async def read_some(self) -> bytes:
        """The next decoded piece of the body (at least one byte); ``b""`` at its end."""
        await self._pacer.tick()
        decoder = self._decoder
        if decoder is None:
            if self._eof:
                piece = b""
            else:
                since = perf_counter()
                piece = await self._next_chunk()
                self._pacer.waited(since)
            if not piece:
                self._eof = self.complete = True
            self.received += len(piece)
            return piece
        if isinstance(decoder, UnsupportedEncodingName):
            raise UnsupportedEncoding(self._response(), encoding=str(decoder))
        try:
            while True:
                out = decoder.pull(STEP)
                if out:
                    self.received += len(out)
                    return out
                if self._eof:
                    return b""
                since = perf_counter()
                raw = await self._next_chunk()
                self._pacer.waited(since)
                if raw:
                    decoder.feed(raw)
                else:
                    self._eof = True
                    decoder.finish()
                    self.complete = True
        except DecodeError as exc:
            raise MalformedResponse(
                message=f"Cannot decode the response body: {exc}", request=self._describe()
            ) from None

    async def read(self) -> bytes:
        """The whole body (a 4xx/5xx body: its first ``max_error_body_bytes``, with a note if cut)."""
        if self._status >= 400:
            return await self._read_error()
        limit = self._limits.max_body_bytes
        declared = self._declared_length()
        if declared is not None and declared > limit:
            raise BodyTooLarge(
                self._response(), setting="max_body_bytes", limit=limit, size=declared, declared=True
            )
        parts: list[bytes] = []
        total = 0
        while piece := await self.read_some():
            total += len(piece)
            if total > limit:
                raise BodyTooLarge(self._response(), setting="max_body_bytes", limit=limit, size=total)
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    async def _read_error(self) -> bytes:
        if isinstance(self._decoder, UnsupportedEncodingName):
            return f"[body not shown: Content-Encoding {str(self._decoder)[:40]!r} is not supported]".encode()
        limit = self._limits.max_error_body_bytes
        parts: list[bytes] = []
        total = 0
        try:
            while total <= limit and (piece := await self.read_some()):
                total += len(piece)
                parts.append(piece)
        except MalformedResponse:
            parts.append(b" [the rest of the body could not be decoded]")
        body = b"".join(parts)
        if total <= limit:
            return body
        declared = self._declared_length()
        size = f"{declared} bytes in all" if declared is not None else f"more than {limit} bytes"
        return body[:limit] + f" [... truncated: the first {limit} bytes of {size} are shown]".encode()

    def _declared_length(self) -> int | None:
        """Content-Length when it counts decoded bytes (no Content-Encoding)."""
        if self._decoder is not None:
            return None
        value = self._headers.get("content-length")
        if value is None or not value.strip().isdigit():
            return None
        return int(value)
