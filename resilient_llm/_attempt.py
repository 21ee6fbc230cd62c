"""One attempt: send the request, read the answer under a silence limit, return the decoded body.

Every read happens inside a cancel scope whose deadline is ``min(call deadline, last byte + silence)``
and moves forward each time the server sends something. So a long generation that keeps producing
tokens is never cut, a silent server is cut after ``silence`` seconds, and the call's deadline is never
passed. The orphan detector can cancel the same scope from outside (see ``_vllm/_monitor.py``).

Three ways to read an answer:

* :func:`read_json` — a plain JSON body (models, embeddings, or when stall detection is off);
* :func:`read_assembled` — a non-streaming call sent as a stream and reassembled into the exact
  body the non-streaming endpoint returns (so silence can be measured while the answer is produced);
* :func:`open_stream` — a user's stream, returned once its first event arrived (the commit point:
  before it, failures are retried; after it, they reach the caller).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio

from ._errors_io import MalformedResponse
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    OrphanedRequestError,
    StallError,
    StreamError,
)
from ._hedge import AnswerPace, Hedger, Pace, race
from ._http._base import RawResponse, Transport, describe_request, to_httpx_response
from ._json import dumps, loads
from ._limits import DEFAULT_MAX_EVENT_BYTES
from ._scope import deadline_scope
from ._sse import EventReader
from ._watch import Watch, Watches


class Assembler(Protocol):
    #: characters of generated text fed so far: the answer's pace is measured in it (``_hedge.py``)
    produced: int

    def feed(self, chunk: dict[str, Any]) -> None: ...

    @property
    def finished(self) -> bool:
        """Every choice has its finish reason (or the final event arrived)."""
        ...

    def result(self) -> dict[str, Any]: ...


class Request:
    """What every attempt of a call sends. ``headers`` carry credentials: never log them.

    A JSON ``body`` is encoded when the first attempt needs it, not while the call waits in the
    limiter: thousands of queued calls then hold only the caller's own objects. ``content`` is a body
    already encoded (by openai's request builder). ``overtaken``: an attempt of this call was cut by the
    server monitor's overtaken rule (``_vllm/_monitor.py``), which cuts a call once at most.
    """

    __slots__ = ("_body", "_content", "headers", "method", "overtaken", "url")

    def __init__(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        body: Mapping[str, Any] | None = None,
        content: bytes | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self._body = body
        self._content = content
        self.overtaken = False

    @property
    def content(self) -> bytes | None:
        if self._content is None and self._body is not None:
            self._content = dumps(self._body)
            self._body = None
        return self._content


@dataclass(slots=True)
class Attempt:
    """The per-attempt context the call pipeline hands to a plan and its readers.

    ``status_error`` turns an error response into openai's exception for it. ``target`` is the base URL
    of the replica the limiter chose (``None`` for a client of one server). A plan whose result
    keeps reading after it returned (a stream) takes the call's limiter slot with :meth:`keep_slot`
    and gives it back through the returned callable when it closes.
    """

    transport: Transport
    silence: float | None
    deadline_at: float
    connect_timeout: float | None
    clock: Callable[[], float]
    watches: Watches | None  # the orphan detector's registry, None when it is off
    status_error: Callable[[Any], APIError]
    release: Callable[[BaseException | None], None]
    responded: Callable[[], None] = lambda: None  # an HTTP response arrived (the server is up)
    answering: Callable[[], None] = lambda: None  # the answer's first event arrived
    number: int = 1  # 1 for the first attempt of a call
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    target: str | None = None  # the replica's base URL this attempt goes to; None: the client's own
    pace: Pace | None = None  # the server's pace, which this attempt's answer feeds (_hedge.py)
    hedger: Hedger | None = None  # may send a copy of a slow non-streaming answer (_hedge.py)
    request: Request | None = None
    events: int = 0
    body_size: int = 0  # bytes of a JSON body read whole (large ones are decoded off the event loop)
    kept: bool = False

    def keep_slot(self) -> Callable[[BaseException | None], None]:
        """The result outlives the attempt: it releases the slot (once) through the returned callable."""
        self.kept = True
        return self.release

    def new_watch(self) -> Watch:
        """The watch of this attempt's wait, registered with the orphan detector when it is on."""
        watch = Watch(now=self.clock(), silence=self.silence, deadline_at=self.deadline_at)
        if self.watches is not None:
            req = self.request
            if req is not None and not req.overtaken:
                watch.may_overtake = True
                content = req.content
                watch.size = len(content) if content is not None else 0
            self.watches.add(watch)
        return watch

    def forget(self, watch: Watch, *, abandoned: bool) -> None:
        """The attempt stopped waiting: answered by the server, or ``abandoned`` by the client."""
        if self.watches is not None:
            self.watches.discard(watch, now=self.clock(), abandoned=abandoned)

    def describe(self) -> Any:
        req = self.request
        return describe_request(req.method, req.url) if req is not None else None

    def timed_out(self, watch: Watch | None) -> Exception:
        """The error for a cancelled attempt scope: deadline, orphan or stall."""
        if watch is not None and watch.orphaned:
            if watch.overtaken_by and self.request is not None:
                self.request.overtaken = True  # the call's next attempts wait for the other rules
            return OrphanedRequestError(
                self.describe(),
                server_active=watch.server_active,
                client_waiting=watch.client_waiting,
                overtaken_by=watch.overtaken_by,
                waited=self.clock() - watch.sent_at,
            )
        if self.clock() >= self.deadline_at or self.silence is None:
            return DeadlineReached()
        silence = self.silence if watch is None or watch.cut_after is None else watch.cut_after
        return StallError(self.describe(), silence=silence, received_events=self.events)


class DeadlineReached(Exception):
    """Internal: the attempt scope ended at the call's deadline; the pipeline raises DeadlineExceeded."""


async def send(att: Attempt) -> RawResponse:
    req = att.request
    assert req is not None
    raw = await att.transport.request(
        req.method, req.url, headers=req.headers, content=req.content, connect_timeout=att.connect_timeout
    )
    att.responded()
    if raw.status >= 400:
        body = await raw.read()
        raise att.status_error(to_httpx_response(raw, att.describe(), body))
    return raw


#: Bodies larger than this are built into openai's types a slice at a time (``_calls.build_model``),
#: yielding to the event loop in between. Decoding the JSON itself cannot be sliced: CPython's JSON
#: parsers hold the GIL (a thread would not help), about 30 ms per MB of numbers on a slow CPU — lower
#: ``Limits.max_body_bytes`` where that matters (docs/limits-and-security.md).
OFF_LOOP_DECODE_BYTES = 1024 * 1024


async def _decode_json(att: Attempt, raw: RawResponse, body: bytes) -> dict[str, Any]:
    att.body_size = len(body)
    try:
        data = loads(body)
    except ValueError as exc:
        # A cut body is a broken connection (retryable), not a schema problem.
        raise MalformedResponse(
            message=f"Invalid JSON in the response body ({len(body)} bytes): {str(exc)[:200]}",
            request=att.describe(),
        ) from None
    if not isinstance(data, dict):
        raise APIResponseValidationError(to_httpx_response(raw, att.describe(), body), data)
    return data


class _Waiting:
    """``async with _Waiting(att) as w``: one attempt's wait on the server.

    It holds the cancel scope whose deadline is the silence limit (moved forward as the answer
    arrives) capped by the call's deadline, and registers the attempt with the orphan detector. On the
    way out it drops the connection if the body was not read to the end, unregisters the attempt
    (unless a stream took it over), and turns the scope's expiry into the right error: deadline,
    orphan or stall.
    """

    __slots__ = ("att", "dropped", "kept", "raw", "scope", "watch")

    def __init__(self, att: Attempt) -> None:
        self.att = att
        self.watch = att.new_watch()
        self.scope = deadline_scope(self.watch.first_deadline(att.clock()))
        self.raw: RawResponse | None = None
        self.kept = False
        self.dropped = False  # the client stopped reading an answer it no longer needs (a hedge won)

    async def __aenter__(self) -> _Waiting:
        await self.scope.__aenter__()
        self.watch.bind(self.scope)
        return self

    def heard(self) -> None:
        """An event arrived: the server is alive; the watch moves the silence limit forward."""
        watch = self.watch
        if watch.first_byte_at is None:
            self.att.answering()
        watch.heard(self.att.clock())

    def hand_over(self) -> Watch:
        """A committed stream keeps the connection and the registration from here on."""
        self.kept, self.raw = True, None
        return self.watch

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: Any
    ) -> None:
        if (exc_type is not None or self.dropped) and self.raw is not None:
            with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
                await self.raw.aclose()
        if not self.kept:
            # The server answered (a body, an error status, a malformed answer) unless the wait was cut.
            answered = not self.dropped and (
                exc is None or isinstance(exc, (APIStatusError, APIResponseValidationError, StreamError))
            )
            self.att.forget(self.watch, abandoned=not answered)
        await self.scope.__aexit__(exc_type, exc, tb)  # re-raises anything but its own cancellation
        if self.scope.cancelled_caught:  # the scope expired (or was cancelled as an orphan)
            raise self.att.timed_out(self.watch) from None


async def read_json(att: Attempt) -> tuple[RawResponse, dict[str, Any]]:
    """The response (its status and headers) and its decoded JSON object."""
    async with _Waiting(att) as w:
        raw = w.raw = await send(att)
        return raw, await _decode_json(att, raw, await raw.read())


async def read_assembled(
    att: Attempt,
    assembler: Assembler,
    copy: Callable[[Attempt], Awaitable[tuple[RawResponse, dict[str, Any]]]] | None = None,
) -> tuple[RawResponse, dict[str, Any]]:
    """Stream the answer, feed every chunk to ``assembler``; the response and its non-streaming body.

    With ``copy`` (the same read on a new attempt) and the attempt's hedger, an answer that arrives far
    slower than the server's others is raced against a copy of the request (``_hedge.py``).
    """
    async with _Waiting(att) as w:
        w.watch.streams = True
        raw = w.raw = await send(att)
        if "text/event-stream" not in raw.headers.get("content-type", ""):
            return raw, await _decode_json(att, raw, await raw.read())  # the server ignored stream=true
        reader = event_reader(att, raw)
        hedger = att.hedger if copy is not None else None
        pace = None
        if att.pace is not None:  # the monitor may judge its silences against the server's pace
            pace = AnswerPace(att.pace, hedger.slowdown if hedger is not None else math.inf)
            w.watch.paced = True
        end = await _read_events(att, w, reader, assembler, pace)
        if end is not _SLOW:
            return await _finish(att, w, raw, assembler, end)
        assert hedger is not None and copy is not None
        rest = functools.partial(_read_rest, att, w, raw, reader, assembler)
        answer, hedged = await race(rest, functools.partial(hedger.send, copy), hedge_alone=hedger.alone)
        if hedged:
            w.dropped = True  # the slow answer's connection is closed: the server aborts it
            hedger.won()
        return answer


async def _read_rest(
    att: Attempt, w: _Waiting, raw: RawResponse, reader: EventReader, assembler: Assembler
) -> tuple[RawResponse, dict[str, Any]]:
    """The rest of a slow answer, read to its end (while a hedged copy races it)."""
    return await _finish(att, w, raw, assembler, await _read_events(att, w, reader, assembler, None))


#: How :func:`_read_events` stopped: the ``[DONE]`` event, the end of the body, or a slow answer.
_DONE, _ENDED, _SLOW = "done", "ended", "slow"


async def _read_events(
    att: Attempt, w: _Waiting, reader: EventReader, assembler: Assembler, pace: AnswerPace | None
) -> str:
    """Read the stream into ``assembler`` to its end, or until ``pace`` finds the answer slow."""
    clock = att.clock
    while True:
        item = reader.take()  # the rest of one read's events, without a coroutine per event
        fresh = False
        if item is None:
            fresh = not reader.buffered
            item = await reader.next()
            if item is None:
                return _ENDED
        att.events += 1
        if fresh:  # events that came in one read are heard once
            w.heard()
        if item[1] == b"[DONE]":
            return _DONE
        chunk = _decode_chunk(att, item[1])
        try:
            assembler.feed(chunk)
        except (AttributeError, TypeError, KeyError, ValueError) as exc:
            raise _malformed(att, f"a stream event of an unexpected shape ({type(exc).__name__})") from None
        if fresh and pace is not None and pace.heard(clock(), assembler.produced):
            return _SLOW


async def _finish(
    att: Attempt, w: _Waiting, raw: RawResponse, assembler: Assembler, end: str
) -> tuple[RawResponse, dict[str, Any]]:
    """The answer of a stream read to its end."""
    if end is not _DONE and not assembler.finished:
        raise APIConnectionError(
            message=f"The stream ended without [DONE] after {att.events} event(s)",
            request=att.describe(),
        )
    w.raw = None
    await raw.release()
    try:
        return raw, assembler.result()
    except (AttributeError, TypeError, KeyError, ValueError) as exc:
        raise _malformed(att, f"the streamed answer cannot be reassembled: {str(exc)[:200]}") from None


def event_reader(att: Attempt, raw: RawResponse) -> EventReader:
    return EventReader(raw.read_some, max_event_bytes=att.max_event_bytes, describe=att.describe)


def _malformed(att: Attempt, what: str) -> MalformedResponse:
    """Nothing reached the caller yet: a retryable error (the next attempt may get a sound answer)."""
    return MalformedResponse(message=f"Malformed answer: {what}", request=att.describe())


def _decode_chunk(att: Attempt, data: bytes) -> dict[str, Any]:
    try:
        chunk = loads(data)
    except ValueError as exc:
        raise _malformed(att, f"invalid JSON in a stream event: {str(exc)[:200]}") from None
    if not isinstance(chunk, dict):
        raise _malformed(att, f"a stream event that is not a JSON object: {data[:200]!r}")
    error = chunk.get("error")
    if error is not None:
        message = error.get("message") if isinstance(error, dict) else str(error)
        raise StreamError(f"The server sent an error in the stream: {message}", att.describe(), body=error)
    return chunk


@dataclass(slots=True)
class OpenedStream:
    """A committed stream: its response, its event reader (the first event still queued), its watch."""

    raw: RawResponse
    reader: EventReader
    watch: Watch  # stays registered with the orphan detector until the stream closes


async def open_stream(att: Attempt) -> OpenedStream:
    """Send and read up to the first event; retries stay possible until this returns.

    The first event stays queued in the reader, so the stream's consumer (openai's own stream
    decoder, fed by ``reader.read_bytes``) sees the body from its first event.
    """
    async with _Waiting(att) as w:
        w.watch.streams = True
        raw = w.raw = await send(att)
        if "text/event-stream" not in raw.headers.get("content-type", ""):
            body = await raw.read()
            w.raw = None  # read to the end: nothing to drop
            try:
                decoded: object = loads(body)
            except ValueError:
                decoded = body[:200].decode("utf-8", "replace")
            raise APIResponseValidationError(
                to_httpx_response(raw, att.describe(), body),
                decoded,
                message=(
                    "The server answered a streaming request with "
                    f"{raw.headers.get('content-type') or 'no content type'} instead of an event stream"
                ),
            )
        reader = event_reader(att, raw)
        first = await reader.peek()
        if first is None:
            raise APIConnectionError(
                message="The stream ended before its first event", request=att.describe()
            )
        att.events = 1
        w.heard()
        if first[1] != b"[DONE]":
            _decode_chunk(att, first[1])  # an error as the first event is still retryable
        return OpenedStream(raw, reader, watch=w.hand_over())


__all__ = [
    "Assembler",
    "Attempt",
    "DeadlineReached",
    "OpenedStream",
    "Request",
    "open_stream",
    "read_assembled",
    "read_json",
]
