"""Redis frozen, stopped, unreachable, restarted: calls go on on local limits and never hang on Redis."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from resilient_llm._coord import CoordinationConfig, Coordinator, GlobalConcurrencyLimit
from tests.redis_server import frozen, inspector, unique_prefix, url_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

REDIS_TIMEOUT = 0.1


def config(url: str, **changes: Any) -> CoordinationConfig:
    settings: dict[str, Any] = {
        "lease_ttl": 1.2,
        "redis_timeout": REDIS_TIMEOUT,
        "poll_interval": 0.01,
        "reconnect_interval": 0.2,
        **changes,
    }
    return CoordinationConfig(url=url, key_prefix=unique_prefix(), **settings)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "resilient_llm.coordination"]


async def run_calls(limits: list[GlobalConcurrencyLimit], calls: int, hold: float) -> list[int]:
    """``calls`` calls per limit; returns each limit's peak in flight. Every wait is bounded."""
    peaks = [0] * len(limits)
    in_use = [0] * len(limits)

    async def call(i: int) -> None:
        with anyio.fail_after(1.0):  # never hangs on Redis: a wait ends long before this
            lease = await limits[i].acquire(deadline=anyio.current_time() + 5)
        in_use[i] += 1
        peaks[i] = max(peaks[i], in_use[i])
        await anyio.sleep(hold)
        in_use[i] -= 1
        limits[i].release(lease)

    async with anyio.create_task_group() as tg:
        for _ in range(calls):
            for i in range(len(limits)):
                tg.start_soon(call, i)
    return peaks


async def test_unreachable_redis_from_the_start_means_local_limits_and_one_masked_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, "resilient_llm.coordination")
    cfg = config("redis://:s3cret@127.0.0.1:1/0", fleet_size=4)  # nothing listens on port 1
    start = anyio.current_time()
    async with Coordinator(cfg) as coordinator:
        assert anyio.current_time() - start < 1.0
        limit = coordinator.concurrency_limit("srv", limit=8)
        assert not coordinator.shared and limit.local_share() == 2
        peaks = await run_calls([limit], calls=10, hold=0.01)
        assert peaks == [2]
        await anyio.sleep(0.5)  # a few failed probes: still one warning
    messages = warnings_of(caplog)
    assert len(messages) == 1 and "redis://***@127.0.0.1:1/0 is unreachable" in messages[0]
    assert "s3cret" not in caplog.text


async def test_frozen_redis_mid_run_switches_to_a_fair_share_then_back(
    flaky_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "resilient_llm.coordination")
    cfg = config(url_of(flaky_redis))
    async with AsyncExitStack() as stack:
        coords = [await stack.enter_async_context(Coordinator(cfg)) for _ in range(2)]
        limits = [c.concurrency_limit("srv", limit=4) for c in coords]
        assert max(await run_calls(limits, calls=8, hold=0.01)) <= 4
        with anyio.fail_after(2):  # each process has counted the fleet at a heartbeat since both joined
            while any(c.fleet_size != 2 for c in coords):
                await anyio.sleep(0.02)
        with frozen(flaky_redis):
            start = anyio.current_time()
            peaks = await run_calls(limits, calls=8, hold=0.01)
            assert anyio.current_time() - start < 1.0  # one redis_timeout to notice, then local at once
            assert peaks == [2, 2] and not any(c.shared for c in coords)  # fair share of 4 over 2 processes
        with anyio.fail_after(2):
            while not all(c.shared for c in coords):
                await anyio.sleep(0.02)
        assert max(await run_calls(limits, calls=8, hold=0.01)) <= 4
    messages = warnings_of(caplog)
    assert sum("unreachable" in m for m in messages) == 2  # once per process per outage
    assert sum("is back; shared limits resume" in m for m in messages) == 2


async def test_redis_stopped_and_restarted_leases_held_meanwhile_count_again(flaky_redis: Any) -> None:
    cfg = config(url_of(flaky_redis))
    async with Coordinator(cfg) as coordinator:
        limit = coordinator.concurrency_limit("srv", limit=3)
        first = await limit.acquire(deadline=anyio.current_time() + 1)
        await anyio.to_thread.run_sync(flaky_redis.stop)
        try:
            with anyio.fail_after(1.0):
                during = [await limit.acquire(deadline=anyio.current_time() + 1) for _ in range(2)]
            assert not coordinator.shared and not any(lease.shared for lease in during)
        finally:
            await anyio.to_thread.run_sync(flaky_redis.start)
        with anyio.fail_after(3):
            while not coordinator.shared:
                await anyio.sleep(0.02)
        with anyio.fail_after(2), inspector(flaky_redis) as r:
            while r.zcard(limit._keys[0]) != 3:  # the restarted Redis knows all three holders again
                await anyio.sleep(0.02)
        for lease in [first, *during]:
            limit.release(lease)
        lease = await limit.acquire(deadline=anyio.current_time() + 1)
        assert lease.shared
        limit.release(lease)
