"""The benchmarks' instant stub server: vLLM-shaped answers both ways, ARC JSON, counters, delays."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import aiohttp
import openai
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from benchmarks._stub_server import ARC_ANSWER, COUNTERS_KEY, StubConfig, create_app, split_content
from resilient_llm._vllm._metrics import parse_metrics

ARC_KEYS = {"instructions", "grid", "reasoning_for_why_old_instructions_are_wrong", "revised_instructions"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the stub is an aiohttp application


async def start(config: StubConfig) -> tuple[web.AppRunner, str]:
    app = create_app(config)
    runner = web.AppRunner(app, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}"


@pytest.fixture
async def stub() -> AsyncIterator[tuple[web.AppRunner, str]]:
    runner, root = await start(StubConfig())
    try:
        yield runner, root
    finally:
        await runner.cleanup()


@given(content=st.text(max_size=300), pieces=st.integers(min_value=1, max_value=50))
def test_split_content_keeps_text_and_order(content: str, pieces: int) -> None:
    parts = split_content(content, pieces)
    assert "".join(parts) == content
    if content:
        assert len(parts) == min(pieces, len(content))
        assert all(parts)
        sizes = {len(part) for part in parts}
        assert max(sizes) - min(sizes) <= 1
    else:
        assert parts == [""]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"delay": -1.0}, "delay must be"),
        ({"delay": float("nan")}, "delay must be"),
        ({"token_interval": -0.1}, "token_interval must be"),
        ({"token_interval": float("inf")}, "token_interval must be"),
        ({"chunks": 0}, "chunks must be"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        StubConfig(**kwargs)  # type: ignore[arg-type]


def test_default_answer_carries_every_arc_key() -> None:
    answer = json.loads(StubConfig().content)
    assert set(answer) == ARC_KEYS
    assert answer == ARC_ANSWER
    assert all(isinstance(row, list) and all(isinstance(cell, int) for cell in row) for row in answer["grid"])


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_official_sdk_reads_both_shapes(stub: tuple[web.AppRunner, str]) -> None:
    runner, root = stub
    client = openai.AsyncOpenAI(api_key="k", base_url=f"{root}/v1", max_retries=0)
    try:
        reply = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
        assert set(json.loads(reply.choices[0].message.content or "")) == ARC_KEYS
        assert reply.choices[0].finish_reason == "stop"
        assert reply.usage is not None and reply.usage.completion_tokens == 4

        stream = await client.chat.completions.create(
            model="m",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        text, finishes, usages = "", [], []
        async for chunk in stream:
            if chunk.usage is not None:
                usages.append(chunk.usage.completion_tokens)
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finishes.append(choice.finish_reason)
        assert set(json.loads(text)) == ARC_KEYS
        assert [f for f in finishes if f] == ["stop"]
        assert usages == [4]
    finally:
        await client.close()
    counters = runner.app[COUNTERS_KEY]
    assert (counters.requests, counters.streamed, counters.completed, counters.running) == (2, 1, 2, 0)


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_stream_ends_with_done_and_usage_only_when_asked(stub: tuple[web.AppRunner, str]) -> None:
    _, root = stub
    async with aiohttp.ClientSession() as session:
        body = {"model": "m", "messages": [], "stream": True}
        async with session.post(f"{root}/v1/chat/completions", json=body) as response:
            assert response.headers["Content-Type"].startswith("text/event-stream")
            raw = (await response.read()).decode()
    events = [line.removeprefix("data: ") for line in raw.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(chunk["object"] == "chat.completion.chunk" for chunk in chunks)
    assert not any("usage" in chunk for chunk in chunks)


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_bad_body_gets_a_vllm_shaped_400(stub: tuple[web.AppRunner, str]) -> None:
    _, root = stub
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{root}/v1/chat/completions", data=b"{not json") as response:
            assert response.status == 400
            error = (await response.json())["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == 400


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_metrics_parse_as_vllm_metrics(stub: tuple[web.AppRunner, str]) -> None:
    _, root = stub
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{root}/metrics") as response:
            text = await response.text()
        async with session.get(f"{root}/health") as response:
            assert response.status == 200
    load = parse_metrics(text, scraped_at=0.0)
    assert load is not None
    assert (load.running, load.waiting, load.engines) == (0, 0, 1)


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_disconnect_aborts_a_held_stream() -> None:
    runner, root = await start(StubConfig(delay=30.0))
    counters = runner.app[COUNTERS_KEY]
    try:
        async with aiohttp.ClientSession() as session:
            body = {"model": "m", "messages": [], "stream": True}
            async with session.post(f"{root}/v1/chat/completions", json=body) as response:
                assert response.status == 200  # headers at once, tokens held back
                assert counters.running == 1
        for _ in range(200):  # the handler is cancelled once the server sees the disconnect
            if counters.aborted:
                break
            await asyncio.sleep(0.01)
        assert (counters.aborted, counters.completed, counters.running) == (1, 0, 0)
    finally:
        await runner.cleanup()


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_resilient_client_gets_the_arc_answer(stub: tuple[web.AppRunner, str]) -> None:
    from resilient_llm import AsyncOpenAI

    runner, root = stub
    client = AsyncOpenAI(api_key="k", base_url=f"{root}/v1", breaker=None)
    try:
        reply = await client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "hi"}], response_format={"type": "json_object"}
        )
    finally:
        await client.close()
    assert set(json.loads(reply.choices[0].message.content or "")) == ARC_KEYS
    assert runner.app[COUNTERS_KEY].streamed == 1  # non-streaming call, streamed under the hood
