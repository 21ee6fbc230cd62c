"""The SSE reader: same events however the bytes are split across reads."""

from __future__ import annotations

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_llm._sse import EventReader, parse_event

pytestmark = pytest.mark.timeout(60)


def read_all(pieces: list[bytes]) -> list[tuple[str | None, bytes]]:
    async def main() -> list[tuple[str | None, bytes]]:
        it = iter(pieces)

        async def read_some() -> bytes:
            return next(it, b"")

        reader = EventReader(read_some)
        out = []
        while (event := await reader.next()) is not None:
            out.append(event)
        return out

    return anyio.run(main)


@pytest.mark.parametrize(
    ("block", "expected"),
    [
        (b"data: {}", (None, b"{}")),
        (b"data:{}", (None, b"{}")),
        (b'event: response.completed\ndata: {"a":1}', ("response.completed", b'{"a":1}')),
        (b"data: a\ndata: b", (None, b"a\nb")),
        (b": keep-alive", None),
        (b"id: 7\nretry: 10\ndata: x", (None, b"x")),
    ],
)
def test_parse_event_table(block: bytes, expected: object) -> None:
    assert parse_event(block) == expected


STREAM = b'data: {"i":1}\n\n: comment\n\nevent: e\ndata: two\ndata: lines\n\ndata: [DONE]\n\n'
EXPECTED = [(None, b'{"i":1}'), ("e", b"two\nlines"), (None, b"[DONE]")]


@settings(max_examples=200, deadline=None)
@given(cuts=st.lists(st.integers(0, len(STREAM)), max_size=12), crlf=st.booleans())
def test_any_split_gives_the_same_events(cuts: list[int], crlf: bool) -> None:
    data = STREAM.replace(b"\n", b"\r\n") if crlf else STREAM
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    pieces = [p for p in pieces if p]
    assert read_all(pieces) == EXPECTED


def test_last_event_without_blank_line_is_delivered() -> None:
    assert read_all([b"data: a\n\ndata: b"]) == [(None, b"a"), (None, b"b")]
