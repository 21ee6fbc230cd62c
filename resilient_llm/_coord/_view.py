"""A shared view of a server's load: one process scrapes ``/metrics`` at a time, the others read it.

Each process's monitor asks :meth:`SharedServerView.get` once per poll. One atomic script either
returns the published view, if it is younger than ``max_age``, or hands the caller the scrape: a
``SET NX PX max_age`` lock, so that the fleet scrapes a server about once per ``max_age`` whatever its
size (a scraper that dies holds the lock for ``max_age`` at most). The scraper publishes the parsed
load with Redis's time; readers get its age on that one clock and turn it into a ``scraped_at`` on
their own clock, so a metrics-lag or staleness rule works the same in every process.

When Redis is unreachable every process scrapes for itself, as it would without coordination.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .._clock import now
from .._load import ServerLoad
from ._config import CoordinationConfig
from ._errors import CoordinationUnavailable
from ._fleet import LUA_NOW_MS
from ._link import LuaScript, RedisLink

__all__ = ["PUBLISH_VIEW", "READ_VIEW", "SharedLoad", "SharedServerView"]

# KEYS: view (hash at, body), lock. ARGV: max age ms, lock ttl ms, owner.
# Returns {'fresh' | 'claim' | 'stale', age ms (-1: none yet), body}.
READ_VIEW = LuaScript(
    "read_view",
    LUA_NOW_MS
    + """
local v = redis.call('HMGET', KEYS[1], 'at', 'body')
local age = -1
if v[1] then age = now - tonumber(v[1]) end
if age >= 0 and age <= tonumber(ARGV[1]) then return {'fresh', age, v[2]} end
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then return {'claim', age, v[2] or ''} end
return {'stale', age, v[2] or ''}
""",
)

# KEYS: view. ARGV: body, keep ms.
PUBLISH_VIEW = LuaScript(
    "publish_view",
    LUA_NOW_MS
    + """
redis.call('HSET', KEYS[1], 'at', now, 'body', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return now
""",
)

#: A published view is kept this many ``max_age`` periods (older views still tell their age).
_KEEP_PERIODS = 20


@dataclass(frozen=True, slots=True)
class SharedLoad:
    """A server's load as the fleet last saw it.

    ``load`` is ``None`` when the scrape found no usable metrics; its ``scraped_at`` is on this
    process's clock. ``age``: seconds since the scrape. ``scraped_here``: this process scraped it.
    ``shared``: it came through Redis (false: Redis is unreachable and this process scraped alone).
    """

    load: ServerLoad | None
    age: float
    scraped_here: bool
    shared: bool


class SharedServerView:
    """The fleet's view of one server's ``/metrics`` (see the module docstring)."""

    def __init__(
        self,
        *,
        name: str,
        max_age: float,
        link: RedisLink,
        config: CoordinationConfig,
        process_id: str,
        clock: Callable[[], float] = now,
    ) -> None:
        self._name, self._max_age = name, max_age
        self._link, self._clock, self._owner = link, clock, process_id
        self._keys = [config.key("view", name), config.key("view", name, "lock")]

    @property
    def max_age(self) -> float:
        return self._max_age

    async def get(
        self, scrape: Callable[[], Awaitable[ServerLoad | None]], *, deadline: float | None = None
    ) -> SharedLoad | None:
        """The fleet's view, scraping with ``scrape`` when it is this process's turn.

        ``None`` when there is no view yet and another process is making the first scrape.
        """
        max_age_ms = max(1, round(self._max_age * 1000))
        try:
            state, age_ms, body = await self._link.eval(
                READ_VIEW, self._keys, [max_age_ms, max_age_ms, self._owner], deadline=deadline
            )
        except CoordinationUnavailable:
            return SharedLoad(await scrape(), 0.0, scraped_here=True, shared=False)
        if state == "claim":
            load = await scrape()
            with contextlib.suppress(CoordinationUnavailable):
                await self._link.eval(
                    PUBLISH_VIEW, self._keys[:1], [_encode(load), max_age_ms * _KEEP_PERIODS]
                )
            return SharedLoad(load, 0.0, scraped_here=True, shared=True)
        age = int(age_ms) / 1000
        if age < 0:
            return None
        return SharedLoad(_decode(body, self._clock() - age), age, scraped_here=False, shared=True)

    def __repr__(self) -> str:
        return f"SharedServerView(name={self._name!r}, max_age={self._max_age:g})"


def _encode(load: ServerLoad | None) -> str:
    if load is None:
        return "null"
    return json.dumps(
        {"running": load.running, "waiting": load.waiting, "kv": load.kv_cache_usage, "engines": load.engines}
    )


def _decode(body: str, scraped_at: float) -> ServerLoad | None:
    try:
        data = json.loads(body)
        if data is None:
            return None
        kv = data["kv"]
        return ServerLoad(
            running=int(data["running"]),
            waiting=int(data["waiting"]),
            kv_cache_usage=None if kv is None else float(kv),
            engines=int(data["engines"]),
            scraped_at=scraped_at,
        )
    except (ValueError, KeyError, TypeError):  # another version's body: no view rather than an error
        return None
