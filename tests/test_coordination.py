"""The client with ``coordination=``: limits shared through a real redis-server by several clients and
several OS processes; a SIGKILLed process's slots come back; Redis stopped and restarted mid-run."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from resilient_llm import (
    AsyncOpenAI,
    CoordinationConfig,
    DeadlineExceeded,
    RateLimit,
    RetryBudgetConfig,
)
from resilient_llm._exceptions import ConfigError
from resilient_llm.testing import SimulatorConfig, SimulatorThread
from tests.redis_server import inspector, unique_prefix, url_of

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

MODEL = "openai/gpt-oss-20b"


def sim_config(**kw: Any) -> SimulatorConfig:
    # 256 tokens x 0.02 s x 0.01: ~50 ms a call; 16 sequences could run at once on the server
    base: dict[str, Any] = {"time_scale": 0.01, "tick": 0.002, "capacity": 16, "sample_interval": 1.0}
    return SimulatorConfig(**{**base, **kw})


def coordination(url: str, prefix: str, **changes: Any) -> CoordinationConfig:
    # redis_timeout: generous, so that a busy 2-core test machine does not look like an outage
    settings: dict[str, Any] = {"lease_ttl": 1.5, "redis_timeout": 0.25, "poll_interval": 0.01}
    return CoordinationConfig(url=url, key_prefix=prefix, **{**settings, **changes})


def client_for(base_url: str, config: CoordinationConfig, **settings: Any) -> AsyncOpenAI:
    options: dict[str, Any] = {"max_concurrency": 3, "ramp_up": 0, "deadline": 20}
    return AsyncOpenAI(api_key="EMPTY", base_url=base_url, coordination=config, **{**options, **settings})


async def chat(client: AsyncOpenAI, tokens: int = 256) -> str | None:
    r = await client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        extra_body={"simulator": {"output_tokens": tokens}},
    )
    return r.choices[0].message.content


async def many(clients: list[AsyncOpenAI], n: int, **kw: Any) -> list[Any]:
    """``n`` calls per client, all at once; each result or the exception it raised."""
    results: list[Any] = []

    async def one(client: AsyncOpenAI) -> None:
        try:
            results.append(await chat(client, **kw))
        except Exception as exc:
            results.append(exc)

    async with anyio.create_task_group() as tg:
        for _ in range(n):
            for client in clients:
                tg.start_soon(one, client)
    return results


def worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.coord_worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


# --- several OS processes -----------------------------------------------------------------------------


def test_four_processes_of_clients_never_put_more_than_the_global_max_concurrency_on_the_server(
    redis_server: Any,
) -> None:
    limit, processes, calls = 3, 4, 10
    with SimulatorThread(sim_config()) as sim:
        common = ["--redis", url_of(redis_server), "--prefix", unique_prefix(), "--limit", str(limit)]
        # Timeouts a loaded 2-core machine meets: a Redis call that times out falls back to a local fair
        # share (by design, availability first), which this test is not about.
        common += ["--redis-timeout", "1.0", "--lease-ttl", "10"]
        procs = [
            worker("client", *common, "--sim", sim.url, "--calls", str(calls), "--concurrency", "5")
            for _ in range(processes)
        ]
        try:
            outputs = [p.communicate(timeout=45) for p in procs]
        finally:
            for p in procs:
                p.kill()
                p.wait(5)
        stats = sim.stats()
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert [r["ok"] for r in results] == [calls] * processes, (results, [err[-2000:] for _, err in outputs])
    assert all(r["coordination"] == "shared" for r in results), results
    assert stats.requests_completed == processes * calls
    assert stats.peak_in_flight == limit  # reached, never exceeded (20 calls wanted to run at once)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_sigkilled_process_gives_its_slots_back_within_the_lease_expiry(redis_server: Any) -> None:
    limit, lease_ttl, prefix = 3, 1.0, unique_prefix()
    with SimulatorThread(sim_config()) as sim:
        args = ["--redis", url_of(redis_server), "--prefix", prefix, "--limit", str(limit)]
        holder = worker(
            "client-hold", *args, "--lease-ttl", str(lease_ttl), "--sim", sim.url, "--tokens", "100000"
        )
        try:
            with anyio.fail_after(30):
                line = await anyio.to_thread.run_sync(holder.stdout.readline)  # type: ignore[union-attr]
            assert line.strip() == "STARTED", holder.stderr.read() if holder.stderr else ""
            config = coordination(url_of(redis_server), prefix, lease_ttl=lease_ttl, redis_timeout=0.1)
            client = client_for(sim.base_url, config, max_concurrency=limit, deadline=0.4)
            with pytest.raises(DeadlineExceeded, match="shared through Redis"):  # the holder has every slot
                await chat(client, tokens=8)
            holder.kill()
            killed = time.monotonic()
            client = client.with_options(deadline=10)
            with anyio.fail_after(10):
                await many([client], limit, tokens=8)
            back_after = time.monotonic() - killed
            await client.close()
        finally:
            holder.kill()
            holder.communicate(timeout=5)
    assert back_after <= lease_ttl + 0.5  # renewed every lease_ttl / 3: back within the expiry (+ the calls)


# --- several clients in one process (each its own coordinator, as processes would have) --------------


@pytest.mark.anyio
async def test_clients_share_the_limit_and_a_closed_client_leaves_nothing_in_redis(
    redis_server: Any, anyio_backend: str
) -> None:
    prefix = unique_prefix()
    config = coordination(url_of(redis_server), prefix)
    with SimulatorThread(sim_config()) as sim:
        clients = [client_for(sim.base_url, config) for _ in range(3)]
        with anyio.fail_after(20):
            results = await many(clients, 6)
        stats = [c.stats() for c in clients]
        for c in clients:
            await c.close()
        peak = sim.stats().peak_in_flight
    assert all(isinstance(r, str) for r in results), results
    assert peak == 3  # three clients of max_concurrency=3 each: 3 at once on the server, not 9
    assert {s.coordination for s in stats} == {"shared"}
    with inspector(redis_server) as r:
        holders = list(r.keys(f"{prefix}:lease:*holders"))
        assert all(r.zcard(k) == 0 for k in holders)  # every lease given back by close()
        assert r.zcard(f"{prefix}:fleet:{{processes}}") == 0  # and the fleet left


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_redis_stopped_mid_run_calls_go_on_locally_and_shared_limits_resume_when_it_is_back(
    flaky_redis: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, "resilient_llm.coordination")
    config = coordination(url_of(flaky_redis, password=None), unique_prefix(), reconnect_interval=0.2)
    with SimulatorThread(sim_config()) as sim:
        clients = [client_for(sim.base_url, config, max_concurrency=4) for _ in range(2)]
        assert all(isinstance(r, str) for r in await many(clients, 4))
        assert sim.stats().peak_in_flight <= 4
        await anyio.to_thread.run_sync(flaky_redis.stop)
        try:
            start = anyio.current_time()
            with anyio.fail_after(10):  # nothing hangs on the stopped Redis
                during = await many(clients, 8)
            took = anyio.current_time() - start
            modes = [c.stats().coordination for c in clients]
        finally:
            await anyio.to_thread.run_sync(flaky_redis.start)
        with anyio.fail_after(5):
            while any(c.stats().coordination != "shared" for c in clients):
                await anyio.sleep(0.02)
        before = sim.stats().requests_completed
        after = await many(clients, 8)
        stats = sim.stats()
        for c in clients:
            await c.close()
    assert all(isinstance(r, str) for r in during + after), during + after
    assert modes == ["local", "local"]
    assert took < 5
    assert stats.requests_completed == before + 16
    messages = [r.getMessage() for r in caplog.records]
    assert sum("unreachable" in m for m in messages) == 2  # once per client's coordinator
    assert sum("shared limits resume" in m for m in messages) == 2


@pytest.mark.anyio
async def test_the_fleet_shares_one_retry_budget(redis_server: Any, anyio_backend: str) -> None:
    # every attempt fails with 500; the fleet may retry once per window in all (reserve 0.5/s x 2 s)
    config = coordination(url_of(redis_server), unique_prefix())
    budget = RetryBudgetConfig(ratio=0.0, min_per_second=0.5, ttl=2.0)
    with SimulatorThread(sim_config(faults={"500": 1.0})) as sim:
        clients = [
            client_for(sim.base_url, config, retry_budget=budget, breaker=None, max_retries=3)
            for _ in range(3)
        ]
        results = await many(clients, 2)
        retries = sum(c.stats().retries for c in clients)
        for c in clients:
            await c.close()
    assert all(isinstance(r, Exception) for r in results)
    assert retries == 1  # three clients, one budget: not one retry each


@pytest.mark.anyio
async def test_the_fleet_shares_one_rate_limit(redis_server: Any, anyio_backend: str) -> None:
    config = coordination(url_of(redis_server), unique_prefix())
    with SimulatorThread(sim_config()) as sim:
        clients = [
            client_for(sim.base_url, config, rate_limit=RateLimit(rate=20, burst=1), max_concurrency=8)
            for _ in range(2)
        ]
        start = anyio.current_time()
        results = await many(clients, 6, tokens=4)
        took = anyio.current_time() - start
        for c in clients:
            await c.close()
    assert all(isinstance(r, str) for r in results)
    assert took >= 11 / 20 - 0.05  # 12 calls at 20/s over both clients: 11 intervals at least


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_one_client_scrapes_the_servers_metrics_and_the_others_read_its_view(
    redis_server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from resilient_llm import BreakerConfig

    caplog.set_level(logging.INFO, "resilient_llm.testing.requests")
    config = coordination(url_of(redis_server), unique_prefix())
    breaker = BreakerConfig(poll_interval=0.1, stale_after=1.0)
    with SimulatorThread(sim_config(log_requests=True)) as sim:
        clients = [client_for(sim.base_url, config, breaker=breaker) for _ in range(4)]
        await many(clients, 1)
        caplog.clear()
        start = anyio.current_time()
        await many(clients, 6, tokens=1000)  # about 0.2 s of polling by four monitors
        took = anyio.current_time() - start
        available = [c.stats().metrics_available for c in clients]
        for c in clients:
            await c.close()
    scrapes = sum("GET /metrics" in r.getMessage() for r in caplog.records)
    assert all(available)  # every client has the load ...
    assert scrapes <= took / 0.1 + 3  # ... from about one scrape per poll interval, not four


def test_coordination_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENT_LLM_COORDINATION", "redis://:pw@127.0.0.1:6390/2")
    client = AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1")
    assert client._engine.coordination is not None
    assert client._engine.coordination.config.masked_url == "redis://***@127.0.0.1:6390/2"
    assert (
        AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", coordination=None)._engine.coordination
        is None
    )
    monkeypatch.setenv("RESILIENT_LLM_COORDINATION", "off")
    assert AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1")._engine.coordination is None
    with pytest.raises(ConfigError, match="url") as info:
        AsyncOpenAI(api_key="k", coordination="http://:secret@127.0.0.1:6379")
    assert "secret" not in str(info.value)
    with pytest.raises(ConfigError, match="coordination must be"):
        AsyncOpenAI(api_key="k", coordination=6379)  # type: ignore[arg-type]


def test_without_the_redis_extra_coordination_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)  # as if it were not installed
    with pytest.raises(ConfigError) as info:
        AsyncOpenAI(api_key="k", coordination="redis://127.0.0.1:6379/0")
    assert str(info.value) == 'coordination needs the "redis" extra: pip install "resilient-llm[redis]"'
