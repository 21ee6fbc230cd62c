"""A committed stream: openai's own ``AsyncStream``, over a body that keeps the call's limits.

``create(..., stream=True)`` returns :class:`ResilientStream`, an ``openai.AsyncStream`` (its SSE
decoder, its chunk types, its ``close()``) that also closes the body when the stream fails and turns a
malformed event into openai's ``APIResponseValidationError`` instead of a raw ``ValueError``. The bytes
it decodes come from :class:`SilenceByteStream`, an ``AsyncByteStream`` of
openai's httpx flavour. Each read waits at most ``silence`` seconds and never past the call's deadline;
the orphan detector can cut it. Closing the stream, reading it to the end, a read that fails, or
abandoning it (garbage collection) drops or releases the connection — the server sees the disconnect
and aborts the request — and gives the call's limiter slot back. Nothing is retried once the stream
is returned (its first event had arrived: the commit point).
"""

from __future__ import annotations

import functools
import typing
from collections.abc import AsyncIterator, Callable
from typing import Any, Generic, TypeVar

import anyio
import openai

from ._attempt import Attempt, DeadlineReached, OpenedStream
from ._compat import httpx_flavour
from ._exceptions import APIResponseValidationError, DeadlineExceeded, OpenAIError
from ._scope import deadline_scope

_T = TypeVar("_T")


class ResilientStream(openai.AsyncStream[_T], Generic[_T]):
    """openai's ``AsyncStream``, closed whenever it fails, with typed errors for malformed events."""

    def __stream__(self) -> AsyncIterator[_T]:
        return _Guarded(self, super().__stream__())


class _Guarded(Generic[_T]):
    """An async iterator (not a generator: nothing is left for the garbage collector to finalize)."""

    __slots__ = ("_inner", "_stream")

    def __init__(self, stream: ResilientStream[_T], inner: AsyncIterator[_T]) -> None:
        self._stream = stream
        self._inner = inner

    def __aiter__(self) -> _Guarded[_T]:
        return self

    async def __anext__(self) -> _T:
        try:
            return await self._inner.__anext__()
        except (StopAsyncIteration, OpenAIError):
            await self._close()
            raise
        except Exception as exc:  # openai's decoder on bytes that are not an event stream
            await self._close()
            raise APIResponseValidationError(
                self._stream.response,
                None,
                message=f"Malformed event in the stream: {type(exc).__name__}: {str(exc)[:200]}",
            ) from exc
        except BaseException:
            await self._close()
            raise

    async def _close(self) -> None:
        with anyio.CancelScope(shield=True):
            await self._stream.response.aclose()


def resilient_stream_cls(stream_cls: Any) -> Any:
    """openai's ``AsyncStream[X]`` as :class:`ResilientStream` ``[X]``; any other class is kept."""
    if typing.get_origin(stream_cls) is openai.AsyncStream:
        return _resilient_stream_of(typing.get_args(stream_cls)[0])
    return stream_cls


@functools.lru_cache(maxsize=64)
def _resilient_stream_of(chunk: Any) -> Any:
    return ResilientStream[chunk]


class SilenceByteStream(httpx_flavour.AsyncByteStream):  # type: ignore[misc,name-defined]
    """Body bytes of a committed stream, each read under the silence limit and the call's deadline."""

    def __init__(
        self,
        opened: OpenedStream,
        *,
        attempt: Attempt,
        on_close: Callable[[BaseException | None], None],
        deadline: float,
        attempts: int,
    ) -> None:
        self._opened = opened
        self._att = attempt
        self._on_close: Callable[[BaseException | None], None] | None = on_close
        self._deadline = deadline
        self._attempts = attempts

    @property
    def closed(self) -> bool:
        return self._on_close is None

    def __aiter__(self) -> SilenceByteStream:
        return self

    async def __anext__(self) -> bytes:
        if self._on_close is None:
            raise StopAsyncIteration
        try:
            piece = await self._read()
        except BaseException as exc:
            self._finish(exc, abandoned=True)
            await self._drop()
            raise
        if not piece:  # the body ended: the connection goes back to the pool
            self._finish(None, abandoned=False)
            with anyio.CancelScope(shield=True):
                await self._opened.raw.release()
            raise StopAsyncIteration
        return piece

    async def _read(self) -> bytes:
        att = self._att
        watch = self._opened.watch
        async with deadline_scope(watch.first_deadline(att.clock())) as scope:
            watch.bind(scope)
            piece = await self._opened.reader.read_bytes()
            att.events += 1
            watch.heard(att.clock())
            return piece
        error = att.timed_out(watch)  # the scope expired, or was cancelled as an orphan
        if isinstance(error, DeadlineReached):  # the engine is no longer around to translate it
            raise DeadlineExceeded(
                att.describe(), deadline=self._deadline, attempts=self._attempts, waiting_for="streaming"
            )
        raise error

    async def aclose(self) -> None:
        if self._on_close is not None:
            self._finish(None, abandoned=True)  # closed before its end: the server sees a disconnect
            await self._drop()

    async def _drop(self) -> None:
        with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
            await self._opened.raw.aclose()

    def _finish(self, exc: BaseException | None, *, abandoned: bool) -> None:
        self._att.forget(self._opened.watch, abandoned=abandoned)
        on_close, self._on_close = self._on_close, None
        if on_close is not None:
            on_close(exc)

    def __del__(self) -> None:
        if self._on_close is not None:
            self._finish(None, abandoned=True)
            self._opened.raw.close()


__all__ = ["ResilientStream", "SilenceByteStream", "resilient_stream_cls"]
