"""The fleet: the processes sharing the limits, counted from heartbeats, and a fair share of a limit.

Each process adds itself to a sorted set scored by the time its heartbeat lapses (Redis's clock, so
hosts with skewed clocks agree) and renews it with its leases. The count of unexpired members is the
fleet size; it sizes the local fallback while Redis is unreachable, so that a fleet of N processes on
local limits still puts about the global limit on a server, not N times it.
"""

from __future__ import annotations

import math

from ._config import CoordinationConfig
from ._link import LuaScript, RedisLink

__all__ = ["HEARTBEAT", "LUA_EXTEND", "LUA_NOW_MS", "Fleet", "fair_rate", "fair_share"]

#: Lua: Redis's own time in milliseconds, as ``now``.
LUA_NOW_MS = (
    "local t = redis.call('TIME')\nlocal now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"
)
#: Lua: ``extend(key, ms)`` makes ``key`` live at least ``ms`` more (never shortens another's expiry).
LUA_EXTEND = (
    "local function extend(key, ms)\n"
    "  if redis.call('PTTL', key) < tonumber(ms) then redis.call('PEXPIRE', key, ms) end\n"
    "end\n"
)

# KEYS[1] fleet (member -> lapse time, ms); ARGV: member, ttl ms, '1' to leave. Returns the live count.
HEARTBEAT = LuaScript(
    "heartbeat",
    LUA_NOW_MS
    + LUA_EXTEND
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
  extend(KEYS[1], ARGV[2])
end
return redis.call('ZCARD', KEYS[1])
""",
)


def fair_share(limit: int, fleet: int | None) -> int:
    """One process's part of a global concurrency ``limit``: ``max(1, limit // fleet)``.

    Rounded down so that the fleet on local limits stays within ``limit`` (unless ``limit < fleet``:
    every process keeps one slot, or nothing could run). An unknown fleet (``None``) gets the whole
    limit: this process is the only one it knows of.
    """
    if fleet is None or fleet <= 1:
        return limit
    return max(1, limit // fleet)


def fair_rate(rate: float, burst: int, fleet: int | None) -> tuple[float, int]:
    """One process's part of a global token bucket: ``rate / fleet`` and ``max(1, burst // fleet)``."""
    if fleet is None or fleet <= 1:
        return rate, burst
    return rate / fleet, max(1, math.floor(burst / fleet))


class Fleet:
    """This process's heartbeat and the fleet size it last saw."""

    def __init__(self, link: RedisLink, config: CoordinationConfig, process_id: str) -> None:
        self._link = link
        self._config = config
        self._key = config.key("fleet", "processes")
        self._member = process_id
        self._seen: int | None = None

    @property
    def size(self) -> int | None:
        """``fleet_size`` from the config when given, else the count at the last heartbeat (``None``
        before any heartbeat succeeded)."""
        return self._config.fleet_size if self._config.fleet_size is not None else self._seen

    async def heartbeat(self) -> None:
        """Renew this process's membership and count the fleet; a probe of Redis when the link is down.

        Raises :class:`~._link.CoordinationUnavailable` when Redis does not answer.
        """
        ttl_ms = round(self._config.lease_ttl * 1000)
        count = await self._link.eval(HEARTBEAT, [self._key], [self._member, ttl_ms, 0], probe=True)
        self._seen = max(1, int(count))

    async def leave(self) -> None:
        """Take this process out of the count (best effort; it lapses by itself otherwise)."""
        await self._link.eval(HEARTBEAT, [self._key], [self._member, 0, 1])
