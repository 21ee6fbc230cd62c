"""The coordinator: one process's membership in a fleet that shares limits through Redis.

::

    async with Coordinator("redis://redis-host:6379/0") as coord:
        limit = coord.concurrency_limit(server_key(base_url), limit=50)
        lease = await limit.acquire(deadline=deadline)
        try:
            ...  # the request
        finally:
            limit.release(lease)

It owns the Redis client and a task group: one heartbeat task (fleet size, periodic flushes, and the
probe that notices Redis coming back) and one pump per concurrency limit. Entering it never fails
because Redis is down: the first heartbeat is bounded by ``redis_timeout``, and a failure starts the
process on local limits. Leaving it gives back every lease, leaves every queue and the fleet (bounded
by ``redis_timeout``, shielded from cancellation).

Objects are made per *name*: for per-server state, :func:`server_key` of the server's URL. The same
name asked twice returns the same object; asking with different settings is a :class:`ConfigError`.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import secrets
import socket
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

import anyio
from anyio.abc import TaskGroup, TaskStatus

from .._clock import now
from .._exceptions import ConfigError
from .._policies._budget import DEFAULT_MIN_PER_SECOND, DEFAULT_RATIO, DEFAULT_TTL
from .._policies._validate import check_int, check_number
from .._vllm._metrics import server_root_url
from ._bucket import GlobalTokenBucket
from ._budget import GlobalRetryBudget
from ._config import CoordinationConfig
from ._errors import CoordinationUnavailable
from ._fleet import Fleet
from ._leases import GlobalConcurrencyLimit
from ._link import RedisLink
from ._view import SharedServerView

__all__ = ["Coordinator", "server_key"]

logger = logging.getLogger("resilient_llm.coordination")

T = TypeVar("T")


def server_key(base_url: str) -> str:
    """The name of a server's shared state: its root URL without credentials, query or ``/v1``.

    ``http://user:pw@host:8000/v1`` → ``http://host:8000``: every process that talks to one server
    through any spelling of its base URL shares one set of limits, and no secret reaches Redis.
    """
    root = urlsplit(server_root_url(base_url))
    host = root.hostname or ""
    netloc = (f"[{host}]" if ":" in host else host) + (f":{root.port}" if root.port is not None else "")
    return urlunsplit((root.scheme, netloc, root.path, "", ""))


class Coordinator:
    """Shared limits for one process of a fleet (see the module docstring)."""

    def __init__(self, config: CoordinationConfig | str, *, clock: Callable[[], float] = now) -> None:
        self._config = config if isinstance(config, CoordinationConfig) else CoordinationConfig(url=config)
        self._clock = clock
        self.process_id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._link = RedisLink(self._config, clock=clock, on_change=self._on_link_change)
        self._fleet = Fleet(self._link, self._config, self.process_id)
        self._limits: dict[str, GlobalConcurrencyLimit] = {}
        self._buckets: dict[str, GlobalTokenBucket] = {}
        self._budgets: dict[str, GlobalRetryBudget] = {}
        self._views: dict[str, SharedServerView] = {}
        self._settings: dict[tuple[str, str], tuple[Any, ...]] = {}
        self._outer: TaskGroup | None = None
        self._stop: anyio.Event | None = None
        self._tg: TaskGroup | None = None

    # --- state ---------------------------------------------------------------------------------
    @property
    def config(self) -> CoordinationConfig:
        return self._config

    @property
    def shared(self) -> bool:
        """Whether Redis answers now (false: every object uses its local fallback)."""
        return self._link.up

    @property
    def fleet_size(self) -> int | None:
        """Processes in the fleet (``fleet_size`` from the config, else from heartbeats; ``None``: unknown)."""
        return self._fleet.size

    @property
    def running(self) -> bool:
        return self._tg is not None

    # --- the objects -----------------------------------------------------------------------------
    def concurrency_limit(self, name: str, *, limit: int) -> GlobalConcurrencyLimit:
        """At most ``limit`` calls at once for ``name`` over the fleet."""
        check_int("Coordinator.concurrency_limit", "limit", limit, at_least=1)
        self._same("concurrency_limit", name, (limit,))
        existing = self._limits.get(name)
        if existing is not None:
            return existing
        created = self._limits[name] = GlobalConcurrencyLimit(
            name=name,
            limit=limit,
            link=self._link,
            fleet=self._fleet,
            config=self._config,
            process_id=self.process_id,
            clock=self._clock,
        )
        if self._tg is not None:
            created.start(self._tg)
        return created

    def token_bucket(self, name: str, *, rate: float, burst: int | None = None) -> GlobalTokenBucket:
        """``rate`` calls per second for ``name`` over the fleet, ``burst`` at once (default: one second's)."""
        check_number("Coordinator.token_bucket", "rate", rate, above=0)
        if burst is not None:
            check_int("Coordinator.token_bucket", "burst", burst, at_least=1)
        effective = burst if burst is not None else max(1, math.ceil(rate))
        self._same("token_bucket", name, (rate, effective))
        return self._buckets.setdefault(
            name,
            GlobalTokenBucket(
                name=name, rate=rate, burst=effective, link=self._link, fleet=self._fleet,
                config=self._config, clock=self._clock,
            ),
        )  # fmt: skip

    def retry_budget(
        self,
        name: str,
        *,
        ratio: float = DEFAULT_RATIO,
        min_per_second: float = DEFAULT_MIN_PER_SECOND,
        ttl: float = DEFAULT_TTL,
    ) -> GlobalRetryBudget:
        """The fleet's retry budget for ``name`` (same meaning as the local ``RetryBudget``)."""
        if name in self._budgets:
            self._same("retry_budget", name, (ratio, min_per_second, ttl))
            return self._budgets[name]
        created = GlobalRetryBudget(
            name=name, ratio=ratio, min_per_second=min_per_second, ttl=ttl, link=self._link,
            fleet=self._fleet, config=self._config, clock=self._clock,
        )  # fmt: skip
        self._same("retry_budget", name, (ratio, min_per_second, ttl))
        self._budgets[name] = created
        return created

    def server_view(self, name: str, *, max_age: float) -> SharedServerView:
        """The fleet's view of ``name``'s ``/metrics``, scraped by one process per ``max_age`` seconds."""
        check_number("Coordinator.server_view", "max_age", max_age, above=0)
        self._same("server_view", name, (max_age,))
        return self._views.setdefault(
            name,
            SharedServerView(
                name=name, max_age=max_age, link=self._link, config=self._config,
                process_id=self.process_id, clock=self._clock,
            ),
        )  # fmt: skip

    def _same(self, kind: str, name: str, settings: tuple[Any, ...]) -> None:
        known = self._settings.setdefault((kind, name), settings)
        if known != settings:
            raise ConfigError(f"{kind}: {name!r} already exists with settings {known}, asked with {settings}")

    # --- lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> Coordinator:
        if self._outer is not None:
            raise RuntimeError("the coordinator is already running")
        self._stop = anyio.Event()
        outer = anyio.create_task_group()
        await outer.__aenter__()
        try:
            await outer.start(self._serve, name="resilient_llm coordination")
        except BaseException:
            outer.cancel_scope.cancel()
            await outer.__aexit__(None, None, None)
            raise
        self._outer = outer
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        outer, self._outer = self._outer, None
        if outer is None:
            return
        if self._stop is not None:
            self._stop.set()
        await outer.__aexit__(None, None, None)  # the caller's own exception goes on unwrapped

    async def run(self, *, task_status: TaskStatus[Coordinator] = anyio.TASK_STATUS_IGNORED) -> None:
        """Run until cancelled, for an owner that starts it in its own task group with ``tg.start``."""
        async with self:
            task_status.started(self)
            await anyio.sleep_forever()

    async def _serve(self, *, task_status: TaskStatus[None]) -> None:
        """The coordinator's own task: the Redis client, then the pumps and the heartbeat inside it.

        The caller's code never runs inside the client's or the pumps' task groups, so its exceptions
        are not wrapped in exception groups. On the way out the pumps stop first, then every lease and
        ticket is given back while the client is still open, then the client closes.
        """
        stop = self._stop
        assert stop is not None
        # Shielded, so that leaving gives every lease back even when the owner is being cancelled;
        # bounded once asked to stop: past that, whatever is still held lapses within lease_ttl.
        with anyio.CancelScope(shield=True) as shield:
            async with self._link.connected():
                await self._heartbeat()
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    tg.start_soon(self._maintain, name="resilient_llm coordination heartbeat")
                    for limit in self._limits.values():
                        limit.start(tg)
                    task_status.started()
                    await stop.wait()
                    shield.deadline = anyio.current_time() + 8 * self._config.redis_timeout
                    self._tg = None
                    tg.cancel_scope.cancel()
                with anyio.move_on_after(4 * self._config.redis_timeout):
                    await self._goodbye()

    async def _goodbye(self) -> None:
        for limit in self._limits.values():
            await limit.close()
        for budget in self._budgets.values():
            await budget.flush()
        with contextlib.suppress(CoordinationUnavailable):
            await self._fleet.leave()

    async def _maintain(self) -> None:
        while True:
            interval = self._config.renew_interval if self._link.up else self._config.reconnect_interval
            for budget in self._budgets.values():
                interval = min(interval, budget.ttl / 10)
            await anyio.sleep(interval)
            try:
                await self._heartbeat()
                for budget in self._budgets.values():
                    await budget.flush()
            except Exception:  # a bug here must not cancel the owner's task group
                logger.exception("coordination: the heartbeat failed")

    async def _heartbeat(self) -> None:
        # A failure is logged once by the link; the next heartbeat probes again.
        with contextlib.suppress(CoordinationUnavailable):
            await self._fleet.heartbeat()

    def _on_link_change(self, up: bool) -> None:
        for limit in self._limits.values():
            limit.on_link_change()

    def __repr__(self) -> str:
        return (
            f"Coordinator(url={self._config.masked_url!r}, process_id={self.process_id!r}, "
            f"shared={self.shared}, fleet_size={self.fleet_size!r})"
        )
