"""A global token bucket: ``rate`` calls per second over the fleet, up to ``burst`` at once.

The algorithm is GCRA (the generic cell rate algorithm; a token bucket kept as one number, the
"theoretical arrival time" ``tat``), run atomically by Redis on Redis's clock. A call *books* the next
token and sleeps until it is due, so callers are served in the order they asked, with one Redis round
trip each and no polling. A booking that would end past the caller's deadline is not made, and the
call fails at once (:class:`GlobalWaitTimeout`). A call cancelled while it sleeps wastes its token.

Why not the ``limits`` package: its async Redis storage (5.8) runs only through redis-py on asyncio
(its coredis bridge pins coredis < 6 and fails with coredis 6), it offers fixed, moving and sliding
windows with ``hit``/``test`` but no token bucket with a burst and no booking (a waiter would poll),
and it opens a connection pool of its own outside this package's timeouts and fallback.

While Redis is unreachable the same algorithm runs locally with a fair share of the rate and burst.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import NamedTuple

import anyio

from .._clock import now
from ._config import CoordinationConfig
from ._errors import CoordinationUnavailable, GlobalWaitTimeout
from ._fleet import Fleet, fair_rate
from ._link import LuaScript, RedisLink

__all__ = ["GCRA", "GlobalTokenBucket", "Reservation", "gcra_reserve"]

# KEYS[1]: tat (microseconds, Redis's clock). ARGV: interval us, burst, max wait us (-1: no limit).
# Returns {1 if booked else 0, wait us}.
GCRA = LuaScript(
    "gcra",
    """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or 0)
if tat < now then tat = now end
local interval = tonumber(ARGV[1])
local new_tat = tat + interval
local wait = new_tat - tonumber(ARGV[2]) * interval - now
if wait < 0 then wait = 0 end
local max_wait = tonumber(ARGV[3])
if max_wait >= 0 and wait > max_wait then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1000)
return {1, wait}
""",
)


class Reservation(NamedTuple):
    """The outcome of :func:`gcra_reserve`: the new ``tat``, the ``wait`` before the token, whether booked."""

    tat: float
    wait: float
    booked: bool


def gcra_reserve(tat: float, now: float, *, interval: float, burst: int, max_wait: float) -> Reservation:
    """Book the next token of a bucket emitting one per ``interval`` seconds, holding up to ``burst``.

    ``tat`` is the bucket's state (the time the bucket would be empty again; 0 for a fresh bucket).
    The token is due ``wait`` seconds from ``now``; a wait longer than ``max_wait`` is not booked
    (``tat`` comes back unchanged). The Lua script ``GCRA`` is this function on Redis's clock.
    """
    new_tat = max(tat, now) + interval
    wait = max(0.0, new_tat - burst * interval - now)
    if wait > max_wait:
        return Reservation(tat, wait, False)
    return Reservation(new_tat, wait, True)


class GlobalTokenBucket:
    """A token bucket shared by the fleet through Redis (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        rate: float,
        burst: int,
        link: RedisLink,
        fleet: Fleet,
        config: CoordinationConfig,
        clock: Callable[[], float] = now,
    ) -> None:
        self._name, self._rate, self._burst = name, rate, burst
        self._link, self._fleet, self._clock = link, fleet, clock
        self._key = config.key("bucket", name)
        self._local_tat = 0.0

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def burst(self) -> int:
        return self._burst

    async def acquire(self, *, deadline: float | None = None) -> None:
        """Take one token, sleeping until it is due; raises :class:`GlobalWaitTimeout` at once if it
        would be due after ``deadline`` (clock time)."""
        max_wait = math.inf if deadline is None else deadline - self._clock()
        if max_wait < 0:
            raise GlobalWaitTimeout(f"no token of {self._name!r}: the deadline has passed")
        try:
            booked, wait_us = await self._link.eval(
                GCRA,
                [self._key],
                [1e6 / self._rate, self._burst, -1 if deadline is None else round(max_wait * 1e6)],
                deadline=deadline,
            )
            reservation = Reservation(0.0, int(wait_us) / 1e6, bool(int(booked)))
        except CoordinationUnavailable:
            reservation = self._reserve_locally(max_wait)
        if not reservation.booked:
            raise GlobalWaitTimeout(
                f"the next token of {self._name!r} is due in {reservation.wait:.3f}s, after the deadline"
            )
        if reservation.wait > 0:
            await anyio.sleep(reservation.wait)

    def _reserve_locally(self, max_wait: float) -> Reservation:
        rate, burst = fair_rate(self._rate, self._burst, self._fleet.size)
        reservation = gcra_reserve(
            self._local_tat, self._clock(), interval=1 / rate, burst=burst, max_wait=max_wait
        )
        self._local_tat = reservation.tat
        return reservation

    def __repr__(self) -> str:
        return f"GlobalTokenBucket(name={self._name!r}, rate={self._rate:g}, burst={self._burst})"
