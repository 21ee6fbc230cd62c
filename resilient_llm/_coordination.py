"""Limits shared with other processes through Redis: the client's side of ``coordination=``.

The client owns one :class:`~resilient_llm._coord.Coordinator`. Its first call starts it on the running
event loop — an asyncio task, or a trio system task (trio lets a library own a task no other way) —
and ``client.close()`` stops it, which gives back every lease and leaves every queue and the fleet.
What it shares (:class:`SharedLimits`):

* per replica, named by :func:`~resilient_llm._coord.server_key` of its URL: ``max_concurrency`` as a
  global limit — after its local slot a call takes a lease, and a process that dies gives its leases
  back within ``lease_ttl`` — and the replica's load: its monitor reads it through the fleet's view, so
  one process scrapes a server per poll interval and the others read what it published;
* per client (the set of its servers): the retry budget and, when ``rate_limit`` is set, the token bucket.

Every wait on Redis ends by the call's deadline and every Redis call within ``redis_timeout``. When
Redis is unreachable, at the start or later, each object falls back to local limits (a fair share of
the global ones); that is said once at WARNING with the URL masked, and shared limits resume when Redis
is back (``_coord``). A call waits for the coordinator to start (one Redis round trip, bounded by
``redis_timeout``) at most until its deadline.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import anyio
import sniffio

from ._clock import Clock
from ._config import RateLimit, RetryBudgetConfig
from ._coord import (
    CoordinationConfig,
    Coordinator,
    GlobalConcurrencyLimit,
    GlobalRetryBudget,
    GlobalTokenBucket,
    Lease,
    SharedServerView,
    server_key,
)
from ._load import ServerLoad
from ._stats import CoordinationMode
from ._vllm._monitor import Scrape, _current_owner

if TYPE_CHECKING:
    from ._replica import Replica

logger = logging.getLogger("resilient_llm.coordination")

__all__ = ["Coordination", "SharedLimits"]


class SharedLimits:
    """The objects one running coordinator shares for a client (see the module docstring)."""

    __slots__ = ("_leases", "_views", "bucket", "budget", "coordinator")

    def __init__(
        self,
        coordinator: Coordinator,
        *,
        servers: Sequence[str],
        max_concurrency: int | None,
        rate_limit: RateLimit | None,
        retry_budget: RetryBudgetConfig,
        view_max_age: float | None,
    ) -> None:
        keys = [server_key(url) for url in servers]
        service = keys[0] if len(keys) == 1 else "+".join(sorted(keys))
        self.coordinator = coordinator
        self._leases: list[GlobalConcurrencyLimit] | None = (
            None
            if max_concurrency is None
            else [coordinator.concurrency_limit(key, limit=max_concurrency) for key in keys]
        )
        self._views: list[SharedServerView] | None = (
            None
            if view_max_age is None
            else [coordinator.server_view(key, max_age=view_max_age) for key in keys]
        )
        self.bucket: GlobalTokenBucket | None = (
            None
            if rate_limit is None
            else coordinator.token_bucket(service, rate=rate_limit.rate, burst=rate_limit.burst)
        )
        self.budget: GlobalRetryBudget = coordinator.retry_budget(
            service,
            ratio=retry_budget.ratio,
            min_per_second=retry_budget.min_per_second,
            ttl=retry_budget.ttl,
        )

    async def lease(self, index: int, *, deadline: float, front: bool) -> Lease | None:
        """A global slot of replica ``index`` (``None`` when ``max_concurrency`` is not set: no global cap).

        Raises :class:`~resilient_llm._coord.GlobalWaitTimeout` when none comes before ``deadline``.
        """
        if self._leases is None:
            return None
        return await self._leases[index].acquire(deadline=deadline, front=front)

    def release(self, index: int, lease: Lease) -> None:
        if self._leases is not None:
            self._leases[index].release(lease)

    def view(self, index: int) -> SharedServerView | None:
        return None if self._views is None else self._views[index]

    def budget_available(self) -> float:
        """Retries the fleet's budget allowed at the last exchange with Redis (the local budget's without)."""
        return self.budget.last_available()


class _Run:
    """One coordinator running on one event loop (a client used from a new loop starts another)."""

    __slots__ = ("done", "limits", "owner", "started", "stop", "task")

    def __init__(self, owner: object) -> None:
        self.owner = owner
        self.limits: SharedLimits | None = None
        self.started = anyio.Event()
        self.stop = anyio.Event()
        self.done = anyio.Event()
        self.task: asyncio.Task[None] | None = None


class Coordination:
    """A client's membership in a fleet that shares its limits through Redis (see the module docstring)."""

    def __init__(
        self,
        config: CoordinationConfig,
        *,
        servers: Sequence[str],
        max_concurrency: int | None,
        rate_limit: RateLimit | None,
        retry_budget: RetryBudgetConfig,
        view_max_age: float | None,
        clock: Clock,
    ) -> None:
        self._config = config
        self._servers = tuple(servers)
        self._max_concurrency = max_concurrency
        self._rate_limit = rate_limit
        self._retry_budget = retry_budget
        self._view_max_age = view_max_age
        self._clock = clock
        self._run: _Run | None = None
        self._closed = False

    @property
    def config(self) -> CoordinationConfig:
        return self._config

    def mode(self) -> CoordinationMode:
        """``"shared"`` while Redis answers, else ``"local"`` (not started yet, or each on its fair share)."""
        limits = self.current()
        return "shared" if limits is not None and limits.coordinator.shared else "local"

    def current(self) -> SharedLimits | None:
        """The shared limits of the running coordinator, if one runs."""
        run = self._run
        return run.limits if run is not None else None

    async def ready(self, deadline: float) -> SharedLimits | None:
        """The shared limits for a call on this event loop; starts the coordinator on its first call.

        Waits for the start at most until ``deadline`` (clock time); ``None`` when it is not running
        (closed, or not started in time): the call then has local limits only.
        """
        run = self._run
        owner = _current_owner()
        if run is None or run.owner is not owner:
            if self._closed:
                return None
            run = self._run = self._start(owner)
        if run.limits is None and not run.started.is_set():
            with anyio.move_on_after(max(0.0, deadline - self._clock())):
                await run.started.wait()
        return run.limits

    def shared_scrape(self, replica: Replica) -> Awaitable[Scrape] | None:
        """The replica's load read through the fleet's view, or ``None`` to scrape it here (no view)."""
        run = self._run
        if run is None or run.limits is None or run.owner is not _current_owner():
            return None
        view = run.limits.view(replica.index)
        return None if view is None else _through(view, replica.upstream.scrape)

    async def aclose(self) -> None:
        """Stop the coordinator (``client.close()``): leases given back, queues and the fleet left."""
        self._closed = True
        run, self._run = self._run, None
        if run is None or run.owner is not _current_owner():
            return  # never started, or on a loop that is gone (its leases lapse within lease_ttl)
        run.stop.set()
        with anyio.move_on_after(12 * self._config.redis_timeout + 1.0):
            await run.done.wait()

    # --- the owned task ----------------------------------------------------------------------------
    def _start(self, owner: object) -> _Run:
        run = _Run(owner)
        if sniffio.current_async_library() == "asyncio":
            run.task = asyncio.get_running_loop().create_task(
                self._own(run), name="resilient_llm coordination"
            )
        else:
            import trio

            trio.lowlevel.spawn_system_task(self._own, run, name="resilient_llm coordination")
        return run

    async def _own(self, run: _Run) -> None:
        try:
            async with Coordinator(self._config, clock=self._clock) as coordinator:
                run.limits = SharedLimits(
                    coordinator,
                    servers=self._servers,
                    max_concurrency=self._max_concurrency,
                    rate_limit=self._rate_limit,
                    retry_budget=self._retry_budget,
                    view_max_age=self._view_max_age,
                )
                run.started.set()
                await run.stop.wait()
        except Exception:  # a bug must not kill a trio run; calls go on with local limits
            logger.exception("coordination through %s stopped", self._config.masked_url)
        finally:
            run.limits = None
            run.started.set()
            run.done.set()

    def __repr__(self) -> str:
        return f"Coordination({self._config!r}, servers={len(self._servers)})"


async def _through(view: SharedServerView, scrape: Callable[[], Awaitable[Scrape]]) -> Scrape:
    """One poll through the fleet's view: this process's own scrape when it is its turn, else the view."""
    here: list[Scrape] = []

    async def load() -> ServerLoad | None:
        result = await scrape()
        here.append(result)
        return result.load

    shared = await view.get(load)
    if here:
        return here[0]
    if shared is None:
        return Scrape(None, "another process is making the fleet's first scrape")
    return Scrape(
        shared.load, "from the fleet's view" if shared.load is not None else "no load in the fleet's view"
    )
