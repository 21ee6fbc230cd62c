"""The simulated vLLM over real loopback sockets: formats against captures, batching, metrics, seeds."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from resilient_llm.testing import (
    LogNormalLength,
    QueueSample,
    SimulatorConfig,
    SimulatorThread,
    VLLMSimulator,
)

FIXTURES = Path(__file__).parent / "fixtures"
MODEL = "openai/gpt-oss-20b"
FAST: dict[str, Any] = {"time_scale": 0.01, "tick": 0.002, "sample_interval": 1.0}

pytestmark = [pytest.mark.integration, pytest.mark.timeout(20)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # VLLMSimulator serves on the running asyncio loop; SimulatorThread covers trio


@asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[tuple[VLLMSimulator, httpx.AsyncClient]]:
    async with VLLMSimulator(SimulatorConfig(**{**FAST, **overrides})) as sim:
        async with httpx.AsyncClient(base_url=sim.url, timeout=5.0) as client:
            yield sim, client


def chat(content: str = "Solve the puzzle.", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": content}], **extra}


def sse_payloads(text: str) -> list[str]:
    return [line.removeprefix("data: ") for line in text.split("\n\n") if line.startswith("data: ")]


def capture_chunks() -> list[Any]:
    payloads = sse_payloads((FIXTURES / "vllm032_chat_stream.sse").read_text())
    return [json.loads(p) for p in payloads if p != "[DONE]"]


async def post_chat(client: httpx.AsyncClient, body: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=body)


async def metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """Each family's total over engines (``_created`` series left out)."""
    response = await client.get("/metrics")
    response.raise_for_status()
    totals: dict[str, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if not sample.name.endswith("_created"):
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    return totals


# -- formats ----------------------------------------------------------------------------------------
@pytest.mark.anyio
async def test_chat_body_has_the_fields_of_a_real_server() -> None:
    real = json.loads((FIXTURES / "vllm032_chat.json").read_text())
    async with serve() as (_, client):
        response = await client.post("/v1/chat/completions", json=chat(max_tokens=40))
    body = response.json()
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert list(body) == list(real)
    assert list(body["choices"][0]) == list(real["choices"][0])
    assert set(body["choices"][0]["message"]) == set(real["choices"][0]["message"]) | {"reasoning_content"}
    assert list(body["usage"]) == list(real["usage"])
    assert body["id"].startswith("chatcmpl-") and body["model"] == MODEL
    assert body["choices"][0]["finish_reason"] == "length"  # default answer (256) > max_tokens
    assert body["usage"]["completion_tokens"] == 40


@pytest.mark.anyio
async def test_chat_stream_has_the_shape_of_a_real_server() -> None:
    real = capture_chunks()
    request = chat(stream=True, stream_options={"include_usage": True}, simulator={"output_tokens": 300})
    async with serve(reasoning_ratio=0.0) as (_, client):
        response = await client.post("/v1/chat/completions", json=request)
    assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    first, middle, last, usage = chunks[0], chunks[1:-2], chunks[-2], chunks[-1]
    assert list(first) == list(real[0]) and first["choices"] == real[0]["choices"]
    assert middle and all(list(chunk) == list(real[1]) for chunk in [*middle, last])
    assert all(list(chunk["choices"][0]) == list(real[1]["choices"][0]) for chunk in middle)
    assert list(last["choices"][0]) == list(real[-2]["choices"][0])
    assert last["choices"][0]["finish_reason"] == "stop"
    assert list(usage) == list(real[-1]) and usage["choices"] == []
    assert usage["usage"] == {"prompt_tokens": 5, "total_tokens": 305, "completion_tokens": 300}
    assert len({c["id"] for c in chunks}) == 1


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("max_tokens", "usage", "finish", "empty_finish_chunk", "fingerprint_on_finish"),
    [
        (None, False, "stop", True, True),
        (None, True, "stop", True, False),
        (10, False, "length", False, True),
        (10, True, "length", False, False),
    ],
)
async def test_finish_chunk_as_vllm_sends_it(
    max_tokens: int | None, usage: bool, finish: str, empty_finish_chunk: bool, fingerprint_on_finish: bool
) -> None:
    request = chat(stream=True, simulator={"output_tokens": 20}, stream_options={"include_usage": usage})
    if max_tokens is not None:
        request["max_tokens"] = max_tokens
    async with serve(reasoning_ratio=0.0) as (_, client):
        response = await client.post("/v1/chat/completions", json=request)
    chunks = [json.loads(p) for p in sse_payloads(response.text)[:-1]]
    last = chunks[-2] if usage else chunks[-1]
    assert last["choices"][0]["finish_reason"] == finish
    assert (last["choices"][0]["delta"] == {"content": ""}) == empty_finish_chunk
    assert ("system_fingerprint" in last) == fingerprint_on_finish
    assert all("system_fingerprint" not in c for c in chunks if c is not last and c["choices"])


@pytest.mark.anyio
async def test_usage_chunk_only_when_asked() -> None:
    async with serve() as (_, client):
        response = await client.post("/v1/chat/completions", json=chat(stream=True, max_tokens=5))
    chunks = [json.loads(p) for p in sse_payloads(response.text)[:-1]]
    assert all(chunk["choices"] for chunk in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("field", "present", "absent"),
    [
        ("both", {"reasoning", "reasoning_content"}, set()),
        ("reasoning", {"reasoning"}, {"reasoning_content"}),
        ("reasoning_content", {"reasoning_content"}, {"reasoning"}),
    ],
)
async def test_reasoning_field(field: str, present: set[str], absent: set[str]) -> None:
    async with serve(reasoning_field=field, reasoning_ratio=0.5) as (_, client):
        body = (await client.post("/v1/chat/completions", json=chat(simulator={"output_tokens": 20}))).json()
        streamed = await client.post(
            "/v1/chat/completions", json=chat(stream=True, simulator={"output_tokens": 20})
        )
    message = body["choices"][0]["message"]
    assert {key for key in present if message.get(key)} == present and not absent & set(message)
    deltas = [json.loads(p)["choices"][0]["delta"] for p in sse_payloads(streamed.text)[1:-1]]
    reasoning = [d for d in deltas if "content" not in d]
    assert reasoning and all(set(d) == present for d in reasoning)
    assert len({d[key] for d in reasoning for key in present} - {""}) >= 1
    assert "".join(d.get("content", "") for d in deltas)


@pytest.mark.anyio
async def test_json_object_answers_are_valid_json_unless_cut_by_max_tokens() -> None:
    fmt = {"type": "json_object"}
    async with serve() as (_, client):
        whole = await client.post(
            "/v1/chat/completions",
            json=chat(response_format=fmt, max_tokens=500, simulator={"output_tokens": 300}),
        )
        cut = await client.post(
            "/v1/chat/completions",
            json=chat(response_format=fmt, max_tokens=200, simulator={"output_tokens": 300}),
        )
        streamed = await client.post(
            "/v1/chat/completions",
            json=chat(response_format=fmt, stream=True, simulator={"output_tokens": 300}),
        )
    choice = whole.json()["choices"][0]
    assert choice["finish_reason"] == "stop" and whole.json()["usage"]["completion_tokens"] == 300
    answer = json.loads(choice["message"]["content"])
    assert {
        "instructions",
        "grid",
        "reasoning_for_why_old_instructions_are_wrong",
        "revised_instructions",
    } <= set(answer)
    assert cut.json()["choices"][0]["finish_reason"] == "length"
    assert cut.json()["usage"]["completion_tokens"] == 200
    content = cut.json()["choices"][0]["message"]["content"]
    with pytest.raises(json.JSONDecodeError):
        json.loads(content)
    deltas = [json.loads(p)["choices"][0]["delta"] for p in sse_payloads(streamed.text)[1:-1]]
    assert set(json.loads("".join(d.get("content", "") for d in deltas))) == set(answer)


@pytest.mark.anyio
async def test_errors_match_a_real_server() -> None:
    async with serve(max_model_len=8192) as (_, client):
        too_long = await client.post("/v1/chat/completions", json=chat(max_tokens=100000))
        unknown = await client.post("/v1/chat/completions", json={**chat(), "model": "nope"})
        bad_json = await client.post("/v1/chat/completions", content=b"{not json")
        bad_fault = await client.post("/v1/chat/completions", json=chat(simulator={"fault": "gremlins"}))
    assert (too_long.status_code, too_long.json()) == (
        400,
        json.loads((FIXTURES / "vllm032_error_400.json").read_text()),
    )
    assert (unknown.status_code, unknown.json()) == (
        404,
        json.loads((FIXTURES / "vllm032_error_404.json").read_text()),
    )
    assert bad_json.status_code == 400 and set(bad_json.json()["error"]) == {
        "message",
        "type",
        "param",
        "code",
    }
    assert bad_fault.status_code == 400 and "gremlins" in bad_fault.json()["error"]["message"]


@pytest.mark.anyio
async def test_validation_errors_paths_and_request_ids_as_vllm() -> None:
    async with serve() as (_, client):
        invalid = await client.post("/v1/chat/completions", json={"messages": "hi"})
        not_found = await client.get("/v1/nothing")
        wrong_method = await client.get("/v1/chat/completions")
        named = await client.post(
            "/v1/chat/completions", json=chat(max_tokens=2), headers={"X-Request-Id": "r-1"}
        )
    assert invalid.status_code == 400
    assert (
        invalid.json()["error"]["type"] == "Bad Request"
        and invalid.json()["error"]["param"] == "body.messages"
    )
    assert (not_found.status_code, not_found.json()) == (404, {"detail": "Not Found"})
    assert (wrong_method.status_code, wrong_method.json()) == (405, {"detail": "Method Not Allowed"})
    # as vLLM with --enable-request-id-headers: the client's id echoed, else one of the server's
    assert named.json()["id"] == "chatcmpl-r-1" and named.headers["x-request-id"] == "r-1"
    assert all(r.headers["x-request-id"] for r in (invalid, not_found, wrong_method))


@pytest.mark.anyio
async def test_other_endpoints() -> None:
    async with serve(embedding_dim=8) as (_, client):
        text = await client.post("/v1/completions", json={"model": MODEL, "prompt": "Once", "max_tokens": 7})
        text_stream = await client.post(
            "/v1/completions",
            json={
                "prompt": "Once",
                "max_tokens": 7,
                "stream": True,
                "stream_options": {"include_usage": True},
            },
        )
        embeddings = await client.post("/v1/embeddings", json={"model": MODEL, "input": ["a", "b"]})
        models = await client.get("/v1/models")
        version = await client.get("/version")
        health = await client.get("/health")
        stats = await client.get("/simulator/stats")
    body = text.json()
    assert body["object"] == "text_completion" and body["usage"]["completion_tokens"] == 7
    chunks = [json.loads(p) for p in sse_payloads(text_stream.text)[:-1]]
    assert "".join(c["choices"][0]["text"] for c in chunks[:-1]) and chunks[-2]["choices"][0]["finish_reason"]
    assert chunks[-1]["usage"]["completion_tokens"] == 7
    vectors = [d["embedding"] for d in embeddings.json()["data"]]
    assert len(vectors) == 2 and all(len(v) == 8 for v in vectors) and vectors[0] != vectors[1]
    assert models.json()["data"][0]["id"] == MODEL
    assert version.json() == {"version": "0.32.0"}
    assert health.status_code == 200
    assert stats.json()["requests_received"] == 3 and stats.json()["requests_completed"] == 3


# -- the engine through HTTP ------------------------------------------------------------------------
@pytest.mark.anyio
async def test_batching_runs_capacity_at_once_and_queues_fifo() -> None:
    done: list[int] = []
    async with serve(capacity=2, token_time=0.02) as (sim, client):

        async def one(i: int) -> None:
            await client.post("/v1/chat/completions", json=chat(simulator={"output_tokens": 500}))
            done.append(i)

        async with anyio.create_task_group() as tg:
            for i in range(6):
                tg.start_soon(one, i)
                await anyio.sleep(0.003)
        stats = sim.stats()
    assert stats.peak_running == 2 and stats.peak_waiting == 4
    assert sorted(done[:2]) == [0, 1] and sorted(done[2:4]) == [2, 3] and sorted(done[4:]) == [4, 5]


@pytest.mark.anyio
async def test_stream_headers_come_at_once_tokens_only_once_scheduled() -> None:
    async with serve(capacity=1, token_time=0.02) as (sim, client):
        async with anyio.create_task_group() as tg:
            tg.start_soon(post_chat, client, chat(simulator={"output_tokens": 1500}))
            await anyio.sleep(0.02)
            started = time.monotonic()
            async with client.stream("POST", "/v1/chat/completions", json=chat(stream=True)) as response:
                headers_after = time.monotonic() - started
                assert sim.waiting == 1
                async for _ in response.aiter_bytes():
                    first_after = time.monotonic() - started
                    break
    assert headers_after < 0.1
    assert first_after > 0.2  # the first request's 1500 tokens take 0.3 s


@pytest.mark.anyio
async def test_client_disconnect_aborts_and_frees_the_slot() -> None:
    async with serve(capacity=1, token_time=0.02) as (sim, client):
        async with client.stream(
            "POST", "/v1/chat/completions", json=chat(stream=True, simulator={"output_tokens": 100000})
        ) as response:
            async for _ in response.aiter_bytes():
                break
        with anyio.fail_after(2):
            follow = await client.post("/v1/chat/completions", json=chat(simulator={"output_tokens": 10}))
        assert follow.status_code == 200
        totals = await metrics(client)
        stats = sim.stats()
    assert stats.requests_aborted == 1
    assert stats.tokens_wasted > 0
    assert stats.tokens_generated == stats.tokens_delivered + stats.tokens_wasted
    assert totals["vllm:request_success_total"] == 1  # vLLM 0.32 does not count aborts there
    assert totals["vllm:num_requests_running"] == 0


@pytest.mark.anyio
async def test_metrics_split_over_engines() -> None:
    async with serve(engines=3, capacity=1, token_time=0.02) as (_, client):
        async with anyio.create_task_group() as tg:
            for _ in range(5):
                tg.start_soon(post_chat, client, chat(simulator={"output_tokens": 2000}))
            await anyio.sleep(0.1)
            response = await client.get("/metrics")
            tg.cancel_scope.cancel()
    running = {}
    for family in text_string_to_metric_families(response.text):
        if family.name == "vllm:num_requests_running":
            running = {s.labels["engine"]: s.value for s in family.samples}
        if family.name == "vllm:num_requests_waiting":
            waiting = sum(s.value for s in family.samples)
    assert running == {"0": 1.0, "1": 1.0, "2": 1.0}
    assert waiting == 2


@pytest.mark.anyio
async def test_metrics_lag_behind_the_engine() -> None:
    async with serve(capacity=8, token_time=0.02, metrics_lag=30.0, sample_interval=1.0) as (sim, client):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(post_chat, client, chat(simulator={"output_tokens": 5000}))
            await anyio.sleep(0.05)
            assert sim.running == 3
            early = await metrics(client)
            await anyio.sleep(0.35)  # 30 simulated seconds = 0.3 s
            late = await metrics(client)
            tg.cancel_scope.cancel()
    assert early["vllm:num_requests_running"] == 0
    assert late["vllm:num_requests_running"] == 3


@pytest.mark.anyio
async def test_metrics_lag_on_arrivals_only() -> None:
    config = {"capacity": 8, "token_time": 0.02, "metrics_lag": 30.0, "metrics_lag_mode": "arrivals"}
    async with serve(**config) as (sim, client):
        async with anyio.create_task_group() as tg:
            tg.start_soon(post_chat, client, chat(simulator={"output_tokens": 2000}))  # 0.4 s
            await anyio.sleep(0.05)
            hidden = await metrics(client)
            await anyio.sleep(0.3)
            shown = await metrics(client)
        gone = await metrics(client)  # finished: gone at once, no lag on departures
        assert sim.running == 0
    assert hidden["vllm:num_requests_running"] == 0
    assert shown["vllm:num_requests_running"] == 1
    assert gone["vllm:num_requests_running"] == 0


@pytest.mark.anyio
async def test_metrics_lag_in_steps_grows_with_the_burst() -> None:
    # 5 simulated seconds (0.05 s here) per request a step sees. 10 sent at once: the first has a step
    # to itself, so nothing more than it shows before 0.1 s; the others, seen by the next step(s), all
    # show within 2 x 10 x 0.05 s of the last one's arrival.
    config = {"capacity": 32, "token_time": 0.02, "metrics_lag": 5.0, "metrics_lag_mode": "steps"}
    async with serve(**config) as (sim, client):
        async with anyio.create_task_group() as tg:
            for _ in range(10):
                tg.start_soon(post_chat, client, chat(simulator={"output_tokens": 20_000}))
            await anyio.sleep(0.04)
            early = await metrics(client)
            await anyio.sleep(1.5)
            late = await metrics(client)
            assert sim.running == 10
            tg.cancel_scope.cancel()
    assert early["vllm:num_requests_running"] <= 1
    assert late["vllm:num_requests_running"] == 10


@pytest.mark.anyio
async def test_kv_usage_follows_tokens_held() -> None:
    # A budget the answer cannot fill (400 prompt + at most 5000 generated of 100 000 tokens), so the
    # figures hold however slowly this machine runs the generation.
    async with serve(capacity=4, kv_cache_tokens=100_000, token_time=0.02) as (sim, client):
        idle = await metrics(client)
        async with anyio.create_task_group() as tg:
            tg.start_soon(post_chat, client, chat("x" * 1600, simulator={"output_tokens": 5000}))
            with anyio.fail_after(5):
                while sim.running < 1:
                    await anyio.sleep(0.005)
            first = await metrics(client)
            await anyio.sleep(0.1)
            later = await metrics(client)
            tg.cancel_scope.cancel()
    assert idle["vllm:kv_cache_usage_perc"] == 0
    assert 0.004 <= first["vllm:kv_cache_usage_perc"] <= 0.054  # the 400 prompt tokens and what is generated
    assert first["vllm:kv_cache_usage_perc"] < later["vllm:kv_cache_usage_perc"] <= 0.054  # tokens accrue


@pytest.mark.anyio
async def test_samples_and_hook_record_queue_depth() -> None:
    seen: list[QueueSample] = []
    async with serve(capacity=1, token_time=0.02, sample_interval=0.5, on_sample=seen.append) as (
        sim,
        client,
    ):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(post_chat, client, chat(simulator={"output_tokens": 300}))
        await anyio.sleep(0.03)
        samples = sim.samples()
    assert samples == seen[: len(samples)]
    assert max(s.running for s in samples) == 1 and max(s.waiting for s in samples) >= 1
    assert samples[-1].running == samples[-1].waiting == 0
    assert all(a.elapsed < b.elapsed for a, b in itertools.pairwise(samples))


# -- determinism ------------------------------------------------------------------------------------
async def _transcript(seed: int) -> list[tuple[int, int, str]]:
    config = {"seed": seed, "faults": {"500": 0.2, "429": 0.2}, "output_tokens": LogNormalLength(median=50)}
    out = []
    async with serve(**config) as (_, client):
        for _ in range(25):
            response = await client.post("/v1/chat/completions", json=chat(max_tokens=2000))
            body = response.json()
            if response.status_code == 200:
                out.append(
                    (200, body["usage"]["completion_tokens"], body["choices"][0]["message"]["content"])
                )
            else:
                out.append((response.status_code, 0, body["error"]["type"]))
    return out


@pytest.mark.anyio
async def test_same_seed_same_answers_and_faults() -> None:
    first, again, other = await _transcript(3), await _transcript(3), await _transcript(4)
    assert first == again
    assert first != other
    assert {status for status, _, _ in first} == {200, 429, 500}
    assert len({tokens for status, tokens, _ in first if status == 200}) > 3  # lengths vary


# -- from another thread, for trio and sync code ----------------------------------------------------
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.anyio
async def test_simulator_thread_serves_any_event_loop(anyio_backend: str) -> None:
    with SimulatorThread(SimulatorConfig(**FAST)) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=5) as client:
            response = await client.post("/chat/completions", json=chat(max_tokens=3))
            assert response.json()["usage"]["completion_tokens"] == 3
            assert sim.stats().requests_completed == 1
            sim.set_metrics_mode("missing")
            assert (await client.get(sim.url + "/metrics")).status_code == 404
    async with httpx.AsyncClient(timeout=5) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(sim.url + "/health")
