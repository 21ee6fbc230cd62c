"""The link to Redis: one client per process, every call bounded in time, outages noticed once.

A call through :meth:`RedisLink.call` or :meth:`RedisLink.eval` takes at most ``redis_timeout`` seconds
and never past the caller's deadline. Any failure — refused connection, timeout, an error reply —
raises :class:`CoordinationUnavailable`, and the caller uses its local fallback. A failure that was
not caused by the caller's own deadline marks the link *down*: from then on calls fail at once
(no Redis round trip, no added latency) until a probe (``probe=True``, made by the coordinator's
heartbeat every ``reconnect_interval``) succeeds. The outage is logged once at WARNING, and the
recovery once, also at WARNING so that both show at the same log level; the URL is always masked.

The client is coredis (anyio-based: asyncio and trio). It is imported here and only here, lazily,
so that a plain install never imports it; without the ``redis`` extra :func:`import_coredis` raises
a one-line :class:`ConfigError` naming the extra.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TypeVar

import anyio

from .._clock import now
from .._exceptions import ConfigError
from ._config import CoordinationConfig
from ._errors import CoordinationUnavailable

__all__ = ["LuaScript", "RedisLink", "import_coredis"]

logger = logging.getLogger("resilient_llm.coordination")

T = TypeVar("T")

_MISSING_EXTRA = 'coordination needs the "redis" extra: pip install "resilient-llm[redis]"'


def import_coredis() -> ModuleType:
    """``coredis``, or a :class:`ConfigError` telling which extra to install."""
    try:
        import coredis
    except ImportError:
        raise ConfigError(_MISSING_EXTRA) from None
    return coredis


@dataclass(frozen=True, slots=True)
class LuaScript:
    """A Lua script run atomically by Redis (loaded once per client, re-loaded after a Redis restart)."""

    name: str
    source: str


class RedisLink:
    """The process's one Redis client and its availability (see the module docstring)."""

    def __init__(
        self,
        config: CoordinationConfig,
        *,
        clock: Callable[[], float] = now,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self._config = config
        self._clock = clock
        self._on_change = on_change
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._up: bool | None = None  # None: not tried yet
        self._detail = ""

    @property
    def up(self) -> bool:
        """Whether Redis answered the last call (true before the first call)."""
        return self._up is not False

    @property
    def detail(self) -> str:
        """Why the last failed call failed (for logs and stats)."""
        return self._detail

    @asynccontextmanager
    async def connected(self) -> AsyncIterator[None]:
        """Own the coredis client while the block runs (no connection is made until the first call)."""
        coredis = import_coredis()
        timeout = self._config.redis_timeout
        client = coredis.Redis.from_url(
            self._config.url, decode_responses=True, connect_timeout=timeout, stream_timeout=timeout
        )
        async with client:
            self._client = client
            try:
                yield
            finally:
                self._client = None
                self._scripts.clear()

    async def call(
        self,
        command: Callable[[Any], Awaitable[T]],
        *,
        deadline: float | None = None,
        probe: bool = False,
    ) -> T:
        """Run ``command(client)`` within ``redis_timeout`` and before ``deadline`` (clock time).

        Raises :class:`CoordinationUnavailable` when the link is down (unless ``probe``), when the time
        runs out, or when Redis fails. Cancellation passes through unchanged.
        """
        client = self._client
        if client is None:
            raise CoordinationUnavailable("not connected")
        if self._up is False and not probe:
            raise CoordinationUnavailable(self._detail)
        limit = self._config.redis_timeout
        by_deadline = False
        if deadline is not None:
            remaining = deadline - self._clock()
            if remaining < limit:
                limit, by_deadline = max(0.0, remaining), True
        try:
            with anyio.fail_after(limit):
                result = await command(client)
        except TimeoutError:
            if by_deadline:  # the caller's deadline, not Redis's fault: the link stays as it was
                raise CoordinationUnavailable("the caller's deadline came first") from None
            self._mark_down(f"no answer within {self._config.redis_timeout:g}s")
            raise CoordinationUnavailable(self._detail) from None
        except Exception as exc:  # coredis: ConnectionError, TimeoutError, ResponseError, ...
            self._mark_down(f"{type(exc).__name__}: {exc}")
            raise CoordinationUnavailable(self._detail) from exc
        self._mark_up()
        return result

    async def eval(
        self,
        script: LuaScript,
        keys: Sequence[str],
        args: Sequence[str | int | float],
        *,
        deadline: float | None = None,
        probe: bool = False,
    ) -> Any:
        """Run ``script`` (EVALSHA, loading it first when Redis does not know it) through :meth:`call`."""

        async def run(client: Any) -> Any:
            registered = self._scripts.get(script.name)
            if registered is None:
                registered = self._scripts[script.name] = client.register_script(script.source)
            return await registered(keys=list(keys), args=[str(a) for a in args])

        return await self.call(run, deadline=deadline, probe=probe)

    def _mark_down(self, detail: str) -> None:
        self._detail = _masked(detail, self._config.url, self._config.masked_url)
        if self._up is False:
            return
        self._up = False
        logger.warning(
            "coordination: Redis at %s is unreachable (%s); using local limits until it is back",
            self._config.masked_url,
            self._detail,
        )
        if self._on_change is not None:
            self._on_change(False)

    def _mark_up(self) -> None:
        if self._up is True:
            return
        was_down = self._up is False
        self._up, self._detail = True, ""
        if was_down:
            logger.warning("coordination: Redis at %s is back; shared limits resume", self._config.masked_url)
            if self._on_change is not None:
                self._on_change(True)


def _masked(text: str, url: str, masked: str) -> str:
    """An error text with the URL (should a library quote it) masked."""
    return text.replace(url, masked) if url else text
