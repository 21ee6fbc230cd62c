"""The limiter: one FIFO queue in front of every call of a client and its ``with_options`` copies.

Calls wait in one queue, in order (retries may go to the front: they are the oldest calls). Behind the
queue are *lanes*, one per server the client sends to (one lane, or one per replica). A waiter is
granted a slot in a lane that has room, and learns which one: that is the server its attempt goes to.
A lane has room while ``in_flight < capacity``, where its capacity is the smallest of its
``max_concurrency``, the cap its server shows (``server_cap``), its slow-start ramp's current limit,
its circuit breaker's allowance, and the admission budget of its last scrape.

Which lanes a waiter may use: those whose server serves its model (all of them when none is known to),
and for a retry not the lane it just failed in (``avoid``) while another lane it may use lets calls in
— it then waits for that one rather than go back. A free slot goes to the **oldest waiter that may
use it**; with one lane, or when every waiter may use every lane, that is plain FIFO. No waiter is
ever passed over for a slot it could have taken. (A slot only later waiters may use is handed to the
first of them within the first :data:`SCAN` waiters, so that one waiter's wish cannot keep a lane idle.)
When several lanes have room for a waiter, ``choose`` picks one (the replica balancer, ``_balance.py``).

A waiter cancelled at any point — before or after being granted — leaves the counts exactly as if it
had never come. Only the head of the queue ever sleeps on a timer (until a ramp's next step, or a
breaker's next possible change); everyone else sleeps until a release or :meth:`Limiter.wake` hands
them a slot. An optional token bucket (aiolimiter, asyncio only) spaces requests after a slot is granted.
"""

from __future__ import annotations

import asyncio
import itertools
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

import anyio
import sniffio

from ._clock import now
from ._config import RateLimit
from ._exceptions import ConfigError
from ._policies._breaker import Breaker
from ._policies._ramp import Ramp

#: The head of the queue re-checks at least this often while a breaker holds (metrics may go stale).
_HOLD_RECHECK = 0.5

#: ``choose(candidates)``: one of ``candidates`` (two or more lanes with room).
Chooser = Callable[[Sequence["Lane"]], "Lane"]
#: How far down the queue a free slot looks for a waiter that may use it.
SCAN: Final = 64


class BreakerWouldMissDeadline(Exception):
    """Raised inside :meth:`Limiter.acquire`: every breaker stays shut past this waiter's deadline."""

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


class Lane:
    """One server's slots behind the queue: how many calls are in flight there and how many may be.

    Its owner (``_upstream.py``) sets ``server_cap`` and the admission budget from the server's
    ``/metrics`` and ``models`` from its ``/v1/models``; the limiter counts ``in_flight``.
    """

    __slots__ = (
        "_breaker",
        "_budget",
        "_limiter",
        "_ramp",
        "fresh",
        "in_flight",
        "index",
        "max_concurrency",
        "models",
        "server_cap",
    )

    def __init__(
        self,
        *,
        max_concurrency: int,
        ramp: Ramp | None = None,
        breaker: Breaker | None = None,
        index: int = 0,
    ) -> None:
        self.index = index  # its place among the limiter's lanes (the replica's index)
        self.max_concurrency = max_concurrency
        #: A limit the server sets (its capacity, from its metrics), below ``max_concurrency``; ``None``: none.
        self.server_cap: int | None = None
        self.in_flight = 0
        #: Slots granted since the server's last scrape (load its ``/metrics`` cannot show yet).
        self.fresh = 0
        #: The models the server serves (its ``/v1/models``); ``None``: not known, so any.
        self.models: frozenset[str] | None = None
        self._ramp = ramp
        self._breaker = breaker
        self._budget: int | None = None
        self._limiter: Limiter | None = None

    @property
    def breaker(self) -> Breaker | None:
        return self._breaker

    @property
    def queued(self) -> int:
        """Calls waiting in the queue this lane is behind (any of them may come here)."""
        return self._limiter.queued if self._limiter is not None else 0

    def set_admission_budget(self, budget: int | None) -> None:
        """Admit at most ``budget`` more calls here until the next call of this method (``None``: no limit).

        The server monitor sets it after each scrape to the server's headroom — free sequences plus
        room in the waiting queue below the high watermark — so that calls held by the breaker, or a
        burst of new ones, enter a little at a time instead of all at once.
        """
        self._budget = None if budget is None else max(0, budget)
        if self._limiter is not None and self._limiter.queued:
            self._limiter._grant()

    def end_ramp(self) -> None:
        """The server's ``/metrics`` are read: its queue depth paces calls from now on, not the
        slow-start timer (which would leave a batch half empty while the server takes a burst in)."""
        if self._ramp is not None and not self._ramp.done:
            self._ramp.finish()

    def scraped(self) -> None:
        """A fresh scrape of the server arrived: the calls sent before it are in its load."""
        self.fresh = 0

    def serves(self, model: str | None) -> bool:
        models = self.models
        return models is None or model is None or model in models

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

    def ceiling(self) -> int:
        """The capacity with the ramp at full level and nothing held: its limit in the long run."""
        cap = self.max_concurrency
        return cap if self.server_cap is None else max(1, min(cap, self.server_cap))

    def open_to_calls(self) -> bool:
        """Whether its breaker lets calls in (closed, or holding on load): a retry may wait for it."""
        b = self._breaker
        return b is None or b.state in ("closed", "holding")

    def held_by_breaker(self) -> bool:
        """Whether the breaker (or the admission budget it feeds) rather than concurrency keeps calls out."""
        b = self._breaker
        if b is None:
            return False
        allowance = b.allowance()
        return (allowance is not None and self.in_flight >= allowance) or self._budget == 0

    def _take(self) -> None:
        self.in_flight += 1
        self.fresh += 1
        if self._budget is not None:
            self._budget -= 1

    def __repr__(self) -> str:
        return f"Lane(index={self.index}, in_flight={self.in_flight}, capacity={self.capacity()})"


class _Waiter:
    __slots__ = ("avoid", "deadline", "event", "lane", "model")

    def __init__(self, deadline: float | None, model: str | None, avoid: Lane | None) -> None:
        self.event = _new_event()
        self.lane: Lane | None = None  # set when granted
        self.deadline = deadline
        self.model = model
        self.avoid = avoid


def _first(candidates: Sequence[Lane]) -> Lane:
    return candidates[0]


class Limiter:
    def __init__(
        self,
        lanes: Sequence[Lane],
        *,
        rate_limit: RateLimit | None = None,
        choose: Chooser = _first,
        clock: Callable[[], float] = now,
    ) -> None:
        if not lanes:
            raise ValueError("a limiter needs at least one lane")
        self.lanes: tuple[Lane, ...] = tuple(lanes)
        for lane in self.lanes:
            lane._limiter = self
        self._single = self.lanes[0] if len(self.lanes) == 1 else None
        self._choose = choose
        self._rate_limit = rate_limit
        self._bucket: object | None = None
        self._clock = clock
        self._waiters: deque[_Waiter] = deque()
        self._armed: _Waiter | None = None
        self._started = False
        self._granting = False
        self._regrant = False

    # --- state ---------------------------------------------------------------------------------
    @property
    def queued(self) -> int:
        return len(self._waiters)

    @property
    def in_flight(self) -> int:
        return sum(lane.in_flight for lane in self.lanes)

    @property
    def held_by_breaker(self) -> int:
        """Waiters currently kept out by the breakers rather than by concurrency or the ramp."""
        if not self._waiters:
            return 0
        return len(self._waiters) if all(lane.held_by_breaker() for lane in self.lanes) else 0

    def capacity(self) -> int:
        """Calls that may be in flight now, over every lane."""
        return sum(lane.capacity() for lane in self.lanes)

    # --- acquire / release -----------------------------------------------------------------------
    async def acquire(
        self,
        *,
        deadline: float | None = None,
        front: bool = False,
        model: str | None = None,
        avoid: Lane | None = None,
    ) -> Lane:
        """Wait for a slot, in order; the lane it is in. ``deadline`` (clock time) lets a held call fail
        fast; ``model`` leaves out lanes that do not serve it; ``avoid`` is a lane to use only if no
        other has room (a retry's last server)."""
        if not self._started:
            self._start_ramps()
        lane = None if self._waiters else self._pick(model, avoid)
        if lane is None:
            lane = await self._wait(_Waiter(deadline, model, avoid), front)
        else:
            lane.in_flight += 1
            lane.fresh += 1
            if lane._budget is not None:
                lane._budget -= 1
        if self._rate_limit is not None:
            try:
                await self._take_token()
            except BaseException:
                self.release(lane)
                raise
        return lane

    def release(self, lane: Lane) -> None:
        lane.in_flight -= 1
        if self._waiters:
            self._grant()

    def wake(self, *, everyone: bool = False) -> None:
        """Capacity may have changed (breaker or ramp): grant what fits, let waiters re-check."""
        self._grant()
        if everyone:
            for w in self._waiters:
                w.event.set()

    # --- internals -------------------------------------------------------------------------------
    def _start_ramps(self) -> None:
        self._started = True
        for lane in self.lanes:
            if lane._ramp is not None:
                lane._ramp.start()

    def _pick(self, model: str | None, avoid: Lane | None) -> Lane | None:
        """The lane a call that comes to an empty queue gets now, or ``None`` when none it may use has room."""
        single = self._single
        if single is not None:
            return single if single.in_flight < single.capacity() else None
        rooms = [lane for lane in self.lanes if lane.in_flight < lane.capacity()]
        return self._choice(self._usable(model, avoid, rooms)) if rooms else None

    def _eligible(self, model: str | None) -> Sequence[Lane]:
        """The lanes whose server serves ``model`` (all of them when none is known to)."""
        if model is None:
            return self.lanes
        serving = [lane for lane in self.lanes if lane.serves(model)]
        return serving or self.lanes

    def _usable(self, model: str | None, avoid: Lane | None, rooms: Sequence[Lane]) -> list[Lane]:
        """Of ``rooms`` (lanes with room), those a waiter for ``model`` that avoids ``avoid`` may use."""
        eligible = self._eligible(model)
        usable = (
            [lane for lane in rooms if lane in eligible] if len(eligible) < len(self.lanes) else list(rooms)
        )
        # A retry waits for another lane that lets calls in rather than go back to the one it failed in.
        if (
            avoid is not None
            and avoid in usable
            and any(lane is not avoid and lane.open_to_calls() for lane in eligible)
        ):
            usable.remove(avoid)
        return usable

    def _choice(self, usable: list[Lane]) -> Lane | None:
        if len(usable) <= 1:
            return usable[0] if usable else None
        return self._choose(usable)

    def _grant(self) -> None:
        """Hand free slots to waiters (see the module docstring for who gets which).

        Reading a lane's capacity may change a breaker's state (a cooldown ended), whose listener wakes
        the limiter again: such a nested call only asks for another pass, so the queue is never
        changed under a pass in progress.
        """
        single = self._single
        if single is not None:
            self._grant_single(single)
        elif self._granting:
            self._regrant = True
            return
        else:
            self._granting = True
            try:
                self._regrant = True
                while self._regrant:
                    self._regrant = False
                    self._grant_lanes()
            finally:
                self._granting = False
        waiters = self._waiters
        if waiters and waiters[0] is not self._armed:
            waiters[0].event.set()  # a new head: let it arm its timer

    def _grant_single(self, lane: Lane) -> None:
        # The one lane's capacity is read first and the queue after: a nested grant while it is read
        # leaves nothing for this pass to get wrong. The hot path of a client of one server.
        waiters = self._waiters
        if not waiters:
            return
        cap = lane.capacity()
        while waiters and lane.in_flight < cap:
            w = waiters.popleft()
            lane.in_flight += 1
            lane.fresh += 1
            if lane._budget is not None:
                lane._budget -= 1
                cap = min(cap, lane.in_flight + lane._budget)
            w.lane = lane
            w.event.set()

    def _grant_lanes(self) -> None:
        waiters = self._waiters
        while waiters:
            rooms = [lane for lane in self.lanes if lane.in_flight < lane.capacity()]
            if not rooms:
                return
            for i, w in enumerate(itertools.islice(waiters, SCAN)):
                lane = self._choice(self._usable(w.model, w.avoid, rooms))
                if lane is not None:
                    del waiters[i]
                    self._hand(w, lane)
                    break
            else:
                return

    def _hand(self, w: _Waiter, lane: Lane) -> None:
        lane._take()
        w.lane = lane
        w.event.set()

    def _head_timeout(self, w: _Waiter) -> float | None:
        """How long the head may sleep before capacity can change by itself (ramp step, cooldown).

        Raises :class:`BreakerWouldMissDeadline` when every lane this waiter may use has a breaker
        that stays open past its deadline.
        """
        now = self._clock()
        timeout: float | None = None
        missed: tuple[str, str, float] | None = None  # the soonest of the breakers that miss it
        all_missed = True
        for lane in self._eligible(w.model):
            ramp = lane._ramp
            if ramp is not None:
                at = ramp.next_increase(lane.ceiling())
                if at is not None:
                    timeout = max(0.0, at - now) if timeout is None else min(timeout, max(0.0, at - now))
            b = lane._breaker
            if b is None or b.state == "closed":
                all_missed = False
                continue
            retry_in = b.retry_in()
            if retry_in is not None and w.deadline is not None and now + retry_in > w.deadline:
                if missed is None or retry_in < missed[2]:
                    missed = (b.state, b.reason, retry_in)
                continue
            all_missed = False
            wait = _HOLD_RECHECK if retry_in is None else min(retry_in, _HOLD_RECHECK)
            timeout = wait if timeout is None else min(timeout, wait)
        if all_missed and missed is not None:
            raise BreakerWouldMissDeadline(*missed)
        return timeout

    async def _wait(self, w: _Waiter, front: bool) -> Lane:
        waiters = self._waiters
        if front:
            waiters.appendleft(w)
        else:
            waiters.append(w)
        try:
            if self._single is None:
                self._grant()  # a lane the waiters ahead may not use may be free for this one
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
                if w.lane is not None:
                    return w.lane
                w.event = _new_event()
                self._grant()
                if w.lane is not None:
                    return w.lane
        except BaseException:
            if w.lane is not None:
                self.release(w.lane)
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


__all__ = ["BreakerWouldMissDeadline", "Chooser", "Lane", "Limiter"]
