"""``AsyncStream``: the object ``create(..., stream=True)`` returns.

It is an async iterator usable with ``async with``. Each read waits at most ``silence`` seconds and never
past the call's deadline. Closing it, leaving its ``async with`` block, reading it to the end, or
abandoning it (garbage collection) drops the connection — the server sees the disconnect and aborts
the request — and gives the limiter slot back. An ``error`` object inside the stream raises
:class:`~resilient_llm.StreamError`. The stream is committed: nothing is retried once it is returned.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import anyio

from ._attempt import Attempt, DeadlineReached, OpenedStream, _decode_chunk
from ._exceptions import DeadlineExceeded
from ._scope import deadline_scope

T = TypeVar("T")


class AsyncStream(Generic[T]):
    def __init__(
        self,
        opened: OpenedStream,
        *,
        attempt: Attempt,
        parse: Callable[[dict[str, Any]], T],
        on_close: Callable[[BaseException | None], None],
        deadline: float,
        attempts: int,
    ) -> None:
        self._opened = opened
        self._att = attempt
        self._parse = parse
        self._on_close: Callable[[BaseException | None], None] | None = on_close
        self._deadline = deadline
        self._attempts = attempts
        self._pending = opened.first

    @property
    def closed(self) -> bool:
        return self._on_close is None

    def __aiter__(self) -> AsyncStream[T]:
        return self

    async def __anext__(self) -> T:
        if self._on_close is None:
            raise StopAsyncIteration
        if self._opened.json_body is not None:  # the server answered without streaming
            body, self._opened.json_body = self._opened.json_body, None
            return self._parse(body)
        try:
            item = self._pending
            self._pending = None
            if item is None:
                item = await self._read()
            if item is None or item[1] == b"[DONE]":
                await self.aclose()
                raise StopAsyncIteration
            return self._parse(_decode_chunk(self._att, item[1]))
        except StopAsyncIteration:
            raise
        except BaseException as exc:
            self._finish(exc)
            await self._drop()
            raise

    async def _read(self) -> tuple[str | None, bytes] | None:
        att = self._att
        events = self._opened.events
        if events is None:
            return None
        watch = self._opened.watch
        async with deadline_scope(att.first_deadline()) as scope:
            if watch is not None:
                watch.scope = scope
            item = await events.next()
            att.events += 1
            if watch is not None:
                watch.heard(att.clock())
            return item
        error = att.timed_out(watch)  # the scope expired, or was cancelled as an orphan
        if isinstance(error, DeadlineReached):  # the engine is no longer around to translate it
            raise DeadlineExceeded(
                att.describe(), deadline=self._deadline, attempts=self._attempts, waiting_for="streaming"
            )
        raise error

    async def aclose(self) -> None:
        if self._on_close is not None:
            self._finish(None)
            await self._drop()

    def close(self) -> None:
        """Synchronous close (drops the connection where the HTTP library allows it)."""
        if self._on_close is not None:
            self._finish(None)
            self._opened.raw.close()

    async def _drop(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
            await self._opened.raw.aclose()

    def _finish(self, exc: BaseException | None) -> None:
        watch, self._opened.watch = self._opened.watch, None
        if watch is not None and self._att.watches is not None:
            self._att.watches.pop(watch, None)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(exc)

    async def __aenter__(self) -> AsyncStream[T]:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __del__(self) -> None:
        if self._on_close is not None:
            self._finish(None)
            self._opened.raw.close()

    async def until_done(self) -> None:
        async for _ in self:
            pass
