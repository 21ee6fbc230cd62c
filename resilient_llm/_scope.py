"""Deadline scopes: a block of code that is cancelled when its (movable) deadline passes.

``async with deadline_scope(t) as scope`` behaves like ``anyio.CancelScope(deadline=t)``: the deadline
can be moved (``scope.deadline = ...``), the scope can be cancelled from outside (``scope.cancel()``),
and after the block ``scope.cancelled_caught`` says whether it ended because of its own cancellation
(which it then swallows). Cancellations from outside the scope pass through untouched.

On asyncio (Python 3.11+) it is :class:`AsyncioDeadline`: ``asyncio.timeout_at``'s logic, several times
cheaper to enter and leave than an anyio cancel scope, with the timers of all its scopes in one heap
per loop behind one loop timer (``asyncio.timeout_at`` schedules a loop timer per scope and per move:
a timer handle, a context copy and a heap push with comparisons in Python, for every call in flight
or queued). Every call enters two (the call's deadline and the attempt's silence limit), so on the
hot path this is worth about a tenth of the library's cost per call. On other backends, and on
Python 3.10, it is an anyio cancel scope. Both nest with each other and with anyio's own scopes
(anyio 4 counts native cancellations).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import sys
from types import TracebackType
from typing import Any, Final

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
    """``asyncio.timeout_at``'s logic (the same task cancel and uncancel, so it nests with anyio's scopes
    as asyncio's own does), with the timer kept in the loop's :class:`_Timers` instead of a loop
    timer of its own."""

    __slots__ = ("_cancelling", "_entry", "_state", "_task", "_when", "cancelled_caught")

    def __init__(self, deadline: float) -> None:
        self._when = deadline
        self._state = _CREATED
        self._entry: list[Any] | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelling = 0
        self.cancelled_caught = False

    async def __aenter__(self) -> AsyncioDeadline:
        if self._state is not _CREATED:
            raise RuntimeError("a deadline scope cannot be entered twice")
        task = asyncio.current_task()
        if task is None:
            raise RuntimeError("a deadline scope must be used inside a task")
        self._task = task
        self._cancelling = task.cancelling()  # type: ignore[attr-defined,unused-ignore]
        self._state = _ENTERED
        self._entry = _timers().add(self._when, self)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        entry = self._entry
        if entry is not None:
            self._entry = None
            _timers().discard(entry)
        if self._state is _EXPIRING:
            self._state = _EXITED
            assert self._task is not None
            uncancelled: int = self._task.uncancel()  # type: ignore[attr-defined,unused-ignore]
            if uncancelled <= self._cancelling and exc_type is asyncio.CancelledError:
                self.cancelled_caught = True
                return True  # our own expiry: swallowed, like a cancel scope
            return False
        self._state = _EXITED
        return False

    def _expire(self) -> None:
        """Its time came (called by :class:`_Timers`): cancel the task, as ``asyncio.Timeout`` does."""
        self._entry = None
        if self._state is _ENTERED:
            assert self._task is not None
            self._state = _EXPIRING
            self._task.cancel()

    @property
    def deadline(self) -> float:
        return self._when

    @deadline.setter
    def deadline(self, value: float) -> None:
        self._when = value
        if self._state is _ENTERED:
            timers = _timers()
            if self._entry is not None:
                timers.discard(self._entry)
            self._entry = timers.add(value, self)

    def cancel(self) -> None:
        """Expire on the loop's next turn (before it is entered: as soon as it is)."""
        loop = _running_loop()
        if loop is not None and self._state in (_CREATED, _ENTERED):
            self.deadline = loop.time()


_CREATED, _ENTERED, _EXPIRING, _EXITED = "created", "entered", "expiring", "exited"


class _Timers:
    """The deadlines of every :class:`AsyncioDeadline` of one loop, behind one loop timer.

    A heap of ``[when, sequence, scope]`` entries (compared in C, unlike the loop's own timer handles)
    and one ``call_at`` for the earliest. A scope that leaves its block only marks its entry (the
    scope set to ``None``); marked entries are dropped as they come to the top, or all at once when
    they are most of the heap. Calls in flight each hold one or two scopes whose deadlines are
    minutes away: entering and leaving them costs a list and a heap push, no loop timer.
    """

    __slots__ = ("_armed", "_handle", "_heap", "_stale")

    def __init__(self) -> None:
        self._heap: list[list[Any]] = []
        self._stale = 0  # marked entries still in the heap
        self._armed: float | None = None  # when the loop timer fires
        self._handle: asyncio.TimerHandle | None = None

    def add(self, when: float, scope: AsyncioDeadline) -> list[Any] | None:
        if when == math.inf:
            return None
        entry = [when, next(_sequence), scope]
        heapq.heappush(self._heap, entry)
        if self._armed is None or when < self._armed:
            self._arm(when)
        return entry

    def discard(self, entry: list[Any]) -> None:
        entry[2] = None
        self._stale += 1
        heap = self._heap
        if self._stale > _COMPACT_AT and self._stale * 2 > len(heap):
            heap[:] = [e for e in heap if e[2] is not None]
            heapq.heapify(heap)
            self._stale = 0

    def _arm(self, when: float) -> None:
        if self._handle is not None:
            self._handle.cancel()
        self._armed = when
        self._handle = asyncio.get_running_loop().call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = self._armed = None
        heap = self._heap
        now = asyncio.get_running_loop().time()
        while heap and (heap[0][0] <= now or heap[0][2] is None):
            entry = heapq.heappop(heap)
            scope = entry[2]
            if scope is None:
                self._stale -= 1
                continue
            entry[2] = None
            scope._expire()
        if heap:
            self._arm(heap[0][0])


#: Marked entries in a loop's heap before they are dropped at once (when they are most of it).
_COMPACT_AT: Final = 256
_sequence = itertools.count()  # orders entries of equal deadlines (first in, first fired)
#: The attribute of a loop that holds its :class:`_Timers`. On the loop itself, not in a registry
#: keyed by loops: the timers reference the loop (their timer handle, the tasks of live scopes), so a
#: weak-keyed registry would keep every loop that ever ran a scope alive; loop and timers are one cycle
#: that the garbage collector frees together.
_ATTRIBUTE: Final = "_resilient_llm_deadlines"
#: Loops that take no attribute (none of asyncio's own or uvloop's): their timers, for as long as the
#: process lives.
_NO_ATTRIBUTES: dict[asyncio.AbstractEventLoop, _Timers] = {}


def _timers() -> _Timers:
    """The running loop's :class:`_Timers`."""
    loop = asyncio.get_running_loop()
    timers: _Timers | None = getattr(loop, _ATTRIBUTE, None)
    if timers is None:
        timers = _NO_ATTRIBUTES.get(loop)
        if timers is None:
            timers = _Timers()
            try:
                setattr(loop, _ATTRIBUTE, timers)
            except AttributeError:
                _NO_ATTRIBUTES[loop] = timers
    return timers


DeadlineScope = AnyioDeadline | AsyncioDeadline


def deadline_scope(deadline: float) -> DeadlineScope:
    if _HAS_ASYNCIO_TIMEOUT and _running_loop() is not None:
        return AsyncioDeadline(deadline)
    return AnyioDeadline(deadline)
