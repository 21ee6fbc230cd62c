"""Deadline scopes: a block of code that is cancelled when its (movable) deadline passes.

``async with deadline_scope(t) as scope`` behaves like ``anyio.CancelScope(deadline=t)``: the deadline
can be moved (``scope.deadline = ...``), the scope can be cancelled from outside (``scope.cancel()``),
and after the block ``scope.cancelled_caught`` says whether it ended because of its own cancellation
(which it then swallows). Cancellations from outside the scope pass through untouched.

On asyncio (Python 3.11+) it is ``asyncio.timeout_at``, which is several times cheaper to enter and
leave than an anyio cancel scope: every call enters two (the call's deadline and the attempt's
silence limit), so on the hot path this is worth about a tenth of the library's cost per call. On
other backends, and on Python 3.10, it is an anyio cancel scope. Both nest with each other and with
anyio's own scopes (anyio 4 counts native cancellations).
"""

from __future__ import annotations

import asyncio
import sys
from types import TracebackType

import anyio

_running_loop = asyncio._get_running_loop
_HAS_ASYNCIO_TIMEOUT = sys.version_info >= (3, 11)


class AnyioDeadline:
    __slots__ = ("_scope",)

    def __init__(self, deadline: float) -> None:
        self._scope = anyio.CancelScope(deadline=deadline)

    async def __aenter__(self) -> AnyioDeadline:
        self._scope.__enter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        self._scope.__exit__(exc_type, exc, tb)  # re-raises anything but its own cancellation
        return self._scope.cancelled_caught

    @property
    def deadline(self) -> float:
        return self._scope.deadline

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._scope.deadline = value

    @property
    def cancelled_caught(self) -> bool:
        return self._scope.cancelled_caught

    def cancel(self) -> None:
        self._scope.cancel()


class AsyncioDeadline:
    __slots__ = ("_timeout", "cancelled_caught")

    def __init__(self, deadline: float) -> None:
        self._timeout = asyncio.timeout_at(deadline)  # type: ignore[attr-defined,unused-ignore]
        self.cancelled_caught = False

    async def __aenter__(self) -> AsyncioDeadline:
        await self._timeout.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        try:
            await self._timeout.__aexit__(exc_type, exc, tb)
        except TimeoutError:
            if exc_type is not None and issubclass(exc_type, asyncio.CancelledError):
                self.cancelled_caught = True
                return True  # our own expiry: swallowed, like a cancel scope
            raise
        return False

    @property
    def deadline(self) -> float:
        when: float | None = self._timeout.when()
        return float("inf") if when is None else when

    @deadline.setter
    def deadline(self, value: float) -> None:
        if not self._timeout.expired():
            self._timeout.reschedule(value)

    def cancel(self) -> None:
        loop = _running_loop()
        if loop is not None and not self._timeout.expired():
            self._timeout.reschedule(loop.time())  # fires on the loop's next turn


DeadlineScope = AnyioDeadline | AsyncioDeadline


def deadline_scope(deadline: float) -> DeadlineScope:
    if _HAS_ASYNCIO_TIMEOUT and _running_loop() is not None:
        return AsyncioDeadline(deadline)
    return AnyioDeadline(deadline)
