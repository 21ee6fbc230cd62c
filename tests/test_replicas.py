"""Simulated replicas: consecutive ports, a replica that dies, one that drains, a slower one, peaks."""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from resilient_llm._exceptions import ConfigError
from resilient_llm.cli import _simulate
from resilient_llm.testing import ReplicaFaults, SimulatedReplicas, SimulatorConfig

pytestmark = [pytest.mark.integration, pytest.mark.anyio, pytest.mark.timeout(20)]

FAST: dict[str, Any] = {"time_scale": 0.01, "tick": 0.002, "sample_interval": 1.0}
BODY = {"model": "openai/gpt-oss-20b", "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the simulator serves on the running asyncio loop


async def post(client: httpx.AsyncClient, base_url: str, **extra: Any) -> httpx.Response:
    return await client.post(base_url + "/chat/completions", json={**BODY, **extra})


async def test_replicas_listen_on_consecutive_ports_and_count_in_flight_requests() -> None:
    async with (
        SimulatedReplicas(SimulatorConfig(**FAST), replicas=3) as fleet,
        httpx.AsyncClient(timeout=5) as client,
    ):
        first = fleet.ports[0]
        assert fleet.ports == [first, first + 1, first + 2] and len(fleet) == 3
        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(post, client, fleet.base_urls[i % 3])
        assert [s.requests_completed for s in fleet.stats()] == [2, 2, 2]
        assert [s.peak_in_flight for s in fleet.stats()] == [2, 2, 2]
        assert fleet.peak_in_flight == 6 and fleet.in_flight == 0


async def test_a_replica_dies_mid_run_and_refuses_connections_from_then_on() -> None:
    faults = {1: ReplicaFaults(die_at=20.0)}  # 20 simulated seconds = 0.2 s
    async with SimulatedReplicas(SimulatorConfig(**FAST), replicas=2, faults=faults) as fleet:
        async with httpx.AsyncClient(timeout=5) as client:
            assert (await post(client, fleet.base_urls[1])).status_code == 200
            await anyio.sleep(0.3)
            with pytest.raises(httpx.ConnectError):
                await post(client, fleet.base_urls[1])
            assert (await post(client, fleet.base_urls[0])).status_code == 200
        assert fleet.stats()[1].requests_completed == 1


async def test_a_draining_replica_finishes_running_requests_and_refuses_new_ones() -> None:
    async with (
        SimulatedReplicas(SimulatorConfig(**FAST), replicas=2) as fleet,
        httpx.AsyncClient(timeout=5) as client,
    ):
        url = fleet.base_urls[0]
        async with anyio.create_task_group() as tg:
            running: list[httpx.Response] = []

            async def long_call() -> None:
                running.append(await post(client, url, max_tokens=2000, simulator={"output_tokens": 2000}))

            tg.start_soon(long_call)
            await anyio.sleep(0.05)
            fleet.drain(0)
            refused = await post(client, url)
            health = await client.get(fleet.urls[0] + "/health")
        assert running[0].status_code == 200  # the running one finished
        assert refused.status_code == 503 and refused.json()["error"]["code"] == 503
        assert health.status_code == 503
        assert (await client.get(fleet.urls[1] + "/health")).status_code == 200


async def test_a_slower_replica_takes_twice_as_long() -> None:
    faults = {1: ReplicaFaults(slowdown=2.0)}
    async with SimulatedReplicas(SimulatorConfig(**FAST), replicas=2, faults=faults) as fleet:
        async with httpx.AsyncClient(timeout=5) as client:
            took = []
            for url in fleet.base_urls:
                start = anyio.current_time()
                assert (await post(client, url)).status_code == 200
                took.append(anyio.current_time() - start)
    assert 1.6 < took[1] / took[0] < 2.5, took


async def test_timed_drain_and_per_replica_faults() -> None:
    faults = {0: ReplicaFaults(drain_at=0.0), 2: ReplicaFaults(faults={"500": 1.0})}
    async with SimulatedReplicas(SimulatorConfig(**FAST), replicas=3, faults=faults) as fleet:
        await anyio.sleep(0.05)
        async with httpx.AsyncClient(timeout=5) as client:
            statuses = [(await post(client, url)).status_code for url in fleet.base_urls]
    assert statuses == [503, 200, 500]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"replicas": 0}, "SimulatedReplicas: replicas must be an integer >= 1, got 0"),
        (
            {"replicas": 2, "faults": {2: ReplicaFaults()}},
            "SimulatedReplicas: faults key must be a replica index in 0..1, got 2",
        ),
        (
            {"replicas": 2, "faults": {1: 0.5}},
            "SimulatedReplicas: faults[1] must be a ReplicaFaults, got 0.5",
        ),
    ],
)
def test_bad_replica_settings_name_the_argument(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        SimulatedReplicas(SimulatorConfig(), **kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(("kwargs", "named"), [({"slowdown": 0}, "slowdown"), ({"die_at": -1.0}, "die_at")])
def test_bad_replica_faults_name_the_argument(kwargs: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=f"ReplicaFaults: {named} must be"):
        ReplicaFaults(**kwargs)


def test_the_cli_takes_a_replica_count() -> None:
    import argparse

    parser = argparse.ArgumentParser()
    _simulate.add_parser(parser.add_subparsers())
    assert parser.parse_args(["simulate", "--replicas", "3"]).replicas == 3
    assert parser.parse_args(["simulate"]).replicas == 1
