"""The incident as a regression test.

Eight tasks start at once against a simulated vLLM with ghosted and lost answers. A client set up like
the incident (no stall detection, no breaker, no ramp, a huge per-attempt timeout, tasks staggered by
hand) leaves calls hanging — shown with a bounded wait, never by hanging the suite — while the default
client completes every call within its deadline and keeps the server's queue near its capacity.
"""

from __future__ import annotations

import statistics

import pytest

from resilient_llm import AsyncOpenAI
from resilient_llm.demo._run import library_settings
from resilient_llm.demo._workload import ArcWorkload, RunResult, run_workload
from resilient_llm.testing import SimulatorConfig, VLLMSimulator

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(120)]

SCALE = 0.02  # 1 simulated second = 20 ms
CAPACITY = 8
WORKLOAD = ArcWorkload(
    tasks=8, rounds=2, calls_per_round=8, median_tokens=200, sigma=0.6, max_answer_tokens=1200
)
FAULTS = {"ghost": 0.05, "lost": 0.05}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the simulator runs in this loop


def simulator() -> VLLMSimulator:
    return VLLMSimulator(
        SimulatorConfig(
            capacity=CAPACITY,
            time_scale=SCALE,
            tick=0.02,
            seed=3,
            faults=FAULTS,
            metrics_lag=1.0,
            sample_interval=1.0,
        )
    )


def ideal_real_seconds() -> float:
    cfg = SimulatorConfig(capacity=CAPACITY, time_scale=SCALE)
    per_token = cfg.token_time * (1 + cfg.batch_slowdown * (cfg.capacity - 1))
    return WORKLOAD.total_tokens() * per_token / CAPACITY * SCALE


async def run(client: AsyncOpenAI, *, stagger: float, limit: float) -> RunResult:
    async def call(tokens: int, max_tokens: int) -> str | None:
        r = await client.chat.completions.create(
            model="openai/gpt-oss-20b",
            messages=[{"role": "user", "content": "solve"}],
            response_format={"type": "json_object"},
            max_tokens=max_tokens,
            extra_body={"simulator": {"output_tokens": tokens}},
        )
        return r.choices[0].message.content

    try:
        return await run_workload(call, WORKLOAD, label="run", stagger=stagger, limit=limit)
    finally:
        await client.close()


async def test_incident_settings_leave_calls_hanging() -> None:
    limit = 4 * ideal_real_seconds()
    async with simulator() as sim:
        client = AsyncOpenAI(
            api_key="EMPTY",
            base_url=sim.base_url,
            timeout=2500 * SCALE,
            max_retries=2,
            stall_timeout=None,
            breaker=None,
            ramp_up=0,
            max_concurrency=100,
            deadline=10 * 2500 * SCALE,
        )
        result = await run(client, stagger=2 * SCALE, limit=limit)
        faults = sim.stats().faults_injected
    assert result.limit_hit, "the incident's client should still be waiting at the bounded limit"
    assert result.count("hung") >= 1
    assert faults.get("ghost", 0) + faults.get("lost", 0) >= 1


async def test_default_client_completes_every_call_within_its_deadline() -> None:
    settings = library_settings(SCALE)
    deadline = settings["deadline"]
    async with simulator() as sim:
        client = AsyncOpenAI(api_key="EMPTY", base_url=sim.base_url, **settings)
        result = await run(client, stagger=0.0, limit=deadline + 5)
        stats = client.stats()
        samples = sim.samples()
        sim_stats = sim.stats()
    assert not result.limit_hit
    assert result.count("ok") == WORKLOAD.calls, [o.error for o in result.outcomes if o.status != "ok"][:5]
    assert all(
        o.finished is not None and o.started is not None and o.finished - o.started <= deadline
        for o in result.outcomes
    )
    assert stats.deadlines_exceeded == 0
    assert stats.orphans + stats.stalls >= 1  # the faults were there and were caught
    assert sim_stats.faults_injected.get("ghost", 0) + sim_stats.faults_injected.get("lost", 0) >= 1
    # the queue stays near capacity: the median waiting queue is small, where the incident's burst
    # would park every call of every task (64 here) in it
    waiting = [s.waiting for s in samples if s.running > 0]
    assert statistics.median(waiting) <= CAPACITY
    assert result.makespan < 3 * ideal_real_seconds()
