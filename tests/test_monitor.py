"""The server monitor as a task of its own, on asyncio and trio: queue-depth hold, orphans, polite polls,
and what a server that never answered (or went away) does to a call."""

from __future__ import annotations

import logging
import socket
import time
from typing import Any

import anyio
import httpx
import openai
import pytest
from aiohttp import web

import resilient_llm
from resilient_llm import AsyncOpenAI, Backoff, BreakerConfig
from resilient_llm._vllm._metrics import parse_metrics
from resilient_llm.demo._run import library_settings
from resilient_llm.testing import SimulatorConfig, SimulatorThread
from tests.stubserver import completion_body, serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(60)]

SCALE = 0.02
QUICK = Backoff(base=0.02, cap=0.05)
METRICS = (
    "# TYPE vllm:num_requests_running gauge\n"
    'vllm:num_requests_running{engine="0",model_name="m"} 0.0\n'
    "# TYPE vllm:num_requests_waiting gauge\n"
    'vllm:num_requests_waiting{engine="0",model_name="m"} 0.0\n'
)


def sim_config(**kw: Any) -> SimulatorConfig:
    base: dict[str, Any] = {"capacity": 4, "time_scale": SCALE, "tick": 0.02, "seed": 5}
    base.update(kw)
    return SimulatorConfig(**base)


def sim_client(sim: SimulatorThread, **overrides: Any) -> AsyncOpenAI:
    settings = library_settings(SCALE)
    settings.update(overrides)
    return AsyncOpenAI(api_key="EMPTY", base_url=sim.base_url, **settings)


async def chat(client: AsyncOpenAI, tokens: int = 50) -> str | None:
    r = await client.chat.completions.create(
        model="openai/gpt-oss-20b",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"simulator": {"output_tokens": tokens}},
    )
    return r.choices[0].message.content


async def many(client: AsyncOpenAI, n: int, tokens: int, gap: float = 0.0) -> list[Any]:
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        try:
            results[i] = await chat(client, tokens)
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
            if gap:
                await anyio.sleep(gap)
    return results


async def test_queue_depth_hold_runs_on_every_backend(anyio_backend: str) -> None:
    with SimulatorThread(sim_config()) as sim:
        breaker = BreakerConfig(high_watermark=4, low_watermark=2, poll_interval=0.02, stale_after=1.0)
        client = sim_client(sim, breaker=breaker)
        held: list[int] = []

        async def watch() -> None:
            while True:
                held.append(client.stats().held_by_breaker)
                await anyio.sleep(0.02)

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            results = await many(client, 40, 500, gap=0.01)
            tg.cancel_scope.cancel()
        peak_waiting = sim.stats().peak_waiting
        await client.close()
    assert all(isinstance(r, str) for r in results), results
    assert max(held) > 0 and peak_waiting <= 10


async def test_orphans_are_found_on_every_backend(anyio_backend: str) -> None:
    with SimulatorThread(sim_config(fault_script=["lost", "lost"], metrics_lag=1.0)) as sim:
        client = sim_client(sim)
        start = time.monotonic()
        results = await many(client, 6, 50)
        took = time.monotonic() - start
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) for r in results), results
    assert stats.orphans == 2 and stats.stalls == 0
    assert took < 60 * SCALE  # well under the stall timeout


def paced_config(**kw: Any) -> SimulatorConfig:
    """Tokens a few milliseconds apart (many simulator ticks each): an answer's pace can be read."""
    return sim_config(**{"capacity": 8, "time_scale": 0.2, "tick": 0.005, **kw})


@pytest.mark.parametrize("metrics", [True, False])
async def test_an_answer_forgotten_mid_way_is_cut_at_the_servers_pace(
    anyio_backend: str, metrics: bool
) -> None:
    # The fourth answer streams half its tokens and goes silent while the server generates the rest
    # (still counted running): the orphan rule cannot see it until the server is done with it. Without
    # /metrics (every scrape a 404) the monitor judges the silence all the same.
    faults = {} if metrics else {"metrics_missing": 1.0}
    with SimulatorThread(paced_config(fault_script=["none"] * 3 + ["ghost"], faults=faults)) as sim:
        client = AsyncOpenAI(api_key="EMPTY", base_url=sim.base_url, **library_settings(0.2))
        start = time.monotonic()
        results = await many(client, 8, 300)
        took = time.monotonic() - start
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) and r for r in results), results
    assert stats.stalls == 1 and stats.orphans == 0
    assert took < 3 * 300 * 0.02 * 0.2  # well before a second full answer time after the first


async def test_answers_preempted_back_to_the_queue_are_not_cut(anyio_backend: str) -> None:
    # A KV budget for about four answers: the server preempts the newest back to its queue, where
    # they wait silent while the others stream. The preemption counter excuses them.
    with SimulatorThread(paced_config(kv_cache_tokens=1400)) as sim:
        client = AsyncOpenAI(api_key="EMPTY", base_url=sim.base_url, **library_settings(0.2))
        results = await many(client, 8, 300)
        stats = client.stats()
        await client.close()
        async with httpx.AsyncClient() as http:
            load = parse_metrics((await http.get(f"{sim.url}/metrics")).text, scraped_at=0.0)
    assert all(isinstance(r, str) and r for r in results), results
    assert load is not None and load.preemptions  # the server did preempt
    # None is cut as silent (a stall). The orphan rule may still retry one under load (its own grace
    # for an answer that fell silent mid-way; a false orphan is retried, never lost): not this rule's.
    assert stats.stalls == 0, stats


async def test_an_idle_client_sends_no_polls(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if request.path.endswith("/metrics"):
            return web.Response(text=METRICS, content_type="text/plain")
        return web.json_response(completion_body())

    with serve(handler) as server:
        breaker = BreakerConfig(poll_interval=0.05, stale_after=0.5)
        async with AsyncOpenAI(
            api_key="k", base_url=server.base_url, breaker=breaker, stall_timeout=None
        ) as client:
            for _ in range(3):
                await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            await anyio.sleep(0.5)  # the monitor stops two polls after the last call
            polls_then = sum(r["path"].endswith("/metrics") for r in server.requests)
            await anyio.sleep(1.0)
            polls_now = sum(r["path"].endswith("/metrics") for r in server.requests)
    assert polls_then >= 1  # it did read the load while calls were in flight
    assert polls_now == polls_then  # and nothing at all while idle


async def test_a_server_without_metrics_is_checked_rarely_and_said_once(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="resilient_llm")

    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if request.path.endswith("/metrics"):
            return web.json_response({"error": {"message": "not found"}}, status=404)
        await anyio.sleep(0.01)
        return web.json_response(completion_body())

    with serve(handler) as server:
        breaker = BreakerConfig(poll_interval=0.05, stale_after=0.5)
        async with AsyncOpenAI(
            api_key="k", base_url=server.base_url, breaker=breaker, stall_timeout=None
        ) as client:
            end = time.monotonic() + 1.5
            while time.monotonic() < end:  # a busy client: calls all the time
                await many(client, 4, 1)
    polls = [r for r in server.requests if r["path"].endswith("/metrics")]
    assert len(polls) == 1  # the next check is a minute away
    said = [r for r in caplog.records if "has no vLLM metrics" in r.getMessage()]
    assert len(said) == 1 and "127.0.0.1" in said[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_a_port_where_nothing_listens_fails_like_the_official_client(
    anyio_backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="resilient_llm")
    url = f"http://127.0.0.1:{_free_port()}/v1"
    async with AsyncOpenAI(api_key="k", base_url=url, backoff=QUICK) as client:  # breaker on, as by default
        start = time.monotonic()
        with pytest.raises(openai.APIConnectionError) as info:
            await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
        took = time.monotonic() - start
        stats = client.stats()
    assert isinstance(info.value, resilient_llm.ServerUnreachable)
    assert url.split("//")[1].split("/")[0] in str(info.value) or url in str(info.value.request.url)
    assert took < 3.0 and stats.attempts == 1 + resilient_llm.DEFAULT_MAX_RETRIES
    assert all("127.0.0.1" in r.getMessage() for r in caplog.records if r.name == "resilient_llm")


async def test_a_server_still_loading_is_waited_for_when_asked(anyio_backend: str) -> None:
    port = _free_port()
    config = sim_config(port=port)
    breaker = BreakerConfig(wait_for_server=5.0, open_cooldown=0.05, max_cooldown=0.2, poll_interval=0.05)
    client = AsyncOpenAI(
        api_key="k", base_url=f"http://127.0.0.1:{port}/v1", backoff=QUICK, breaker=breaker, deadline=20
    )
    results: list[Any] = []

    async def later() -> None:
        await anyio.sleep(0.8)  # the server comes up while the calls wait for it
        sim.start()

    sim = SimulatorThread(config)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(later)
            results = await many(client, 3, 20)
        stats = client.stats()
    finally:
        await client.close()
        sim.stop()
    assert all(isinstance(r, str) for r in results), results
    assert stats.calls_ok == 3


def lag_client(sim: SimulatorThread, **breaker: Any) -> AsyncOpenAI:
    """Real durations for the orphan rule (0.5 s to 10 s of grace), polls every 0.1 s."""
    config = BreakerConfig(poll_interval=0.1, stale_after=1.0, **breaker)
    return AsyncOpenAI(
        api_key="k", base_url=sim.base_url, breaker=config, backoff=QUICK, ramp_up=0, stall_timeout=30
    )


async def test_the_orphan_grace_is_learned_and_a_lost_call_is_found_in_about_a_second(
    anyio_backend: str,
) -> None:
    # vLLM-like metrics: a request is counted by the engine step that makes its first token (0.1 s here).
    config = sim_config(
        time_scale=1.0, metrics_lag=0.1, metrics_lag_mode="steps", fault_script=[None] * 6 + ["lost"]
    )
    with SimulatorThread(config) as sim:
        client = lag_client(sim)
        for _ in range(6):  # single calls: the server shows how fast it counts this client's requests
            assert await chat(client, 5)
        learned = client.stats()
        start = time.monotonic()
        assert await chat(client, 5)  # its first attempt is lost: found by the orphan rule, retried
        took = time.monotonic() - start
        stats = client.stats()
        await client.close()
    assert learned.metrics_lag is not None and learned.orphan_grace is not None
    assert learned.orphan_grace < 2.0  # learned down from the 10 s cap
    assert stats.orphans == 1 and stats.stalls == 0
    assert took < 4.0  # with the fixed 10 s grace: about 20 s


async def test_metrics_that_run_behind_the_answers_make_no_false_orphans(anyio_backend: str) -> None:
    # A stale snapshot: answers stream before the server's count shows them; a queue builds up.
    config = sim_config(
        time_scale=1.0, capacity=2, token_time=0.02, metrics_lag=1.0, metrics_lag_mode="snapshot"
    )
    with SimulatorThread(config) as sim:
        client = lag_client(sim)
        results = await many(client, 12, 30)
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) for r in results), results
    assert stats.orphans == 0 and stats.retries == 0


async def test_calls_waiting_for_a_restarted_server_go_when_its_breaker_finds_it_up(
    anyio_backend: str,
) -> None:
    """Calls refused by a restarting server retry at the breaker's pace, not on their own backoff: with
    a backoff of 0.15 s doubling (no jitter), a call refused 0, 0.15, 0.45 and 1.05 s into a 1.2 s
    restart would sleep until 2.25 s; the breaker's probes (every 0.1 s) find the server up at 1.2 s."""
    with SimulatorThread(sim_config(capacity=8, time_scale=0.1, tick=0.005, restart_down_for=12.0)) as sim:
        breaker = BreakerConfig(open_cooldown=0.1, max_cooldown=0.4, poll_interval=0.05)
        backoff = Backoff(base=0.15, cap=5.0, jitter="none")
        client = sim_client(sim, breaker=breaker, backoff=backoff, ramp_up=0, deadline=30)
        restarted_at: list[float] = []
        assert await chat(client, 5)  # the server has answered this client: a refusal is a restart

        async def restart() -> None:
            await anyio.sleep(0.1)  # the calls are being answered
            await anyio.to_thread.run_sync(sim.restart)
            restarted_at.append(time.monotonic())

        async with anyio.create_task_group() as tg:
            tg.start_soon(restart)
            results = await many(client, 4, 100)
        done_at = time.monotonic()
        stats, restarts = client.stats(), sim.stats().restarts
        await client.close()
    assert all(isinstance(r, str) for r in results), results
    assert restarts == 1 and stats.retries >= 4
    assert done_at - restarted_at[0] < 1.9  # 1.2 s down, a probe, 0.2 s of answer; not 2.25 + 0.2
