"""Requests that go through openai-python's own request path (files, models, ``client.get``...) still
get the deadline, the retry policy and the limiter: the engine runs openai's path one attempt at a time."""

from __future__ import annotations

import itertools
import time
from typing import Any

import anyio
import httpx
import openai
import pytest
from aiohttp import web

import resilient_llm
from tests.stubserver import serve, silence

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

MODELS = {"object": "list", "data": [{"id": "m1", "object": "model", "created": 0, "owned_by": "vllm"}]}


def client(server: Any, **kw: Any) -> resilient_llm.AsyncOpenAI:
    kw.setdefault("backoff", resilient_llm.Backoff(base=0.01, cap=0.05))
    return resilient_llm.AsyncOpenAI(
        api_key="sk-test", base_url=server.base_url, ramp_up=0, breaker=None, **kw
    )


async def test_openai_path_is_retried_by_the_engine_with_its_retry_count(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits < 3:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return web.json_response(MODELS)

    with serve(handler) as server:
        async with client(server, max_retries=4) as c:
            page = await c.models.list()
    assert [m.id for m in page.data] == ["m1"]
    assert [r["headers"]["x-stainless-retry-count"] for r in server.requests] == ["0", "1", "2"]
    assert c.stats().retries == 2 and c.stats().calls_ok == 1


async def test_openai_path_honours_max_retries_and_raises_openais_error(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response({"error": {"message": "down"}}, status=500)

    with serve(handler) as server:
        async with client(server, max_retries=1) as c:
            with pytest.raises(openai.InternalServerError, match="down"):
                await c.models.list()
    assert server.hits == 2


async def test_openai_path_honours_retry_after(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"retry-after": "1"}
            )
        return web.json_response(MODELS)

    with serve(handler) as server:
        async with client(server) as c:
            await c.models.list()
    gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert 0.9 <= gap <= 2.0


async def test_openai_path_is_bounded_by_the_deadline(anyio_backend: str) -> None:
    with serve(lambda request, hits: silence(request)) as server:
        async with client(server, deadline=1, max_retries=50, timeout=0.4) as c:
            start = time.monotonic()
            with pytest.raises(resilient_llm.DeadlineExceeded) as info:
                await c.get("/version", cast_to=httpx.Response)
            elapsed = time.monotonic() - start
    assert 0.8 <= elapsed <= 1.6
    assert isinstance(info.value, openai.APITimeoutError)


async def test_openai_path_waits_in_the_limiter(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        await anyio.sleep(0.2)
        return web.json_response(MODELS)

    with serve(handler) as server:
        async with client(server, max_concurrency=1) as c:

            async def list_models() -> None:
                await c.models.list()

            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(list_models)
                await anyio.sleep(0.1)
                assert c.stats().in_flight == 1 and c.stats().queued == 2
    times = [r["t"] for r in server.requests]
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(times))


async def test_plain_get_and_post_return_what_openai_returns(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if request.path.endswith("/tokenize"):
            return web.json_response({"tokens": [1, 2, 3], "count": 3})
        return web.json_response({"version": "0.32.0"})

    with serve(handler) as server:
        async with client(server) as c:
            version = await c.get("/version", cast_to=httpx.Response)
            tokens = await c.post("/tokenize", body={"prompt": "hi"}, cast_to=object)
    assert version.json() == {"version": "0.32.0"}
    assert tokens == {"tokens": [1, 2, 3], "count": 3}


async def test_with_streaming_response_reads_the_answer(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response(MODELS)

    with serve(handler) as server:
        async with client(server) as c:
            async with c.models.with_streaming_response.list() as response:
                assert response.status_code == 200
                data = await response.json()
    assert data == MODELS
