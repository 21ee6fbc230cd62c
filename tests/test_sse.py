"""The SSE reader: same events however the bytes are split across reads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
import anyio.lowlevel
import openai
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from openai._streaming import SSEDecoder

from resilient_llm._errors_io import EventTooLarge, MalformedResponse
from resilient_llm._exceptions import StreamError
from resilient_llm._sse import Event, EventReader, parse_event

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


# --- hostile input: limits, typed errors, linear cost, pacing ----------------------------------------


def reader_over(pieces: list[bytes], **kw: Any) -> tuple[EventReader, list[int]]:
    it = iter(pieces)
    reads = [0]

    async def read_some() -> bytes:
        reads[0] += 1
        return next(it, b"")

    return EventReader(read_some, **kw), reads


def events_then_error(pieces: list[bytes], **kw: Any) -> tuple[list[Event], BaseException | None]:
    async def main() -> tuple[list[Event], BaseException | None]:
        reader, _ = reader_over(pieces, **kw)
        out: list[Event] = []
        try:
            while (event := await reader.next()) is not None:
                out.append(event)
        except Exception as exc:
            return out, exc
        return out, None

    return anyio.run(main)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b'{"message": "engine died"}', "engine died"),
        (b'{"error": {"message": "out of KV cache", "code": 503}}', "out of KV cache"),
        (b'{"error": "plain string"}', "plain string"),
        (b"not json at all", "not json at all"),
        (b"{}", "(no message)"),
    ],
)
def test_event_error_raises_a_stream_error_with_the_servers_message(data: bytes, message: str) -> None:
    out, exc = events_then_error([b"data: 1\n\nevent: error\ndata: " + data + b"\n\ndata: 2\n\n"])
    assert out == [(None, b"1")]  # what came before the error is still delivered
    assert isinstance(exc, StreamError)  # the library's class (an openai.APIError once issue 5 lands)
    assert message in str(exc)


def test_invalid_utf8_event_name_is_a_typed_retryable_error() -> None:
    out, exc = events_then_error([b"event: \xff\xfe\ndata: {}\n\n"])
    assert out == []
    assert isinstance(exc, MalformedResponse) and isinstance(exc, openai.APIConnectionError)
    assert exc.retryable is True
    assert "not UTF-8" in str(exc)


def test_a_bare_done_is_an_event() -> None:
    assert read_all([b"data: [DONE]\n\n"]) == [(None, b"[DONE]")]
    assert read_all([b"data: [DONE]"]) == [(None, b"[DONE]")]


def test_a_huge_line_without_newline_fails_as_soon_as_it_passes_the_limit() -> None:
    piece = b"x" * 65536
    pieces = [b"data: "] + [piece] * (200 * 16)  # 200 MB offered
    started = time.perf_counter()
    _out, exc = events_then_error(pieces, max_event_bytes=8 * 1024 * 1024)
    assert time.perf_counter() - started < 1.0
    assert isinstance(exc, EventTooLarge) and isinstance(exc, openai.APIResponseValidationError)
    assert exc.retryable is False and exc.limit == 8 * 1024 * 1024
    assert "max_event_bytes" in str(exc)


def test_reads_stop_at_the_limit() -> None:
    async def main() -> int:
        reader, reads = reader_over([b"data: "] + [b"x" * 65536] * 1000, max_event_bytes=1024 * 1024)
        with pytest.raises(EventTooLarge):
            await reader.next()
        return reads[0]

    assert anyio.run(main) <= 1024 * 1024 // 65536 + 2


def test_many_small_data_lines_count_towards_one_event() -> None:
    _, exc = events_then_error([b"data: abcdefgh\n" * 2000], max_event_bytes=10_000)
    assert isinstance(exc, EventTooLarge)


def test_a_long_line_costs_linear_time() -> None:
    # 40 MB in 4 KiB reads: the old re-join/re-scan of the buffer took minutes for this.
    pieces = [b"data: "] + [b"y" * 4096] * 10_000 + [b"\n\n"]
    started = time.perf_counter()
    out, exc = events_then_error(pieces, max_event_bytes=64 * 1024 * 1024)
    assert exc is None and len(out) == 1 and len(out[0][1]) == 4096 * 10_000
    assert time.perf_counter() - started < 3.0


def test_many_events_in_one_read_let_other_tasks_run() -> None:
    async def main() -> int:
        reader, _ = reader_over([b"data: {}\n\n" * 300_000])
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await anyio.lowlevel.checkpoint()

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            await anyio.lowlevel.checkpoint()
            while await reader.next() is not None:
                pass
            tg.cancel_scope.cancel()
        return ticks

    assert anyio.run(main) > 10


def test_a_stream_whose_reads_wait_adds_no_turn_of_the_loop_per_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A read that waited for input already let the loop run: the pacer does not add a checkpoint to
    the next one (a token-by-token stream would otherwise cost a task step per read)."""
    from resilient_llm import _pacing

    checkpoints = 0
    real_checkpoint = _pacing.checkpoint

    async def counting() -> None:
        nonlocal checkpoints
        checkpoints += 1
        await real_checkpoint()

    monkeypatch.setattr(_pacing, "checkpoint", counting)

    async def main() -> int:
        pieces = iter([b"data: %d\n\n" % i for i in range(20)])

        async def read_some() -> bytes:
            await anyio.sleep(2 * _pacing.SLICE)  # the network: the next piece comes later
            return next(pieces, b"")

        reader = EventReader(read_some)
        count = 0
        while await reader.next() is not None:
            count += 1
        return count

    assert anyio.run(main) == 20
    assert checkpoints <= 2


def test_read_bytes_passes_events_on_in_small_verified_chunks() -> None:
    async def main() -> tuple[Event | None, list[bytes]]:
        reader, _ = reader_over([b": hi\r\nevent: e\r\ndata: a\r\ndata: b\r\n\r\n" + b"data: x\n\n" * 40])
        first = await reader.peek()
        chunks = []
        while chunk := await reader.read_bytes():
            chunks.append(chunk)
        return first, chunks

    first, chunks = anyio.run(main)
    assert first == ("e", b"a\nb")
    assert [c.count(b"\n\n") for c in chunks] == [16, 16, 9]
    assert chunks[0].startswith(b"event: e\ndata: a\ndata: b\n\ndata: x\n\n")


def test_read_bytes_refuses_data_that_is_not_utf8() -> None:
    async def main() -> None:
        reader, _ = reader_over([b"data: ok\n\ndata: \xc3\x28\n\n"], events_per_chunk=1)
        assert await reader.read_bytes() == b"data: ok\n\n"
        with pytest.raises(MalformedResponse, match="not UTF-8"):
            await reader.read_bytes()

    anyio.run(main)


TYPED = (EventTooLarge, MalformedResponse, StreamError)


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    pieces, last = [], 0
    for p in points:
        pieces.append(data[last:p])
        last = p
    pieces.append(data[last:])
    return [p for p in pieces if p]


SSE_BYTES = st.lists(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from(
            [b"data: ", b"data:", b"event: ", b"event: error", b"\n", b"\r", b"\r\n", b": c", b"{}"]
        ),
    ),
    max_size=30,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(data=SSE_BYTES, cuts=st.lists(st.integers(0, 400), max_size=8))
def test_arbitrary_bytes_give_events_or_typed_errors_only(data: bytes, cuts: list[int]) -> None:
    pieces = split(data, cuts)
    out, exc = events_then_error(pieces, max_event_bytes=64)
    assert exc is None or isinstance(exc, TYPED), repr(exc)
    whole, whole_exc = events_then_error([data] if data else [], max_event_bytes=64)
    assert (out, type(exc)) == (whole, type(whole_exc))  # however the bytes are split


@settings(max_examples=200, deadline=None)
@given(data=SSE_BYTES)
@example(data=b"data:\nevent:")  # an empty event name is no name, for openai's decoder too
def test_read_bytes_is_what_openais_own_decoder_reads_back(data: bytes) -> None:
    expected, _ = events_then_error([data] if data else [])

    async def main() -> tuple[list[tuple[str | None, bytes]], bool]:
        reader, _ = reader_over([data])
        chunks: list[bytes] = []
        failed = False
        try:
            while chunk := await reader.read_bytes():
                chunks.append(chunk)
        except TYPED:
            failed = True

        async def source() -> AsyncIterator[bytes]:
            for c in chunks:
                yield c

        decoded = [(sse.event, sse.data.encode()) async for sse in SSEDecoder().aiter_bytes(source())]
        return decoded, failed

    decoded, failed = anyio.run(main)
    assert decoded == expected[: len(decoded)]
    assert failed or len(decoded) == len(expected)


#: Streams made mostly of whole events, so that reads often end with a blank line (the block path).
EVENT_STREAMS = st.lists(
    st.one_of(
        st.binary(max_size=24).map(lambda b: b"data: " + b + b"\n\n"),
        st.sampled_from(
            [b"data: [DONE]\n\n", b"\n\n", b": ping\n\n", b"event: x\ndata: y\n\n", b"data: a\n"]
        ),
        SSE_BYTES,
    ),
    max_size=12,
)


class _LineOnlyReader(EventReader):
    """The reader without its one-pass path for whole events."""

    __slots__ = ()

    def _feed(self, piece: bytes) -> None:
        self._feed_lines(piece)


@settings(max_examples=300, deadline=None)
@given(blocks=EVENT_STREAMS, limit=st.sampled_from([8, 64, 1 << 20]))
@example(blocks=[b"data: " + b"x" * 10 + b"\n\n"], limit=8)
@example(blocks=[b"data: a\n\n\n\n", b"data: b\n\n"], limit=64)
@example(blocks=[b"event: error\n", b"data: {}\n\n"], limit=64)
def test_whole_event_reads_parse_as_the_line_parser_does(blocks: list[bytes], limit: int) -> None:
    """The one-pass path for reads of whole events gives exactly what the line-by-line parser gives."""

    def run(line_only: bool) -> tuple[list[Event], type[BaseException] | None]:
        async def main() -> tuple[list[Event], type[BaseException] | None]:
            it = iter(blocks)

            async def read_some() -> bytes:
                return next(it, b"")

            reader = (_LineOnlyReader if line_only else EventReader)(read_some, max_event_bytes=limit)
            out: list[Event] = []
            try:
                while (event := await reader.next()) is not None:
                    out.append(event)
            except Exception as exc:
                return out, type(exc)
            return out, None

        return anyio.run(main)

    assert run(line_only=False) == run(line_only=True)
