"""A global concurrency limit: leases with an expiry in Redis, and a ticket queue so no process starves.

Redis state for one name (the keys share the name's hash tag):

- ``holders``: sorted set, lease id → the time (ms, Redis's clock) its lease lapses. Every script drops
  lapsed members before counting, so the slots of a crashed or SIGKILLed process come back within
  ``lease_ttl``; a live process renews all its leases at once every ``lease_ttl / 3``.
- ``queue``: sorted set, ticket → arrival number (``INCR seq``), one ticket per *waiting process*.
- ``tickets``: sorted set, ticket → the time the ticket lapses; a waiting process refreshes it with each
  poll, so a dead waiter leaves the queue within ``ticket_ttl``.

The grant rule, atomic in one script: the ticket at rank ``r`` (0 = oldest) may take up to
``free - r`` slots, which leaves one free slot for each process queued before it; a ticket that gets
anything leaves the queue and comes back at the end if it still wants more. Slots therefore go round
the waiting processes in turn, whatever the number of calls each has queued.

Inside the process, calls wait in a local FIFO (retries may go to the front). One pump task per limit
does all of this process's Redis work for it, in order — releases (``ZREM``), renewals (``ZADD`` of
every lease held: an upsert, so leases granted while Redis was away, or lost when it restarted, count
again as soon as it is back) and grants (one script call asking for a lease per local waiter, with
lease ids made here: when the reply is lost, those ids are released, so a timed-out or cancelled call
leaks nothing). While Redis is unreachable the pump grants local leases up to a fair share of the
limit (:func:`~._fleet.fair_share`).
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import anyio
from anyio.abc import TaskGroup

from .._clock import now
from ._config import CoordinationConfig
from ._errors import CoordinationUnavailable, GlobalWaitTimeout
from ._fleet import LUA_EXTEND, LUA_NOW_MS, Fleet, fair_share
from ._link import LuaScript, RedisLink

__all__ = ["ACQUIRE", "GlobalConcurrencyLimit", "Lease"]

logger = logging.getLogger("resilient_llm.coordination")

# KEYS: holders, queue, tickets, seq. ARGV: limit, lease ttl ms, ticket, ticket ttl ms, lease ids...
# Returns {granted, rank, held before the grant}: the first ``granted`` ids are now leases.
ACQUIRE = LuaScript(
    "acquire",
    LUA_NOW_MS
    + LUA_EXTEND
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, t in ipairs(lapsed) do
  redis.call('ZREM', KEYS[2], t)
  redis.call('ZREM', KEYS[3], t)
end
local ticket = ARGV[3]
if not redis.call('ZSCORE', KEYS[2], ticket) then
  redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ticket)
end
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ticket)
local rank = redis.call('ZRANK', KEYS[2], ticket)
local held = redis.call('ZCARD', KEYS[1])
local n = math.min(#ARGV - 4, tonumber(ARGV[1]) - held - rank)
if n > 0 then
  for i = 1, n do
    redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[4 + i])
  end
  redis.call('ZREM', KEYS[2], ticket)
  redis.call('ZREM', KEYS[3], ticket)
else
  n = 0
end
extend(KEYS[1], ARGV[2])
for i = 2, 4 do extend(KEYS[i], ARGV[4]) end
return {n, rank, held}
""",
)

# KEYS: holders. ARGV: lease ttl ms, lease ids... (upsert: see the module docstring)
RENEW = LuaScript(
    "renew",
    LUA_NOW_MS
    + LUA_EXTEND
    + """
local lapse = now + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], lapse, ARGV[i]) end
extend(KEYS[1], ARGV[1])
return #ARGV - 1
""",
)

# KEYS: queue, tickets. ARGV: ticket.
LEAVE = LuaScript(
    "leave",
    "redis.call('ZREM', KEYS[1], ARGV[1])\nredis.call('ZREM', KEYS[2], ARGV[1])\nreturn 1\n",
)


@dataclass(frozen=True, slots=True)
class Lease:
    """One global slot held by this process: ``shared`` if Redis granted it, else the local fallback did."""

    id: str
    shared: bool


class _Waiter:
    __slots__ = ("event", "lease")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.lease: Lease | None = None


class GlobalConcurrencyLimit:
    """At most ``limit`` calls at once over every process that shares ``name`` through Redis.

    Made by :meth:`Coordinator.concurrency_limit <._coordinator.Coordinator.concurrency_limit>`, which runs
    :meth:`run` in its task group. ``acquire`` and ``release`` mirror the local limiter's.
    """

    def __init__(
        self,
        *,
        name: str,
        limit: int,
        link: RedisLink,
        fleet: Fleet,
        config: CoordinationConfig,
        process_id: str,
        clock: Callable[[], float] = now,
    ) -> None:
        self._name, self._limit = name, limit
        self._link, self._fleet, self._config, self._clock = link, fleet, config, clock
        self._keys = [config.key("lease", name, part) for part in ("holders", "queue", "tickets", "seq")]
        self._ticket = process_id
        self._ids = (f"{process_id}:{n}" for n in itertools.count())
        self._waiters: deque[_Waiter] = deque()
        self._held: set[str] = set()
        self._to_release: list[tuple[str, float]] = []  # (lease id, when it was given up)
        self._queued = False  # this process may have a ticket in Redis's queue
        self._next_renew = math.inf
        self._started = False
        self._closed = False
        self._kicked = False
        self._wake: anyio.Event | None = None

    # --- state ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self._name

    @property
    def limit(self) -> int:
        """The global limit: calls at once over the whole fleet."""
        return self._limit

    @property
    def in_flight(self) -> int:
        """Leases this process holds now."""
        return len(self._held)

    @property
    def queued(self) -> int:
        """Calls of this process waiting for a lease."""
        return len(self._waiters)

    @property
    def shared(self) -> bool:
        """Whether leases come from Redis now (false while the local fallback grants them)."""
        return self._link.up

    def local_share(self) -> int:
        """The slots this process may hold while Redis is unreachable."""
        return fair_share(self._limit, self._fleet.size)

    # --- acquire / release -----------------------------------------------------------------------
    async def acquire(self, *, deadline: float | None = None, front: bool = False) -> Lease:
        """Wait for a global slot, in order; ``deadline`` (clock time) bounds the wait.

        Raises :class:`GlobalWaitTimeout` when the deadline passes first, ``RuntimeError`` when the
        coordinator is not running. Cancelled at any point, it leaves no lease and no waiter behind.
        """
        if not self._started or self._closed:
            raise RuntimeError("the coordinator is not running; use 'async with Coordinator(...)'")
        w = _Waiter()
        if front:
            self._waiters.appendleft(w)
        else:
            self._waiters.append(w)
        self.kick()
        try:
            if deadline is None:
                await w.event.wait()
            else:
                with anyio.move_on_after(max(0.0, deadline - self._clock())):
                    await w.event.wait()
            if w.lease is None:
                if self._closed:
                    raise RuntimeError("the coordinator closed while this call waited for a global slot")
                raise GlobalWaitTimeout(f"no global slot of {self._name!r} before the deadline")
            return w.lease
        except BaseException:
            if w.lease is not None:
                self.release(w.lease)
            elif w in self._waiters:
                self._waiters.remove(w)
                if not self._waiters:
                    self.kick()  # let the pump take this process's ticket out of the queue
            raise

    def release(self, lease: Lease) -> None:
        """Give the slot back (at once locally; in Redis with the pump's next step). Idempotent."""
        if lease.id not in self._held:
            return
        self._held.discard(lease.id)
        self._give_back([lease.id])  # local leases too: a renewal may have put them in Redis
        self.kick()

    def kick(self) -> None:
        """Something changed (a waiter, a release, Redis came back): let the pump act now."""
        self._kicked = True
        if self._wake is not None:
            self._wake.set()

    def on_link_change(self) -> None:
        """Redis went away or came back: renew at once (so leases held meanwhile count) and re-grant."""
        self._next_renew = -math.inf
        self.kick()

    # --- the pump --------------------------------------------------------------------------------
    def start(self, tg: TaskGroup) -> None:
        """Run the pump in ``tg`` (the coordinator's); calls may wait from now on."""
        self._started, self._closed = True, False
        tg.start_soon(self.run, name=f"resilient_llm lease pump {self._name}")

    async def run(self) -> None:
        """The pump: this process's Redis work for the limit, until cancelled."""
        while True:
            self._kicked = False
            try:
                await self._step()
            except Exception:  # a bug here must neither stop the pump nor cancel the owner's tasks
                logger.exception("coordination: the lease pump of %r failed a step", self._name)
                await anyio.sleep(self._config.reconnect_interval)
            if self._kicked:
                continue
            self._wake = anyio.Event()
            with anyio.move_on_after(self._sleep_time()):
                await self._wake.wait()

    async def _step(self) -> None:
        if self._to_release:
            await self._flush_releases()
        if self._held and self._clock() >= self._next_renew:
            self._next_renew = self._clock() + self._config.renew_interval
            await self._renew()
        if self._waiters:
            await self._grant()
        elif self._queued:
            await self._leave()

    def _sleep_time(self) -> float:
        if self._link.up and (self._to_release or (self._queued and not self._waiters)):
            return 0.0  # more to do: leases given back or a ticket left while the last step ran
        delay = math.inf
        if self._held:
            delay = max(0.0, self._next_renew - self._clock())
        if self._waiters:
            poll = self._config.poll_interval if self._link.up else self._config.reconnect_interval
            delay = min(delay, poll * random.uniform(0.5, 1.5))
        return delay

    async def _grant(self) -> None:
        if not self._link.up:
            self._grant_local()
            return
        ids = [next(self._ids) for _ in range(min(len(self._waiters), self._limit))]
        try:
            reply = await self._link.eval(
                ACQUIRE,
                self._keys,
                [self._limit, _ms(self._config.lease_ttl), self._ticket, _ms(self._config.ticket_ttl), *ids],
            )
        except CoordinationUnavailable:
            self._give_back(ids)  # perhaps granted before the reply was lost
            self._queued = True
            self._grant_local()
            return
        except BaseException:
            self._give_back(ids)
            raise
        granted = int(reply[0])
        self._queued = granted == 0
        for lease_id in ids[:granted]:
            self._hand_out(Lease(lease_id, shared=True))

    def _grant_local(self) -> None:
        share = self.local_share()
        while self._waiters and len(self._held) < share:
            self._hand_out(Lease(next(self._ids), shared=False))

    def _hand_out(self, lease: Lease) -> None:
        if not self._waiters:  # the waiter left while Redis answered
            self._give_back([lease.id])
            return
        w = self._waiters.popleft()
        self._held.add(lease.id)
        self._next_renew = min(self._next_renew, self._clock() + self._config.renew_interval)
        w.lease = lease
        w.event.set()

    def _give_back(self, ids: Iterable[str]) -> None:
        at = self._clock()
        self._to_release.extend((lease_id, at) for lease_id in ids)

    async def _flush_releases(self) -> None:
        # Kept until Redis confirms, so that leases granted by a call whose reply was lost do not hold
        # slots for a whole lease_ttl once Redis answers again; older ones have lapsed anyway.
        cutoff = self._clock() - self._config.lease_ttl
        pending = [(lease_id, at) for lease_id, at in self._to_release if at > cutoff]
        self._to_release = []
        if not pending:
            return
        holders, ids = self._keys[0], [lease_id for lease_id, _ in pending]
        try:
            await self._link.call(lambda client: client.zrem(holders, ids))
        except CoordinationUnavailable:
            self._to_release = pending + self._to_release

    async def _renew(self) -> None:
        with contextlib.suppress(CoordinationUnavailable):  # else re-added when Redis is back
            await self._link.eval(RENEW, self._keys[:1], [_ms(self._config.lease_ttl), *sorted(self._held)])

    async def _leave(self) -> None:
        self._queued = False
        with contextlib.suppress(CoordinationUnavailable):  # else the ticket lapses within ticket_ttl
            await self._link.eval(LEAVE, self._keys[1:3], [self._ticket])

    async def close(self) -> None:
        """After :meth:`run` ended: fail the waiters, give back every lease and the ticket (best effort)."""
        self._closed = True
        for w in self._waiters:
            w.event.set()
        self._waiters.clear()
        self._give_back(self._held)
        self._held.clear()
        if self._to_release:
            await self._flush_releases()
        if self._queued:
            await self._leave()

    def __repr__(self) -> str:
        return (
            f"GlobalConcurrencyLimit(name={self._name!r}, limit={self._limit}, in_flight={self.in_flight}, "
            f"queued={self.queued}, shared={self.shared})"
        )


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
