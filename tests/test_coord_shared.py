"""Token bucket, retry budget, server view and fleet size shared through a real redis-server."""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

import anyio
import pytest

from resilient_llm._coord import CoordinationConfig, Coordinator, GlobalWaitTimeout, SharedLoad
from resilient_llm._exceptions import ConfigError
from resilient_llm._load import ServerLoad
from tests.redis_server import unique_prefix, url_of

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]


def config(proc: Any, **changes: Any) -> CoordinationConfig:
    settings: dict[str, Any] = {"lease_ttl": 1.5, "redis_timeout": 0.2, "poll_interval": 0.01, **changes}
    return CoordinationConfig(url=url_of(proc), key_prefix=unique_prefix(), **settings)


async def test_the_token_bucket_paces_the_whole_fleet(redis_server: Any) -> None:
    cfg = config(redis_server)
    async with Coordinator(cfg) as a, Coordinator(cfg) as b:
        buckets = [c.token_bucket("srv", rate=40.0, burst=4) for c in (a, b)]
        start = anyio.current_time()
        async with anyio.create_task_group() as tg:
            for bucket in buckets:
                for _ in range(12):
                    tg.start_soon(bucket.acquire)
        elapsed = anyio.current_time() - start
    assert 0.45 <= elapsed < 1.0  # 24 tokens: a burst of 4, then 20 at 40/s = 0.5 s (one bucket, not two)


async def test_a_token_due_after_the_deadline_fails_at_once(redis_server: Any) -> None:
    async with Coordinator(config(redis_server)) as coordinator:
        bucket = coordinator.token_bucket("srv", rate=2.0, burst=1)
        await bucket.acquire()
        start = anyio.current_time()
        with pytest.raises(GlobalWaitTimeout, match="due in"):
            await bucket.acquire(deadline=start + 0.1)
        assert anyio.current_time() - start < 0.1


async def test_the_retry_budget_is_one_budget_for_the_fleet(redis_server: Any) -> None:
    cfg = config(redis_server)
    async with Coordinator(cfg) as a, Coordinator(cfg) as b:
        budgets = [c.retry_budget("srv", ratio=0.5, min_per_second=0.1, ttl=5.0) for c in (a, b)]
        for budget in budgets:
            for _ in range(6):
                budget.record_request()  # 12 first attempts over the fleet: 6 retries, plus a 0.5 reserve
        results = [await budgets[i % 2].try_withdraw() for i in range(10)]
        assert results == [True] * 6 + [False] * 4
        assert await budgets[0].available() == pytest.approx(0.5)
        assert await budgets[1].available() == pytest.approx(0.5)


async def test_first_attempts_reach_the_shared_budget_without_a_withdrawal(redis_server: Any) -> None:
    cfg = config(redis_server)
    async with Coordinator(cfg) as a, Coordinator(cfg) as b:
        counting = a.retry_budget("srv", ratio=1.0, min_per_second=0.0, ttl=1.0)
        asking = b.retry_budget("srv", ratio=1.0, min_per_second=0.0, ttl=1.0)
        for _ in range(3):
            counting.record_request()
        with anyio.fail_after(2):  # flushed by a's coordinator within ttl / 10
            while await asking.available() < 3:
                await anyio.sleep(0.02)


async def test_one_process_scrapes_per_max_age_and_the_others_read_its_view(redis_server: Any) -> None:
    cfg = config(redis_server)
    scrapes = 0

    async def scrape() -> ServerLoad | None:
        nonlocal scrapes
        scrapes += 1
        return ServerLoad(running=5, waiting=2, kv_cache_usage=0.25, engines=2, scraped_at=0.0)

    async with AsyncExitStack() as stack:
        coords = [await stack.enter_async_context(Coordinator(cfg)) for _ in range(3)]
        views = [c.server_view("srv", max_age=0.15) for c in coords]
        seen: list[SharedLoad | None] = []
        start = anyio.current_time()
        while anyio.current_time() - start < 0.6:  # each process polls every 20 ms
            for view in views:
                seen.append(await view.get(scrape))
            await anyio.sleep(0.02)
    assert 3 <= scrapes <= 6  # about once per 0.15 s over the fleet, not 3 x 30
    shared = [s for s in seen if s is not None and not s.scraped_here]
    assert shared and all(s.load is not None and s.load.active == 7 for s in shared)
    assert all(0 <= s.age <= 0.2 for s in shared)
    assert all(s.load is not None and s.load.scraped_at <= anyio.current_time() for s in shared)


async def test_the_fleet_size_counts_live_processes(redis_server: Any) -> None:
    cfg = config(redis_server)
    async with Coordinator(cfg) as a:
        async with Coordinator(cfg) as b, Coordinator(cfg) as c:
            assert c.fleet_size == 3  # counted at its first heartbeat
            with anyio.fail_after(2):  # the others see it at their next one (every lease_ttl / 3)
                while b.fleet_size != 3:
                    await anyio.sleep(0.05)
        async with Coordinator(cfg) as d:
            assert d.fleet_size == 2  # the two that left said goodbye
        assert a.shared


async def test_one_name_has_one_set_of_settings(redis_server: Any) -> None:
    coordinator = Coordinator(config(redis_server))
    assert coordinator.concurrency_limit("srv", limit=2) is coordinator.concurrency_limit("srv", limit=2)
    with pytest.raises(ConfigError, match="already exists"):
        coordinator.concurrency_limit("srv", limit=3)
    with pytest.raises(ConfigError, match="limit must be an integer >= 1"):
        coordinator.concurrency_limit("other", limit=0)
    with pytest.raises(ConfigError, match="rate must be a finite number > 0"):
        coordinator.token_bucket("srv", rate=0)
    with pytest.raises(ConfigError, match="ratio must be a finite number >= 0"):
        coordinator.retry_budget("srv", ratio=-1)
