"""Server-sent events: body bytes in, ``(event, data)`` pairs out (the subset of the spec LLM servers use).

An event ends at a blank line; several ``data:`` lines join with newlines; ``:`` lines are comments;
``id:``, ``retry:`` and unknown fields are ignored; ``\\n``, ``\\r\\n`` and ``\\r`` end lines. A last
event without its blank line is still delivered.

Linear in the input: each read is split into lines once (``bytes.splitlines``), a line that has not
ended yet is kept as a list of pieces and joined once when it ends, so a 200 MB line costs one pass
and fails as soon as it passes ``max_event_bytes``. Every read starts with a
:class:`~resilient_llm._pacing.Pacer` tick, so many events arriving at once never hold the event loop.

Typed errors, raised after the events that came before them were delivered:

* an event (or a line) past ``max_event_bytes`` → :class:`~resilient_llm._errors_io.EventTooLarge`;
* an ``event:`` name that is not UTF-8 → :class:`~resilient_llm._errors_io.MalformedResponse`;
* ``event: error`` → :class:`~resilient_llm.StreamError` with the server's message (from
  ``data: {"message": ...}``, ``{"error": {"message": ...}}``, ``{"error": "..."}`` or plain text).

Two ways to read: :meth:`EventReader.next` gives one event; :meth:`EventReader.read_bytes` gives the
next few events re-serialised as SSE bytes (UTF-8 checked), for a parser of our choosing downstream
(openai's ``AsyncStream``) that then never sees an oversized event or invalid UTF-8. Both share the
queue, so the first event can be read with :meth:`EventReader.peek` and still be passed on.

A class rather than an async generator, so an abandoned or cancelled reader leaves nothing to finalize.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from time import perf_counter
from typing import Any, Final, NoReturn

from ._errors_io import EventTooLarge, MalformedResponse
from ._exceptions import StreamError
from ._http._base import describe_request, describe_response
from ._json import loads
from ._limits import DEFAULT_MAX_EVENT_BYTES
from ._pacing import Pacer

__all__ = ["DEFAULT_EVENTS_PER_CHUNK", "Event", "EventReader", "parse_event", "serialize_event"]

Event = tuple[str | None, bytes]

#: The most events one :meth:`EventReader.read_bytes` returns (bounds the work downstream per read).
DEFAULT_EVENTS_PER_CHUNK: Final = 16
_SHOWN_MESSAGE: Final = 1000


def parse_event(block: bytes) -> Event | None:
    """One event block (its lines, without the blank line that ended it); for tests and tools."""
    reader = EventReader(_no_input)
    reader._feed(block + b"\n\n")
    if reader._error is not None:
        raise reader._error
    return reader._ready.popleft() if reader._ready else None


async def _no_input() -> bytes:
    return b""


def serialize_event(event: Event) -> bytes:
    """``event`` as SSE bytes that parse back to it exactly."""
    name, data = event
    head = b"event: " + name.encode() + b"\n" if name is not None else b""
    if b"\n" in data:
        return head + b"".join(b"data: " + line + b"\n" for line in data.split(b"\n")) + b"\n"
    return head + b"data: " + data + b"\n\n"


def _unknown_request() -> Any:
    return describe_request("POST", "http://unknown.invalid/")


class EventReader:
    """Events from ``read_some`` (the next bytes of the body; ``b""`` at its end).

    ``describe`` returns the (credential-free) request that errors carry.
    """

    __slots__ = (
        "_data",
        "_describe",
        "_eof",
        "_error",
        "_limit",
        "_name",
        "_pacer",
        "_partial",
        "_partial_len",
        "_read_some",
        "_ready",
        "_size",
        "_skip_lf",
        "events_per_chunk",
    )

    def __init__(
        self,
        read_some: Callable[[], Awaitable[bytes]],
        *,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        describe: Callable[[], Any] | None = None,
        events_per_chunk: int = DEFAULT_EVENTS_PER_CHUNK,
    ) -> None:
        self._read_some = read_some
        self._limit = max_event_bytes
        self._describe = describe or _unknown_request
        self.events_per_chunk = events_per_chunk
        self._pacer = Pacer()
        self._ready: deque[Event] = deque()
        self._eof = False
        self._error: Exception | None = None
        self._partial: list[bytes] = []  # the line not ended yet, in pieces
        self._partial_len = 0
        self._skip_lf = False  # the last read ended with "\r": a "\n" first in the next one ends nothing
        self._name: bytes | None = None
        self._data: list[bytes] = []
        self._size = 0  # bytes held for the event being read

    @property
    def buffered(self) -> bool:
        """Whether the next event is already here (arrived with the previous one, in the same read)."""
        return bool(self._ready)

    async def next(self) -> Event | None:
        """The next event, or ``None`` when the body ended."""
        await self._pacer.tick()
        if not self._ready and not await self._fill():
            return None
        return self._ready.popleft()

    def take(self) -> Event | None:
        """The next event if it is already here and no turn of the event loop is due; else ``None``.

        The synchronous half of :meth:`next`, for a loop over the events of one read: when it gives
        ``None``, ``await next()`` reads (or yields the turn that is due) as usual.
        """
        if self._ready and not self._pacer.due():
            return self._ready.popleft()
        return None

    async def peek(self) -> Event | None:
        """The next event without consuming it (``next`` or ``read_bytes`` still return it)."""
        await self._pacer.tick()
        if not self._ready and not await self._fill():
            return None
        return self._ready[0]

    async def read_bytes(self) -> bytes:
        """The next events (at least one, at most ``events_per_chunk``) as SSE bytes; ``b""`` at the end."""
        await self._pacer.tick()
        ready = self._ready
        if not ready and not await self._fill():
            return b""
        parts: list[bytes] = []
        while ready and len(parts) < self.events_per_chunk:
            event = ready.popleft()
            try:
                event[1].decode()
            except UnicodeDecodeError as exc:
                raise MalformedResponse(
                    message=f"An event's data is not UTF-8 (byte {exc.start})", request=self._describe()
                ) from None
            parts.append(serialize_event(event))
        return b"".join(parts)

    async def _fill(self) -> bool:
        """Read until an event is ready (``True``) or the body ended (``False``)."""
        while not self._ready:
            if self._error is not None:
                raise self._error
            if self._eof:
                return False
            since = perf_counter()
            piece = await self._read_some()
            self._pacer.waited(since)
            if piece:
                self._feed(piece)
            else:
                self._eof = True
                self._feed_end()
            if not self._ready:
                await self._pacer.tick()
        return True

    # --- the parser (synchronous, linear) -------------------------------------------------------
    def _feed(self, piece: bytes) -> None:
        if self._error is not None:
            return
        if (
            piece[-2:] == b"\n\n"
            and not self._partial
            and not self._data
            and self._name is None
            and not self._skip_lf
            and b"\r" not in piece
        ):
            self._feed_blocks(piece)
        else:
            self._feed_lines(piece)

    def _feed_blocks(self, piece: bytes) -> None:
        """Whole events only (the usual read of an LLM server's stream): one pass, no per-line calls.

        Called with no event in progress and ``piece`` ending with a blank line, so each block between
        blank lines is a whole event; one that is a single ``data:`` line is taken as it is, any other
        goes through the line parser, which ends it in the same clean state.
        """
        ready = self._ready
        limit = self._limit
        try:
            for block in piece[:-2].split(b"\n\n"):
                if block[:6] == b"data: " and b"\n" not in block:
                    if len(block) > limit:
                        self._check_line(len(block))
                    ready.append((None, block[6:]))
                elif block:
                    self._feed_lines(block + b"\n\n")
                    if self._error is not None:
                        return
        except Exception as exc:
            self._error = exc

    def _feed_lines(self, piece: bytes) -> None:
        if self._skip_lf:
            self._skip_lf = False
            if piece[:1] == b"\n":
                piece = piece[1:]
                if not piece:
                    return
        try:
            lines = piece.splitlines(keepends=True)
            last = lines[-1]
            if last[-1:] not in (b"\n", b"\r"):
                lines.pop()
            else:
                last = b""
            for line in lines:
                cut = 2 if line[-2:] == b"\r\n" else 1
                if self._partial:
                    self._check_line(self._partial_len + len(line) - cut)
                    self._partial.append(line[:-cut])
                    self._line(b"".join(self._partial))
                    self._partial.clear()
                    self._partial_len = 0
                else:
                    self._check_line(len(line) - cut)
                    self._line(line[:-cut])
            if last:
                self._partial.append(last)
                self._partial_len += len(last)
                self._check_line(self._partial_len)
            self._skip_lf = piece[-1:] == b"\r"
        except Exception as exc:
            self._error = exc

    def _feed_end(self) -> None:
        if self._error is not None:
            return
        try:
            if self._partial:
                line = b"".join(self._partial)
                self._partial.clear()
                self._line(line)
            self._line(b"")
        except Exception as exc:
            self._error = exc

    def _check_line(self, size: int) -> None:
        """Any line, whatever its field, is at most ``max_event_bytes``."""
        if size > self._limit:
            self._too_large(size)

    def _check(self, size: int) -> None:
        """The event read so far, with ``size`` more bytes, is at most ``max_event_bytes``."""
        if self._size + size > self._limit:
            self._too_large(self._size + size)

    def _too_large(self, size: int) -> NoReturn:
        request = self._describe()
        raise EventTooLarge(
            describe_response(200, {}, request), setting="max_event_bytes", limit=self._limit, size=size
        )

    def _line(self, line: bytes) -> None:
        if not line:
            if self._data:
                self._dispatch()
            self._name = None
            self._data = []
            self._size = 0
            return
        if line[:5] == b"data:":
            value = line[6:] if line[5:6] == b" " else line[5:]
            self._check(len(value))
            self._data.append(value)
            self._size += len(value)
        elif line[:6] == b"event:":
            value = line[6:].strip()
            self._check(len(value))
            self._name = value
        # comments (":"), "id:", "retry:" and unknown fields are ignored

    def _dispatch(self) -> None:
        data = self._data[0] if len(self._data) == 1 else b"\n".join(self._data)
        name: str | None = None
        if self._name is not None:
            try:
                name = self._name.decode() or None  # an empty name is the default type, as no name
            except UnicodeDecodeError as exc:
                raise MalformedResponse(
                    message=f"An event name is not UTF-8 (byte {exc.start})", request=self._describe()
                ) from None
        if name == "error":
            message, body = _error_message(data)
            raise StreamError(f"The server sent an error event: {message}", self._describe(), body=body)
        self._ready.append((name, data))


def _error_message(data: bytes) -> tuple[str, object]:
    """The message and body of an ``event: error``."""
    try:
        body: object = loads(data)
    except ValueError:
        body = data.decode("utf-8", "replace")
    error = body.get("error", body) if isinstance(body, dict) else body
    message: object = error.get("message") if isinstance(error, dict) else error
    if not isinstance(message, str) or not message.strip():
        message = "(no message)"
    if len(message) > _SHOWN_MESSAGE:
        message = message[:_SHOWN_MESSAGE] + f"... [{len(message)} characters]"
    return message, error
