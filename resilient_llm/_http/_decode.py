"""Content-Encoding, decoded by us: incremental and bounded, so no answer expands at once.

zlib's ``decompressobj().decompress(data, max_length)`` gives at most ``max_length`` bytes per step
and keeps the rest of the input for the next one; the reader (``_body.py``) asks for small steps and
yields to the event loop between them. A gzip bomb therefore costs memory only as far as a size
limit lets it, and CPU only in slices.

Accepted: ``gzip`` / ``x-gzip`` (several members in a row too), ``deflate`` (zlib-wrapped, or raw as
some servers send it), ``identity``. The request offers only ``gzip, deflate`` (:data:`ACCEPT_ENCODING`):
brotli and zstd would need libraries this package does not depend on.
"""

from __future__ import annotations

import zlib
from typing import Final

__all__ = ["ACCEPT_ENCODING", "DecodeError", "Decoder", "UnsupportedEncodingName", "make_decoder"]

ACCEPT_ENCODING: Final = "gzip, deflate"

_GZIP_WBITS: Final = 16 + zlib.MAX_WBITS
_GZIP_MAGIC: Final = b"\x1f\x8b"


class DecodeError(ValueError):
    """The compressed bytes are corrupt, or they ended before the compressed stream did."""


class UnsupportedEncodingName(ValueError):
    """A Content-Encoding this module does not decode."""


def make_decoder(content_encoding: str | None) -> Decoder | None:
    """The decoder for a ``Content-Encoding`` header value; ``None`` for identity (no header)."""
    if not content_encoding:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) > 1:
        raise UnsupportedEncodingName(content_encoding)
    if codings[0] in ("gzip", "x-gzip"):
        return Decoder(gzip=True)
    if codings[0] == "deflate":
        return Decoder(gzip=False)
    raise UnsupportedEncodingName(content_encoding)


class Decoder:
    """Feed compressed input with :meth:`feed`; take output with :meth:`pull` in bounded steps.

    :meth:`pull` returns ``b""`` when it needs more input; call :meth:`finish` once the input ended.
    """

    __slots__ = ("_fed", "_gzip", "_more", "_obj", "_pending", "_started")

    def __init__(self, *, gzip: bool) -> None:
        self._gzip = gzip
        self._obj = zlib.decompressobj(_GZIP_WBITS if gzip else zlib.MAX_WBITS)
        self._pending = b""
        self._more = False  # the last step filled its output: zlib may hold more without new input
        self._started = False
        self._fed = False

    def feed(self, data: bytes) -> None:
        """More compressed input (call when :meth:`pull` returned ``b""``)."""
        if data:
            self._fed = True
            self._pending = self._pending + data if self._pending else data

    def pull(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` decoded bytes from the input fed so far; ``b""``: feed more."""
        while self._pending or self._more:
            obj = self._obj
            if obj.eof:
                if not (self._gzip and self._pending[:2] == _GZIP_MAGIC):
                    self._pending = b""  # bytes after the end of the stream are ignored (as gzip does)
                    self._more = False
                    break
                self._obj = obj = zlib.decompressobj(_GZIP_WBITS)  # the next gzip member
            try:
                out = obj.decompress(self._pending, max_bytes)
            except zlib.error as exc:
                if not self._gzip and not self._started:  # "deflate" sent without its zlib header
                    self._started = True
                    self._obj = zlib.decompressobj(-zlib.MAX_WBITS)
                    continue
                raise DecodeError(f"corrupt {'gzip' if self._gzip else 'deflate'} data: {exc}") from None
            self._started = True
            self._pending = obj.unused_data if obj.eof else obj.unconsumed_tail
            self._more = len(out) >= max_bytes and not obj.eof
            if out:
                return out
        return b""

    def finish(self) -> None:
        """The input ended: raise :class:`DecodeError` if the compressed stream was cut short."""
        if self._fed and not self._obj.eof:
            raise DecodeError(f"the {'gzip' if self._gzip else 'deflate'} data ended before its end marker")
