"""Server-sent events: body bytes in, ``(event, data)`` pairs out (the subset of the spec LLM servers use).

An event ends at a blank line; several ``data:`` lines join with newlines; ``:`` lines are comments;
``id:`` and ``retry:`` are ignored; ``\\r\\n`` and ``\\r`` line endings are accepted. A last event
without its blank line is still delivered.

The reader pulls whatever bytes have arrived and splits every complete event out of them at once: a
typical vLLM event is one ``data: {...}`` line, and a burst of tokens often arrives in one read. A class
rather than an async generator, so an abandoned or cancelled reader leaves nothing to finalize.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable

Event = tuple[str | None, bytes]


def parse_event(block: bytes) -> Event | None:
    """One event block (its lines, without the blank line that ended it)."""
    if block[:6] == b"data: " and b"\n" not in block:
        return None, block[6:]  # the common case: a single data line
    event: str | None = None
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value[:1] == b" " else value)
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
        # comments (":"), "id:", "retry:" and unknown fields are ignored
    if not data:
        return None
    return event, data[0] if len(data) == 1 else b"\n".join(data)


class EventReader:
    __slots__ = ("_buffer", "_eof", "_read_some", "_ready")

    def __init__(self, read_some: Callable[[], Awaitable[bytes]]) -> None:
        self._read_some = read_some
        self._buffer = b""
        self._ready: deque[Event] = deque()
        self._eof = False

    @property
    def buffered(self) -> bool:
        """Whether the next event is already here (arrived with the previous one, in the same read)."""
        return bool(self._ready)

    async def next(self) -> Event | None:
        """The next event, or ``None`` when the body ended."""
        ready = self._ready
        while not ready:
            if self._eof:
                return None
            piece = await self._read_some()
            if not piece:
                self._eof = True
                tail, self._buffer = self._buffer.replace(b"\r", b"").strip(b"\n"), b""
                if tail and (last := parse_event(tail)) is not None:
                    ready.append(last)
                continue
            buffer = self._buffer + piece if self._buffer else piece
            if b"\r" in buffer:
                held = b"\r" if buffer.endswith(b"\r") else b""  # its "\n" may come in the next read
                buffer = buffer[: len(buffer) - len(held)].replace(b"\r\n", b"\n").replace(b"\r", b"\n")
                if held:
                    *blocks, rest = buffer.split(b"\n\n")
                    self._buffer = rest + held
                    self._queue(blocks)
                    continue
            if b"\n\n" not in buffer:
                self._buffer = buffer
                continue
            *blocks, self._buffer = buffer.split(b"\n\n")
            self._queue(blocks)
        return ready.popleft()

    def _queue(self, blocks: list[bytes]) -> None:
        for block in blocks:
            block = block.strip(b"\n")
            if block and (event := parse_event(block)) is not None:
                self._ready.append(event)
