"""The client against the simulator: queue-depth hold, restarts, missing metrics, orphans, every fault."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from resilient_llm import AsyncOpenAI, BreakerConfig
from resilient_llm.demo._run import library_settings
from resilient_llm.testing import SimulatorConfig, VLLMSimulator

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(90)]

SCALE = 0.02


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sim_config(**kw: Any) -> SimulatorConfig:
    base: dict[str, Any] = {
        "capacity": 4,
        "time_scale": SCALE,
        "tick": 0.02,
        "seed": 5,
        "sample_interval": 0.5,
    }
    base.update(kw)
    return SimulatorConfig(**base)


def make_client(sim: VLLMSimulator, **overrides: Any) -> AsyncOpenAI:
    settings = library_settings(SCALE)
    settings.update(overrides)
    return AsyncOpenAI(api_key="EMPTY", base_url=sim.base_url, **settings)


async def chat(client: AsyncOpenAI, tokens: int) -> str | None:
    r = await client.chat.completions.create(
        model="openai/gpt-oss-20b",
        messages=[{"role": "user", "content": "x"}],
        extra_body={"simulator": {"output_tokens": tokens}},
    )
    return r.choices[0].message.content


async def many(client: AsyncOpenAI, n: int, tokens: int) -> list[Any]:
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        try:
            results[i] = await chat(client, tokens)
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return results


async def test_breaker_holds_calls_when_the_waiting_queue_is_deep() -> None:
    async with VLLMSimulator(sim_config()) as sim:
        breaker = BreakerConfig(
            high_watermark=4, low_watermark=2, poll_interval=0.02, stale_after=1.0, orphan_grace=5 * SCALE
        )
        client = make_client(sim, breaker=breaker)
        held = []
        results: list[Any] = []

        async def watch() -> None:
            while True:
                held.append(client.stats().held_by_breaker)
                await anyio.sleep(0.02)

        async def one() -> None:
            results.append(await chat(client, 500))

        async with anyio.create_task_group() as tg:
            tg.start_soon(watch)
            async with anyio.create_task_group() as calls:
                for _ in range(40):  # calls keep arriving, as a pipeline's tasks make them
                    calls.start_soon(one)
                    await anyio.sleep(0.01)
            tg.cancel_scope.cancel()
        peak_waiting = sim.stats().peak_waiting
        await client.close()
    assert len(results) == 40 and all(isinstance(r, str) for r in results)
    assert max(held) > 0  # calls were held client-side ...
    assert peak_waiting <= 10  # ... instead of piling into the server's queue (40 - 4 without the breaker)


@pytest.mark.parametrize("metrics", [True, False])
async def test_restart_trips_the_breaker_and_every_call_still_completes(
    caplog: pytest.LogCaptureFixture, metrics: bool
) -> None:
    caplog.set_level(logging.INFO, logger="resilient_llm")
    transitions: list[Any] = []
    ramp_at_recovery: list[float] = []

    def on_event(event: Any) -> None:
        transitions.append(event)
        # recovery is half_open -> closed; holding -> closed (queue depth back under the low watermark)
        # comes later too, once the ramp may have finished
        if type(event).__name__ == "BreakerTransition" and (event.old_state, event.new_state) == (
            "half_open",
            "closed",
        ):
            ramp_at_recovery.append(client.stats().ramp_level)

    faults = {} if metrics else {"metrics_missing": 1.0}
    async with VLLMSimulator(sim_config(restart_down_for=40, faults=faults)) as sim:
        client = make_client(sim, hooks=[on_event])
        async with anyio.create_task_group() as tg:
            results: list[Any] = []

            async def run() -> None:
                results.extend(await many(client, 24, 200))

            tg.start_soon(run)
            await anyio.sleep(0.3)
            await sim.restart()  # connections refused for 40 simulated seconds, then back empty
        stats = client.stats()
        await client.close()
    failed = [repr(r) for r in results if isinstance(r, Exception)]
    assert stats.calls_ok == 24 and stats.calls_failed == 0, failed
    states = [t.new_state for t in transitions if type(t).__name__ == "BreakerTransition"]
    assert "open" in states and states[-1] == "closed"
    assert ramp_at_recovery
    if metrics:  # the queue-depth hold paces the restarted server: no ramp to leave its batch half empty
        assert ramp_at_recovery[-1] == 1.0
    else:  # nothing to read the server's queue from: the slow-start ramp runs again
        assert ramp_at_recovery[-1] < 0.5


async def test_an_attempt_lost_to_a_restart_does_not_use_up_the_calls_retries() -> None:
    # 500 (retry 1), lost as the server goes down (retry 2), refused while it is down (waited for: the
    # loss was the restart's and is given back), 500 once it is back (retry 2 again), then the answer.
    script = ["500", "restart", "500"]
    async with VLLMSimulator(sim_config(fault_script=script, restart_down_for=10)) as sim:
        client = make_client(sim, max_retries=2)
        answer = await chat(client, 20)
        stats, restarts = client.stats(), sim.stats().restarts
        await client.close()
    assert answer
    assert stats.calls_ok == 1 and restarts == 1


async def test_work_lost_in_a_restart_that_opened_the_breaker_is_given_back(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="resilient_llm")
    # Every call's first attempt gets a 500 (its one retry under max_retries=1); the restart then loses
    # every second attempt in flight. Those losses open the breaker: the server's, not the requests'.
    async with VLLMSimulator(sim_config(fault_script=["500"] * 8, restart_down_for=10)) as sim:
        client = make_client(sim, max_retries=1)
        async with anyio.create_task_group() as tg:
            results: list[Any] = []

            async def run() -> None:
                results.extend(await many(client, 8, 400))

            tg.start_soon(run)
            with anyio.fail_after(5):
                while sim.stats().requests_received < 8 or sim.in_flight < 8:
                    await anyio.sleep(0.005)
            await sim.restart()
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) for r in results), [repr(r) for r in results]
    assert stats.calls_ok == 8
    said = [r.getMessage() for r in caplog.records if "not counted against max_retries" in r.getMessage()]
    assert said and all(sim.base_url in m for m in said)  # each line names the server


async def test_missing_metrics_never_block_are_said_once_and_are_not_polled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="resilient_llm")
    async with VLLMSimulator(sim_config(faults={"ghost": 0.1})) as sim:
        sim.set_metrics_mode("missing")
        client = make_client(sim)
        results = await many(client, 16, 100)
        stats = client.stats()
        monitor = client._engine.replicas[0].upstream.monitor
        await client.close()
    assert all(isinstance(r, str) for r in results)
    assert not stats.metrics_available
    said = [r for r in caplog.records if "has no vLLM metrics" in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.INFO
    assert sim.url.split("//")[1] in said[0].getMessage()  # names the server
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING and "metrics" in r.getMessage()]
    assert monitor is not None and monitor.scrapes == 1  # checked again only a minute later


async def test_orphans_are_aborted_long_before_the_stall_timeout() -> None:
    # stall_timeout is a full (scaled) minute; lost answers must be found by the orphan rule instead
    async with VLLMSimulator(sim_config(fault_script=["lost", "lost"], metrics_lag=1.0)) as sim:
        client = make_client(sim)
        start = anyio.current_time()
        results = await many(client, 6, 50)
        took = anyio.current_time() - start
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) for r in results)
    assert stats.orphans == 2 and stats.stalls == 0
    assert took < 60 * SCALE  # well under the stall timeout


@pytest.mark.parametrize("fault", ["lost", "ghost", "drop", "503", "429", "500", "truncated", "error_chunk"])
async def test_every_fault_is_survived(fault: str) -> None:
    async with VLLMSimulator(sim_config(fault_script=[fault, fault], retry_after=1.0)) as sim:
        client = make_client(sim)
        results = await many(client, 4, 80)
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) and r for r in results), results
    assert stats.retries >= 2


async def test_a_failing_monitor_step_is_logged_and_never_leaves_calls_held(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="resilient_llm.monitor")
    async with VLLMSimulator(sim_config()) as sim:
        client = make_client(sim)
        replica = client._engine.replicas[0]
        assert replica.breaker is not None

        def broken(load: Any) -> None:
            raise RuntimeError("bug in a breaker step")

        replica.breaker.on_load = broken  # type: ignore[method-assign]
        replica.lane.set_admission_budget(0)  # as if the last scrape had said "no room"
        results = await many(client, 6, 50)
        await client.close()
    assert all(isinstance(r, str) for r in results)
    assert any("handling a scrape failed" in r.getMessage() for r in caplog.records)
    assert replica.lane._budget is None  # reset when the poller stopped
