"""A client of several replicas (``replicas=[...]``) against simulated vLLM replicas: a replica that dies,
drains, is slower or serves another model; settings; what stats, metrics and events say per replica."""

from __future__ import annotations

import logging
import re
from typing import Any

import anyio
import pytest

from resilient_llm import AsyncOpenAI, BreakerConfig, ConfigError
from resilient_llm.demo._run import library_settings
from resilient_llm.testing import (
    ReplicaFaults,
    SimulatedReplicas,
    SimulatorConfig,
    SimulatorThread,
    VLLMSimulator,
)

pytestmark = [pytest.mark.anyio, pytest.mark.integration, pytest.mark.timeout(60)]

SCALE = 0.01
MODEL = "openai/gpt-oss-20b"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def sim_config(**kw: Any) -> SimulatorConfig:
    base: dict[str, Any] = {"capacity": 4, "time_scale": SCALE, "tick": 0.002, "seed": 7, "output_tokens": 64}
    return SimulatorConfig(**{**base, **kw})


def make_client(urls: list[str], **overrides: Any) -> AsyncOpenAI:
    settings = library_settings(SCALE)
    settings.update(overrides)
    return AsyncOpenAI(api_key="EMPTY", replicas=urls, **settings)


async def chat(client: AsyncOpenAI, model: str = MODEL, tokens: int = 64) -> str | None:
    r = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "x"}],
        extra_body={"simulator": {"output_tokens": tokens}},
    )
    return r.choices[0].message.content


async def many(client: AsyncOpenAI, n: int, *, every: float = 0.0, **kw: Any) -> list[Any]:
    """``n`` calls, one started every ``every`` seconds; each result or the exception it raised."""
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        try:
            results[i] = await chat(client, **kw)
        except Exception as exc:
            results[i] = exc

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
            if every:
                await anyio.sleep(every)
    return results


async def test_three_replicas_one_killed_mid_run_every_call_ok_none_hung() -> None:
    # 64 tokens x 0.02 s x 0.01: ~13 ms a call; replica 1 dies 0.3 s into a run of about a second
    faults = {1: ReplicaFaults(die_at=30.0)}
    async with SimulatedReplicas(sim_config(), replicas=3, faults=faults) as fleet:
        client = make_client(fleet.base_urls, max_concurrency=4)
        with anyio.fail_after(30):  # none hung: the whole run ends long before this
            results = await many(client, 150, every=0.005)
        stats = client.stats()
        received = [s.requests_received for s in fleet.stats()]
        await client.close()
    assert all(isinstance(r, str) for r in results), [r for r in results if not isinstance(r, str)][:3]
    assert stats.calls_ok == 150 and stats.calls_failed == 0
    dead = stats.replicas[1]
    assert dead.breaker_state in ("open", "half_open")  # taken out
    assert dead.failures >= 1
    served_before_dying = dead.attempts - dead.failures
    assert received[0] + received[2] + served_before_dying >= 150  # the survivors served the rest


async def test_a_replica_twice_as_slow_receives_measurably_fewer_requests() -> None:
    faults = {2: ReplicaFaults(slowdown=2.0)}
    # 100 tokens x 0.02 s x 0.05: 100 ms a call, 200 ms on the slow replica; 24 slots, 120 calls
    async with SimulatedReplicas(sim_config(capacity=8, time_scale=0.05), replicas=3, faults=faults) as fleet:
        client = make_client(fleet.base_urls, max_concurrency=8)
        results = await many(client, 120, tokens=100)
        received = [s.requests_received for s in fleet.stats()]
        await client.close()
    assert all(isinstance(r, str) for r in results)
    fast = (received[0] + received[1]) / 2
    assert received[2] < 0.8 * fast, received  # measured: about half as many


async def test_a_draining_replica_is_taken_out_and_ramped_back_in_when_it_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="resilient_llm")
    events: list[Any] = []
    async with SimulatedReplicas(sim_config(), replicas=2) as fleet:
        urls = fleet.base_urls
        client = make_client(urls, max_concurrency=4, ramp_up=0.5, hooks=[events.append])
        fleet.drain(0)  # 503s from now on
        first = await many(client, 40, every=0.002)
        during = client.stats().replicas[0]
        fleet.drain(0, False)
        await anyio.sleep(0.6)  # past the breaker's cooldown (scaled), probes find it back
        second = await many(client, 80, every=0.005)
        after = client.stats().replicas[0]
        await client.close()
    assert all(isinstance(r, str) for r in first + second), [
        r for r in first + second if not isinstance(r, str)
    ]
    assert during.breaker_state in ("open", "half_open")
    assert after.breaker_state == "closed" and after.attempts > during.attempts + 10  # back in use
    transitions = [e for e in events if type(e).__name__ == "BreakerTransition"]
    assert {e.replica for e in transitions} == {urls[0]}  # every event names its replica
    retries = [e for e in events if type(e).__name__ == "RetryScheduled"]
    assert retries and all(e.replica == urls[0] for e in retries)


async def test_a_retry_goes_to_another_replica() -> None:
    async with SimulatedReplicas(sim_config(fault_script=["500"] * 10), replicas=2) as fleet:
        # Four calls in flight go through the twenty failures in step (five each): up to eight retries
        # leave room for that, and still fewer than the eleven a call would need on one replica.
        client = make_client(fleet.base_urls, max_concurrency=4, max_retries=8)
        results = await many(client, 6)
        received = [s.requests_received for s in fleet.stats()]
        stats = client.stats()
        await client.close()
    # each replica fails its first ten attempts: a call that retried on the same replica every
    # time could not finish; the retry's preference for the other one lets every call through
    assert all(isinstance(r, str) for r in results), [r for r in results if not isinstance(r, str)]
    assert stats.retries >= 1 and sum(received) == stats.attempts


async def test_a_replica_that_does_not_serve_the_model_is_not_chosen() -> None:
    async with (
        VLLMSimulator(sim_config(model="small")) as small,
        VLLMSimulator(sim_config(model="big")) as big,
        VLLMSimulator(sim_config(model="big")) as big2,
    ):
        urls = [small.base_url, big.base_url, big2.base_url]
        client = make_client(urls, max_concurrency=4)
        results = await many(client, 40, model="big")  # the first call reads every /v1/models
        smalls = await many(client, 10, model="small")
        stats = client.stats()
        received = small.stats().requests_received
        await client.close()
    assert all(isinstance(r, str) for r in results + smalls)
    assert [r.models for r in stats.replicas] == [("small",), ("big",), ("big",)]
    assert received == 10  # only the calls for its model


async def test_stats_and_metrics_show_every_replica() -> None:
    async with SimulatedReplicas(sim_config(), replicas=3) as fleet:
        urls = fleet.base_urls
        client = make_client(urls, max_concurrency=4)
        await many(client, 12)
        stats = client.stats()
        text = client.metrics().decode()
        await client.close()
    assert [r.url for r in stats.replicas] == urls
    assert stats.coordination == "off"
    assert sum(r.attempts for r in stats.replicas) == stats.attempts == 12
    assert stats.capacity == sum(r.capacity for r in stats.replicas)
    for url in urls:
        assert f'resilient_llm_replica_attempts_total{{replica="{url}"}}' in text
        assert f'resilient_llm_replica_breaker_state{{replica="{url}",state="closed"}} 1.0' in text


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_replicas_on_trio_one_down_every_call_ok(anyio_backend: str) -> None:
    with (
        SimulatorThread(sim_config()) as a,
        SimulatorThread(sim_config(restart_down_for=1e6)) as b,
        SimulatorThread(sim_config()) as c,
    ):
        client = make_client([a.base_url, b.base_url, c.base_url], max_concurrency=4)
        await many(client, 12)
        b.restart()  # down, for good as far as this test goes
        with anyio.fail_after(30):
            results = await many(client, 60, every=0.002)
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) for r in results)
    assert stats.replicas[1].breaker_state in ("open", "half_open")


# --- settings ---------------------------------------------------------------------------------------


def test_base_url_must_be_one_of_the_replicas() -> None:
    urls = ["http://127.0.0.1:8001/v1", "http://127.0.0.1:8002/v1"]
    with pytest.raises(
        ConfigError, match=re.escape("base_url 'http://127.0.0.1:9/v1' is not one of the replicas")
    ):
        AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1", replicas=urls)
    client = AsyncOpenAI(api_key="k", base_url=urls[1] + "/", replicas=urls)
    assert str(client.base_url).rstrip("/") == urls[1] and client.replicas == tuple(urls)
    assert str(AsyncOpenAI(api_key="k", replicas=urls).base_url).rstrip("/") == urls[0]


@pytest.mark.parametrize(
    ("replicas", "message"),
    [
        ([], r"^AsyncOpenAI: replicas must be a list of at least one base URL, got \[\]$"),
        ("http://a/v1", r"^AsyncOpenAI: replicas must be a list of base URLs, got 'http://a/v1'$"),
        (
            ["http://a/v1", "ftp://b/v1"],
            r"^AsyncOpenAI: replicas\[1\] must be an http\(s\) URL with a host, got 'ftp://b/v1'$",
        ),
        (
            ["http://a/v1", "http://a/v1/"],
            r"replicas\[1\] must be a server not listed before \(replicas\[0\] is the same\)",
        ),
        (["http://user:secret@a/v1", 3], r"replicas\[1\]"),
    ],
)
def test_bad_replicas_are_refused_naming_the_argument(replicas: Any, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        AsyncOpenAI(api_key="k", replicas=replicas)
    assert "secret" not in str(info.value)


def test_replicas_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENT_LLM_REPLICAS", " http://a:8000/v1 , http://b:8000/v1,")
    assert AsyncOpenAI(api_key="k").replicas == ("http://a:8000/v1", "http://b:8000/v1")
    assert AsyncOpenAI(api_key="k", replicas=None).replicas == ("https://api.openai.com/v1",)


def test_one_metrics_url_for_several_replicas_is_refused() -> None:
    with pytest.raises(ConfigError, match="metrics_url"):
        AsyncOpenAI(
            api_key="k",
            replicas=["http://a/v1", "http://b/v1"],
            breaker=BreakerConfig(metrics_url="http://a/metrics"),
        )


def test_copies_share_the_replicas_and_a_copy_to_another_server_has_it_alone() -> None:
    client = AsyncOpenAI(api_key="k", replicas=["http://a/v1", "http://b/v1"], max_concurrency=3)
    same = client.with_options(deadline=5)
    other = client.with_options(base_url="http://c/v1")
    assert same._engine is client._engine and same.replicas == client.replicas
    assert other._engine is not client._engine and other.replicas == ("http://c/v1",)
    with pytest.raises(ConfigError, match="replicas"):
        client.with_options(replicas=["http://c/v1"])
