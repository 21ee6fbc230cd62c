"""Server-sent events: lines in, ``(event, data)`` pairs out (the subset of the spec LLM servers use).

An event ends at a blank line; several ``data:`` lines join with newlines; ``:`` lines are comments;
``id:`` and ``retry:`` are ignored. A last event without its blank line is still delivered.

A class rather than an async generator: a generator left unexhausted (a stall, a cancelled read) must be
closed explicitly on some backends, while this reader holds nothing that needs closing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

Event = tuple[str | None, bytes]


class EventReader:
    __slots__ = ("_readline",)

    def __init__(self, readline: Callable[[], Awaitable[bytes]]) -> None:
        self._readline = readline

    async def next(self) -> Event | None:
        """The next event, or ``None`` when the body ended."""
        event: str | None = None
        data: list[bytes] = []
        readline = self._readline
        while True:
            line = await readline()
            if not line:
                break
            line = line.rstrip(b"\r\n")
            if not line:
                if data:
                    break
                event = None
            elif line.startswith(b"data:"):
                value = line[5:]
                data.append(value[1:] if value[:1] == b" " else value)
            elif line.startswith(b"event:"):
                event = line[6:].strip().decode()
            # comments (":"), "id:", "retry:" and unknown fields are ignored
        if not data:
            return None
        return event, data[0] if len(data) == 1 else b"\n".join(data)
