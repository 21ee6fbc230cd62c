"""The limiter: one FIFO queue in front of every call of a client and its ``with_options`` copies.

A call may start while ``in_flight < capacity``, where capacity is the smallest of ``max_concurrency``,
the slow-start ramp's current limit and the circuit breaker's allowance. Waiters are served strictly
in order (retries may go to the front: they are the oldest calls). A waiter cancelled at any point —
before or after being granted — leaves the counts exactly as if it had never come.

Only the head of the queue ever sleeps on a timer (until the ramp's next step, or the breaker's next
possible change); everyone else sleeps until a release or :meth:`Limiter.wake` hands them a slot.
An optional token bucket (aiolimiter, asyncio only) spaces requests after a slot is granted.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable

import anyio
import sniffio

from ._clock import now
from ._config import RateLimit
from ._exceptions import ConfigError
from ._policies._breaker import Breaker
from ._policies._ramp import Ramp

#: The head of the queue re-checks at least this often while the breaker holds (metrics may go stale).
_HOLD_RECHECK = 0.5


class BreakerWouldMissDeadline(Exception):
    """Raised inside :meth:`Limiter.acquire`: the breaker stays shut past this waiter's deadline."""

    def __init__(self, state: str, reason: str, retry_in: float | None) -> None:
        super().__init__(state, reason, retry_in)
        self.state, self.reason, self.retry_in = state, reason, retry_in


class _FutureEvent:
    """A one-shot event for asyncio: one lazily created future, a fraction of ``anyio.Event``'s size.

    Thousands of calls can wait in the queue at once; each holds one of these (or an ``anyio.Event``
    on other backends). Cancellation is delivered to ``wait`` like any other await.
    """

    __slots__ = ("_future", "_is_set")

    def __init__(self) -> None:
        self._future: asyncio.Future[None] | None = None
        self._is_set = False

    def set(self) -> None:
        self._is_set = True
        future = self._future
        if future is not None and not future.done():
            future.set_result(None)

    async def wait(self) -> None:
        if not self._is_set:
            self._future = asyncio.get_running_loop().create_future()
            await self._future


def _new_event() -> _FutureEvent | anyio.Event:
    return _FutureEvent() if sniffio.current_async_library() == "asyncio" else anyio.Event()


class _Waiter:
    __slots__ = ("deadline", "event", "granted")

    def __init__(self, deadline: float | None) -> None:
        self.event = _new_event()
        self.granted = False
        self.deadline = deadline


class Limiter:
    def __init__(
        self,
        *,
        max_concurrency: int,
        ramp: Ramp | None = None,
        breaker: Breaker | None = None,
        rate_limit: RateLimit | None = None,
        clock: Callable[[], float] = now,
    ) -> None:
        self.max_concurrency = max_concurrency
        #: A limit the server sets (its capacity, from its metrics), below ``max_concurrency``; ``None``: none.
        self.server_cap: int | None = None
        self.in_flight = 0
        self._ramp = ramp
        self._breaker = breaker
        self._rate_limit = rate_limit
        self._bucket: object | None = None
        self._clock = clock
        self._waiters: deque[_Waiter] = deque()
        self._armed: _Waiter | None = None
        self._budget: int | None = None

    def set_admission_budget(self, budget: int | None) -> None:
        """Admit at most ``budget`` more calls until the next call of this method (``None``: no limit).

        The server monitor sets it after each scrape to the server's headroom — free sequences plus
        room in the waiting queue below the high watermark — so that calls held by the breaker, or a
        burst of new ones, enter a little at a time instead of all at once.
        """
        self._budget = None if budget is None else max(0, budget)
        if self._waiters:
            self._grant()

    # --- state ---------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def held_by_breaker(self) -> int:
        """Waiters currently kept out by the breaker rather than by concurrency or the ramp."""
        b = self._breaker
        if not self._waiters or b is None:
            return 0
        allowance = b.allowance()
        held = (allowance is not None and self.in_flight >= allowance) or self._budget == 0
        return len(self._waiters) if held else 0

    def capacity(self) -> int:
        cap = self.max_concurrency
        if self.server_cap is not None and self.server_cap < cap:
            cap = max(1, self.server_cap)
        if self._ramp is not None:
            cap = self._ramp.limit(cap)
        if self._breaker is not None:
            allowance = self._breaker.allowance()
            if allowance is not None and allowance < cap:
                cap = allowance
        if self._budget is not None and self.in_flight + self._budget < cap:
            cap = self.in_flight + self._budget
        return cap

    def _ceiling(self) -> int:
        cap = self.max_concurrency
        return cap if self.server_cap is None else max(1, min(cap, self.server_cap))

    # --- acquire / release -----------------------------------------------------------------------
    async def acquire(self, *, deadline: float | None = None, front: bool = False) -> None:
        """Wait for a slot, in order. ``deadline`` (clock time) lets a held call fail fast."""
        if self._ramp is not None:
            self._ramp.start()
        if not self._waiters and self.in_flight < self.capacity():
            self.in_flight += 1
            if self._budget is not None:
                self._budget -= 1
        else:
            await self._wait(_Waiter(deadline), front)
        if self._rate_limit is not None:
            try:
                await self._take_token()
            except BaseException:
                self.release()
                raise

    def release(self) -> None:
        self.in_flight -= 1
        if self._waiters:
            self._grant()

    def wake(self, *, everyone: bool = False) -> None:
        """Capacity may have changed (breaker or ramp): grant what fits, let waiters re-check."""
        self._grant()
        if everyone:
            for w in self._waiters:
                w.event.set()

    # --- internals -------------------------------------------------------------------------------
    def _grant(self) -> None:
        waiters = self._waiters
        if not waiters:
            return
        cap = self.capacity()
        while waiters and self.in_flight < cap:
            w = waiters.popleft()
            self.in_flight += 1
            if self._budget is not None:
                self._budget -= 1
                cap = min(cap, self.in_flight + self._budget)
            w.granted = True
            w.event.set()
        if waiters and waiters[0] is not self._armed:
            waiters[0].event.set()  # a new head: let it arm its timer

    def _head_timeout(self, w: _Waiter) -> float | None:
        """How long the head may sleep before capacity can change by itself (ramp step, cooldown)."""
        now = self._clock()
        timeout: float | None = None
        ramp = self._ramp
        if ramp is not None:
            at = ramp.next_increase(self._ceiling())
            if at is not None:
                timeout = max(0.0, at - now)
        b = self._breaker
        if b is not None and b.state != "closed":
            retry_in = b.retry_in()
            if retry_in is not None and w.deadline is not None and now + retry_in > w.deadline:
                raise BreakerWouldMissDeadline(b.state, b.reason, retry_in)
            wait = _HOLD_RECHECK if retry_in is None else min(retry_in, _HOLD_RECHECK)
            timeout = wait if timeout is None else min(timeout, wait)
        return timeout

    async def _wait(self, w: _Waiter, front: bool) -> None:
        waiters = self._waiters
        if front:
            waiters.appendleft(w)
        else:
            waiters.append(w)
        try:
            while True:
                if waiters and waiters[0] is w:
                    self._armed = w
                    timeout = self._head_timeout(w)
                    if timeout is None:
                        await w.event.wait()
                    else:
                        with anyio.move_on_after(timeout):
                            await w.event.wait()
                else:
                    await w.event.wait()
                if w.granted:
                    return
                w.event = _new_event()
                self._grant()
                if w.granted:
                    return
        except BaseException:
            if w.granted:
                self.release()
            else:
                was_head = bool(waiters) and waiters[0] is w
                waiters.remove(w)
                if was_head:
                    self._armed = None
                    self._grant()
            raise
        finally:
            if self._armed is w:
                self._armed = None

    async def _take_token(self) -> None:
        bucket = self._bucket
        if bucket is None:
            if sniffio.current_async_library() != "asyncio":
                raise ConfigError("rate_limit needs asyncio (aiolimiter); use rate_limit=None on trio")
            from aiolimiter import AsyncLimiter

            assert self._rate_limit is not None
            burst = self._rate_limit.effective_burst
            bucket = self._bucket = AsyncLimiter(burst, burst / self._rate_limit.rate)
        await bucket.acquire()  # type: ignore[attr-defined]
