"""Every fault of the simulated vLLM, seen from a client on a real loopback socket."""

from __future__ import annotations

import itertools
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from resilient_llm.testing import SimulatorConfig, VLLMSimulator

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]

FAST: dict[str, Any] = {"time_scale": 0.01, "tick": 0.002, "token_time": 0.02}
SILENCE = httpx.Timeout(5.0, read=0.3)  # how long a test listens to a silent server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[tuple[VLLMSimulator, httpx.AsyncClient]]:
    async with VLLMSimulator(SimulatorConfig(**{**FAST, **overrides})) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=SILENCE) as client:
            yield sim, client


def chat(fault: str | None = None, tokens: int = 200, **extra: Any) -> dict[str, Any]:
    return {
        "messages": [{"role": "user", "content": "hi"}],
        "simulator": {"output_tokens": tokens, "fault": fault},
        **extra,
    }


async def read_stream(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> tuple[list[str], BaseException | None]:
    """The SSE payloads received, and the error that ended the stream (``None`` if it ended cleanly)."""
    payloads: list[str] = []
    try:
        async with client.stream("POST", "/chat/completions", json={**body, "stream": True}) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    payloads.append(line.removeprefix("data: "))
    except httpx.HTTPError as exc:
        return payloads, exc
    return payloads, None


async def running_waiting(sim: VLLMSimulator) -> tuple[float, float]:
    async with httpx.AsyncClient() as client:
        text = (await client.get(sim.url + "/metrics")).text
    values = {f.name: sum(s.value for s in f.samples) for f in text_string_to_metric_families(text)}
    return values["vllm:num_requests_running"], values["vllm:num_requests_waiting"]


def tokens_in(payloads: list[str]) -> int:
    chunks = [json.loads(p) for p in payloads if p != "[DONE]"]
    return sum(len(c["choices"][0]["delta"].get("content") or "") > 0 for c in chunks if c.get("choices"))


# -- status faults ----------------------------------------------------------------------------------
@pytest.mark.anyio
@pytest.mark.parametrize(
    ("fault", "status", "retry_after"),
    [("503", 503, None), ("429", 429, "1"), ("500", 500, None)],
)
async def test_status_faults(fault: str, status: int, retry_after: str | None) -> None:
    async with serve(retry_after=30.0) as (sim, client):
        response = await client.post("/chat/completions", json=chat(fault))
        assert sim.stats().faults_injected == {fault: 1}
    assert response.status_code == status
    assert response.headers.get("retry-after") == retry_after
    if retry_after is not None:
        assert response.headers["retry-after-ms"] == "300"  # 30 simulated seconds at time_scale 0.01
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert response.json()["error"]["code"] == status


@pytest.mark.anyio
async def test_full_queue_answers_503_like_max_num_queued_reqs() -> None:
    async with serve(capacity=1, max_queued=2) as (sim, client):  # the limit counts running + waiting
        async with anyio.create_task_group() as tg:
            for _ in range(2):
                tg.start_soon(_post, client, chat(tokens=5000))
            with anyio.fail_after(2):
                while sim.running + sim.waiting < 2:
                    await anyio.sleep(0.002)
            rejected = await client.post("/chat/completions", json=chat(tokens=5))
            payloads, error = await read_stream(client, chat(tokens=5))
            text = (await client.get(sim.url + "/metrics")).text
            tg.cancel_scope.cancel()
    assert rejected.status_code == 503 and "retry-after" not in rejected.headers
    assert rejected.json()["error"]["type"] == "Service Unavailable"
    # a stream is refused inside a 200: its only event is the error
    assert error is None and len(payloads) == 2 and payloads[1] == "[DONE]"
    assert json.loads(payloads[0])["error"]["code"] == 503
    assert (
        'vllm:admission_rejections_total{model_name="openai/gpt-oss-20b",reason="max_num_queued_reqs"} 2.0'
        in text
    )


async def _post(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    await client.post("/chat/completions", json=body, timeout=10)


# -- silent faults ----------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_lost_request_is_never_answered_and_never_in_metrics() -> None:
    async with serve() as (sim, client):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_expect_timeout, client, chat("lost"))
            await anyio.sleep(0.1)
            assert await running_waiting(sim) == (0, 0)
        payloads, error = await read_stream(client, chat("lost"))
        assert sim.stats().faults_injected == {"lost": 2}
    assert payloads == [] and isinstance(error, httpx.ReadTimeout)


async def _expect_dropped(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await client.post("/chat/completions", json=body)


async def _expect_timeout(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    with pytest.raises(httpx.ReadTimeout):
        await client.post("/chat/completions", json=body)


@pytest.mark.anyio
async def test_ghost_runs_in_metrics_then_never_answers() -> None:
    async with serve() as (sim, client):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_expect_timeout, client, chat("ghost", tokens=1000))  # 0.2 s of generation
            await anyio.sleep(0.1)
            assert await running_waiting(sim) == (1, 0)
            await anyio.sleep(0.15)
            assert await running_waiting(sim) == (0, 0)  # the server is idle, the client still waits
            assert sim.stats().tokens_wasted == 1000
        payloads, error = await read_stream(client, chat("ghost", tokens=100))
        await anyio.sleep(0.01)
        stats = sim.stats()
    assert isinstance(error, httpx.ReadTimeout)
    assert tokens_in(payloads) >= 1 and "[DONE]" not in payloads
    assert stats.tokens_delivered + stats.tokens_wasted == stats.tokens_generated == 1100
    assert 1000 < stats.tokens_wasted < 1100


@pytest.mark.anyio
async def test_drop_closes_the_connection() -> None:
    async with serve() as (sim, client):
        with pytest.raises(httpx.RemoteProtocolError):
            await client.post("/chat/completions", json=chat("drop"))
        payloads, error = await read_stream(client, chat("drop", tokens=400))
        ok = await client.post("/chat/completions", json=chat(tokens=5))  # the server is fine
        stats = sim.stats()
    assert isinstance(error, httpx.RemoteProtocolError)
    assert payloads and "[DONE]" not in payloads
    assert ok.status_code == 200
    assert stats.tokens_wasted > 0 and stats.requests_aborted == 0


@pytest.mark.anyio
async def test_truncated_body_and_stream() -> None:
    async with serve() as (_, client):
        response = await client.post("/chat/completions", json=chat("truncated"))
        payloads, error = await read_stream(client, chat("truncated", tokens=400))
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert error is None and payloads and "[DONE]" not in payloads
    assert all("usage" not in json.loads(p) for p in payloads)


@pytest.mark.anyio
async def test_error_chunk_mid_stream() -> None:
    async with serve() as (_, client):
        payloads, error = await read_stream(client, chat("error_chunk", tokens=400))
        plain = await client.post("/chat/completions", json=chat("error_chunk"))
    assert error is None and payloads[-1] == "[DONE]"
    last = json.loads(payloads[-2])
    assert set(last) == {"error"} and set(last["error"]) == {"message", "type", "param", "code"}
    assert tokens_in(payloads[:-2]) >= 1
    assert plain.status_code == 500


@pytest.mark.anyio
async def test_slow_trickles_but_never_goes_silent_past_the_gap() -> None:
    async with serve(slow_factor=1000.0, slow_max_gap=5.0) as (_, client):  # gap 0.05 s real
        started, arrivals = time.monotonic(), []
        async with client.stream(
            "POST", "/chat/completions", json={**chat("slow", tokens=12), "stream": True}
        ) as r:
            async for _ in r.aiter_lines():
                arrivals.append(time.monotonic())
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert arrivals[-1] - started > 0.4  # 12 tokens, one per 0.05 s (normal: 12 × 0.2 ms)
    assert max(gaps) < 0.05 + 0.04


# -- server-wide faults -----------------------------------------------------------------------------
@pytest.mark.anyio
async def test_restart_refuses_connections_then_comes_back_empty() -> None:
    async with serve(restart_down_for=30.0) as (sim, client):  # 0.3 s down
        async with anyio.create_task_group() as tg:
            tg.start_soon(_expect_dropped, client, chat(tokens=10000))  # in flight: lost with the restart
            await anyio.sleep(0.05)
            with pytest.raises(httpx.RemoteProtocolError):  # this attempt triggers the restart
                await client.post("/chat/completions", json=chat("restart"))
        assert not sim.is_up
        with pytest.raises(httpx.ConnectError):
            await client.get(sim.url + "/health")
        with anyio.fail_after(2):
            await sim.wait_up()
        health = await client.get(sim.url + "/health")
        assert await running_waiting(sim) == (0, 0)
        stats = sim.stats()
    assert health.status_code == 200
    assert stats.restarts == 1 and stats.faults_injected == {"restart": 1}
    assert stats.tokens_wasted > 0


@pytest.mark.anyio
async def test_restart_from_python() -> None:
    async with serve() as (sim, client):
        await sim.restart(down_for=20.0)
        with pytest.raises(httpx.ConnectError):
            await client.get(sim.url + "/health")
        with anyio.fail_after(2):
            await sim.wait_up()
        assert (await client.get(sim.url + "/health")).status_code == 200


@pytest.mark.anyio
async def test_dead_engine() -> None:
    async with serve() as (sim, client):
        async with anyio.create_task_group() as tg:
            tg.start_soon(_expect_timeout, client, chat(tokens=2000))
            with anyio.fail_after(2):
                while sim.running == 0:
                    await anyio.sleep(0.002)
            sim.set_engine_dead()  # the running request goes silent
            health = await client.get(sim.url + "/health")
            refused = await client.post("/chat/completions", json=chat())
        sim.set_engine_dead(False)
        after = await client.post("/chat/completions", json=chat(tokens=5))
    assert health.status_code == 503 and refused.status_code == 500
    assert after.status_code == 200


@pytest.mark.anyio
async def test_metrics_modes_from_python() -> None:
    async with serve() as (sim, client):
        sim.set_metrics_mode("frozen")
        async with anyio.create_task_group() as tg:
            tg.start_soon(_post, client, chat(tokens=3000))
            await anyio.sleep(0.05)
            frozen = await running_waiting(sim)
            sim.set_metrics_mode("ok")
            live = await running_waiting(sim)
            sim.set_metrics_mode("missing")
            missing = await client.get(sim.url + "/metrics")
            tg.cancel_scope.cancel()
    assert frozen == (0, 0) and live == (1, 0)
    assert missing.status_code == 404


@pytest.mark.anyio
@pytest.mark.parametrize(("fault", "status"), [("metrics_missing", 404), ("metrics_frozen", 200)])
async def test_metrics_faults_by_probability(fault: str, status: int) -> None:
    async with serve(faults={fault: 1.0}) as (sim, client):
        first = await client.get(sim.url + "/metrics")
        await client.post("/chat/completions", json=chat(tokens=5))
        second = await client.get(sim.url + "/metrics")
        stats = sim.stats()
    assert first.status_code == second.status_code == status
    if fault == "metrics_frozen":  # the second scrape repeats the first: the 5 new tokens do not show
        assert second.text == first.text and "vllm:generation_tokens_total" in first.text
    assert stats.faults_injected == {fault: 2}


@pytest.mark.anyio
async def test_fault_script_applies_in_arrival_order() -> None:
    async with serve(fault_script=("500", None, "429")) as (sim, client):
        statuses = [
            (await client.post("/chat/completions", json=chat(tokens=3))).status_code for _ in range(4)
        ]
        explicit = await client.post("/chat/completions", json=chat("503", tokens=3))
        stats = sim.stats()
    assert statuses == [500, 200, 429, 200]
    assert explicit.status_code == 503
    assert stats.faults_injected == {"500": 1, "429": 1, "503": 1}


# -- a client that goes away ------------------------------------------------------------------------
@pytest.mark.anyio
async def test_a_client_gone_mid_stream_aborts_the_request_quietly(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    # vLLM aborts a request whose client went away. A write racing the close raises aiohttp's
    # ClientConnectionResetError ("Cannot write to closing transport"); it must not surface as an
    # "Error handling request" traceback (it did in the demo). The race is forced here: the third
    # write of every stream finds its transport closing.
    from aiohttp import web
    from aiohttp.client_exceptions import ClientConnectionResetError

    real_write = web.StreamResponse.write
    writes: dict[int, int] = {}

    async def write(self: web.StreamResponse, data: bytes) -> None:
        writes[id(self)] = writes.get(id(self), 0) + 1
        if writes[id(self)] == 3:
            raise ClientConnectionResetError("Cannot write to closing transport")
        await real_write(self, data)

    monkeypatch.setattr(web.StreamResponse, "write", write)
    caplog.set_level(logging.WARNING)
    async with serve() as (sim, client):
        payloads, _ = await read_stream(client, chat(tokens=400))
        with anyio.fail_after(5):
            while sim.stats().requests_aborted < 1:
                await anyio.sleep(0.01)
    assert payloads and "[DONE]" not in payloads
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]
