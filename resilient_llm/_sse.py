"""Server-sent events: lines in, ``(event, data)`` pairs out (the subset of the spec LLM servers use).

An event ends at a blank line; several ``data:`` lines join with newlines; ``:`` lines are comments;
``id:`` and ``retry:`` are ignored. A last event without its blank line is still delivered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator


async def iter_events(lines: AsyncIterator[bytes]) -> AsyncIterator[tuple[str | None, bytes]]:
    event: str | None = None
    data: list[bytes] = []
    async for line in lines:
        if not line:
            if data:
                yield event, data[0] if len(data) == 1 else b"\n".join(data)
            event, data = None, []
        elif line.startswith(b"data:"):
            value = line[5:]
            data.append(value[1:] if value[:1] == b" " else value)
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
        # comments (":"), "id:", "retry:" and unknown fields are ignored
    if data:
        yield event, data[0] if len(data) == 1 else b"\n".join(data)
