"""The global concurrency limit against a real redis-server: never exceeded, fair, cancellation-safe."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from resilient_llm._coord import CoordinationConfig, Coordinator, GlobalConcurrencyLimit, GlobalWaitTimeout
from tests.redis_server import inspector, unique_prefix, url_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


def config(proc: Any, prefix: str, **changes: Any) -> CoordinationConfig:
    settings: dict[str, Any] = {"lease_ttl": 3.0, "redis_timeout": 0.2, "poll_interval": 0.01, **changes}
    return CoordinationConfig(url=url_of(proc), key_prefix=prefix, **settings)


@asynccontextmanager
async def fleet(
    proc: Any, n: int, *, limit: int, **changes: Any
) -> AsyncIterator[list[GlobalConcurrencyLimit]]:
    """``n`` coordinators (as ``n`` processes would have) sharing one limit named ``srv``."""
    cfg = config(proc, unique_prefix(), **changes)
    async with AsyncExitStack() as stack:
        coords = [await stack.enter_async_context(Coordinator(cfg)) for _ in range(n)]
        yield [c.concurrency_limit("srv", limit=limit) for c in coords]


def holders(proc: Any, limit: GlobalConcurrencyLimit) -> int:
    with inspector(proc) as r:
        return int(r.zcard(limit._keys[0]))


def queued_tickets(proc: Any, limit: GlobalConcurrencyLimit) -> int:
    with inspector(proc) as r:
        return int(r.zcard(limit._keys[1]))


async def test_the_global_limit_is_never_exceeded_by_several_processes(redis_server: Any) -> None:
    in_use = peak = done = 0

    async def call(limit: GlobalConcurrencyLimit) -> None:
        nonlocal in_use, peak, done
        lease = await limit.acquire(deadline=anyio.current_time() + 10)
        in_use += 1
        peak = max(peak, in_use)
        await anyio.sleep(0.005)
        in_use -= 1
        limit.release(lease)
        done += 1

    async with fleet(redis_server, 3, limit=3) as limits:
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                for limit in limits:
                    tg.start_soon(call, limit)
        assert peak == 3 and done == 60
        assert all(limit.in_flight == 0 and limit.queued == 0 for limit in limits)


async def test_slots_go_round_the_waiting_processes(redis_server: Any) -> None:
    grants: list[int] = []

    async def call(limit: GlobalConcurrencyLimit, who: int) -> None:
        lease = await limit.acquire()
        grants.append(who)
        await anyio.sleep(0.003)
        limit.release(lease)

    async with fleet(redis_server, 4, limit=1) as limits:
        with anyio.move_on_after(10):
            async with anyio.create_task_group() as tg:
                for who, limit in enumerate(limits):
                    for _ in range(12 if who else 40):  # the first process queues far more calls
                        tg.start_soon(call, limit, who)
                while len(grants) < 32:
                    await anyio.sleep(0.01)
                tg.cancel_scope.cancel()
    counts = Counter(grants[:32])
    assert all(counts[who] >= 4 for who in range(4)), counts  # round robin would be 8 each


async def test_a_wait_ends_at_the_callers_deadline(redis_server: Any) -> None:
    async with fleet(redis_server, 2, limit=1) as (a, b):
        held = await a.acquire()
        start = anyio.current_time()
        with pytest.raises(GlobalWaitTimeout, match="srv"):
            await b.acquire(deadline=start + 0.2)
        assert 0.15 <= anyio.current_time() - start < 0.5
        assert b.queued == 0
        a.release(held)
        lease = await b.acquire(deadline=anyio.current_time() + 2)
        b.release(lease)


async def test_a_cancelled_wait_leaves_no_ticket_and_no_lease(redis_server: Any) -> None:
    async with fleet(redis_server, 2, limit=1) as (a, b):
        held = await a.acquire()
        with anyio.move_on_after(0.1):
            await b.acquire()
        assert b.queued == 0 and b.in_flight == 0
        with anyio.fail_after(2):
            while queued_tickets(redis_server, b):  # the pump takes its ticket out of the queue
                await anyio.sleep(0.01)
        assert holders(redis_server, a) == 1
        a.release(held)
        with anyio.fail_after(2):
            while holders(redis_server, a):
                await anyio.sleep(0.01)


async def test_cancellations_at_any_moment_leave_nothing_behind(redis_server: Any) -> None:
    rng = random.Random(7)
    completed = 0

    async def call(limit: GlobalConcurrencyLimit, patience: float) -> None:
        nonlocal completed
        with anyio.move_on_after(patience):
            lease = await limit.acquire()
            try:
                await anyio.sleep(0.002)
            finally:
                limit.release(lease)
            completed += 1

    async with fleet(redis_server, 3, limit=2) as limits:
        async with anyio.create_task_group() as tg:
            for _ in range(40):
                for limit in limits:
                    tg.start_soon(call, limit, rng.uniform(0.0, 0.05))
                await anyio.sleep(0.002)
        assert all(limit.in_flight == 0 and limit.queued == 0 for limit in limits)
        with anyio.fail_after(3):
            while holders(redis_server, limits[0]) or queued_tickets(redis_server, limits[0]):
                await anyio.sleep(0.01)
        assert completed > 0
        lease = await limits[0].acquire(deadline=anyio.current_time() + 1)  # both slots are free again
        second = await limits[1].acquire(deadline=anyio.current_time() + 1)
        limits[0].release(lease)
        limits[1].release(second)


async def test_leaving_gives_every_lease_back_at_once(redis_server: Any) -> None:
    cfg = config(redis_server, unique_prefix(), lease_ttl=30.0)
    async with Coordinator(cfg) as b:
        other = b.concurrency_limit("srv", limit=2)
        async with Coordinator(cfg) as a:
            limit = a.concurrency_limit("srv", limit=2)
            await limit.acquire()
            await limit.acquire()  # never released: the coordinator's exit gives them back
            assert holders(redis_server, limit) == 2
        start = anyio.current_time()
        first = await other.acquire(deadline=start + 2)
        second = await other.acquire(deadline=start + 2)
        assert anyio.current_time() - start < 1.0  # not the 30 s lease expiry
        other.release(first)
        other.release(second)


async def test_acquire_outside_a_running_coordinator_is_an_error(redis_server: Any) -> None:
    coordinator = Coordinator(config(redis_server, unique_prefix()))
    limit = coordinator.concurrency_limit("srv", limit=1)
    with pytest.raises(RuntimeError, match="not running"):
        await limit.acquire()
    async with coordinator:
        lease = await limit.acquire(deadline=anyio.current_time() + 2)
        limit.release(lease)
    with pytest.raises(RuntimeError, match="not running"):
        await limit.acquire()
