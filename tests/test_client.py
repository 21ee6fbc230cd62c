"""The drop-in client end to end, over real loopback sockets against a scriptable stub server."""

from __future__ import annotations

import json
import time
from typing import Any

import anyio
import httpx
import openai
import pytest
from aiohttp import web

import resilient_llm
from resilient_llm import (
    APIConnectionError,
    AsyncOpenAI,
    BadRequestError,
    DeadlineExceeded,
    InternalServerError,
    NotFoundError,
    RateLimitError,
)

from ._fixtures import completions_helpers
from .stubserver import completion_body, serve, silence, sse

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

MSG = [{"role": "user", "content": "hi"}]


def client(server: Any, **kw: Any) -> AsyncOpenAI:
    kw.setdefault("ramp_up", 0)
    kw.setdefault("breaker", None)
    return AsyncOpenAI(base_url=server.base_url, api_key="sk-test-SECRET", **kw)


def no_metrics(handler: Any) -> Any:
    async def wrapped(request: web.Request, hits: int) -> web.StreamResponse:
        if request.path == "/metrics":
            return web.Response(status=404)
        result: web.StreamResponse = await handler(request, hits)
        return result

    return wrapped


async def stream_abc(request: web.Request, hits: int) -> web.StreamResponse:
    body = await request.json()
    if not body.get("stream"):
        return web.json_response(completion_body("abc"))
    return await sse(request, ["a", "b", "c"])


async def test_plain_completion_streams_under_the_hood_and_reassembles() -> None:
    with serve(stream_abc) as server:
        async with client(server) as c:
            r = await c.chat.completions.create(model="m", messages=MSG, temperature=0.3)
        assert r.choices[0].message.content == "abc"
        assert r.choices[0].finish_reason == "stop"
        assert r.usage is not None and r.usage.total_tokens == 6
        sent = server.requests[0]["body"]
        assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}
        assert sent["temperature"] == 0.3
        assert server.requests[0]["headers"]["Authorization"] == "Bearer sk-test-SECRET"


async def test_stall_timeout_none_sends_a_plain_request() -> None:
    with serve(stream_abc) as server:
        async with client(server, stall_timeout=None) as c:
            r = await c.chat.completions.create(model="m", messages=MSG)
        assert r.choices[0].message.content == "abc"
        assert r.choices[0].message.reasoning_content == "because"
        assert "stream" not in server.requests[0]["body"]


async def test_extra_body_headers_query_and_json_object_pass_through() -> None:
    with serve(stream_abc) as server:
        async with client(server, default_query={"a": "1"}) as c:
            await c.chat.completions.create(
                model="m",
                messages=MSG,
                response_format={"type": "json_object"},
                max_tokens=8000,
                extra_body={"skip_special_tokens": True},
                extra_headers={"X-Trace": "t1"},
                extra_query={"b": "2"},
            )
        req = server.requests[0]
        assert req["body"]["response_format"] == {"type": "json_object"}
        assert req["body"]["skip_special_tokens"] is True
        assert req["body"]["max_tokens"] == 8000
        assert req["headers"]["X-Trace"] == "t1"
        assert req["query"] == {"a": "1", "b": "2"}


async def test_user_stream_yields_chunks_and_usage(anyio_backend: str) -> None:
    with serve(stream_abc) as server:
        async with client(server) as c:
            stream = await c.chat.completions.create(model="m", messages=MSG, stream=True)
            async with stream:
                chunks = [ch async for ch in stream]
            assert c.stats().in_flight == 0
    text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
    assert text == "abc"
    assert chunks[-1].usage is not None


async def test_models_list_awaitable_and_iterable(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response(
            {"object": "list", "data": [{"id": "m1", "object": "model", "created": 0, "owned_by": "vllm"}]}
        )

    with serve(handler) as server:
        async with client(server) as c:
            page = await c.models.list()
            ids = [m.id async for m in c.models.list()]
    assert [m.id for m in page.data] == ["m1"] and ids == ["m1"]


async def test_400_raises_bad_request_after_exactly_one_request(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response(
            {
                "error": {
                    "message": "max_tokens too big",
                    "type": "BadRequestError",
                    "param": "max_tokens",
                    "code": 400,
                }
            },
            status=400,
        )

    with serve(handler) as server:
        async with client(server, max_retries=5) as c:
            with pytest.raises(BadRequestError) as info:
                await c.chat.completions.create(model="m", messages=MSG)
    assert server.hits == 1
    err = info.value
    assert err.status_code == 400 and err.param == "max_tokens"
    assert "max_tokens too big" in str(err)
    assert "SECRET" not in str(err) and "SECRET" not in repr(err.request.headers)


async def test_404_is_not_retried() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response(
            {"error": {"message": "no model", "type": "NotFoundError", "code": 404}}, status=404
        )

    with serve(handler) as server:
        async with client(server) as c:
            with pytest.raises(NotFoundError):
                await c.chat.completions.create(model="x", messages=MSG)
    assert server.hits == 1


@pytest.mark.parametrize("status", [429, 503, 500, 408])
async def test_retryable_statuses_are_retried(status: int) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            return web.json_response({"error": {"message": "busy"}}, status=status)
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, backoff=resilient_llm.Backoff(base=0.01, cap=0.02)) as c:
            r = await c.chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content == "abc"
    assert server.hits == 2


async def test_retry_after_is_honoured() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "1"}
            )
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, backoff=resilient_llm.Backoff(base=0.01, cap=0.02)) as c:
            await c.chat.completions.create(model="m", messages=MSG)
    gap = server.requests[1]["t"] - server.requests[0]["t"]
    assert 0.95 <= gap < 2.0


async def test_retry_after_past_the_deadline_fails_fast_with_the_cause() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response(
            {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "30"}
        )

    with serve(handler) as server:
        async with client(server, deadline=2) as c:
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded) as info:
                await c.chat.completions.create(model="m", messages=MSG)
    assert time.monotonic() - start < 1.0
    assert isinstance(info.value.last_error, RateLimitError)
    assert server.hits == 1


async def test_x_should_retry_false_stops_retries() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response(
            {"error": {"message": "no"}}, status=503, headers={"x-should-retry": "false"}
        )

    with serve(handler) as server:
        async with client(server) as c:
            with pytest.raises(InternalServerError):
                await c.chat.completions.create(model="m", messages=MSG)
    assert server.hits == 1


async def test_dropped_connection_is_retried(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            assert request.transport is not None
            request.transport.abort()
            await anyio.sleep(0.05)
            return web.Response()
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, backoff=resilient_llm.Backoff(base=0.01, cap=0.02)) as c:
            r = await c.chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content == "abc"
    assert server.hits == 2


async def test_stream_cut_before_done_is_retried() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
            await resp.prepare(request)
            await resp.write(
                b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":'
                b'[{"index":0,"delta":{"content":"par"},"finish_reason":null}]}\n\n'
            )
            return resp
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, backoff=resilient_llm.Backoff(base=0.01, cap=0.02)) as c:
            r = await c.chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content == "abc"


async def test_error_chunk_mid_stream_raises_for_a_user_stream() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        await resp.write(
            b'data: {"id":"x","object":"chat.completion.chunk","created":1,"model":"m","choices":'
            b'[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
        )
        await resp.write(
            b'data: {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}\n\n'
        )
        return resp

    with serve(handler) as server:
        async with client(server) as c:
            stream = await c.chat.completions.create(model="m", messages=MSG, stream=True)
            # After the commit point it is openai's own in-stream error (never retried).
            with pytest.raises(openai.APIError, match="engine died"):
                async for _ in stream:
                    pass
            assert c.stats().in_flight == 0
    assert server.hits == 1  # committed: never retried


@pytest.mark.parametrize("kw", [{}, {"max_retries": 50, "timeout": 1}])
async def test_deadline_bounds_a_server_that_never_answers(kw: dict[str, Any], anyio_backend: str) -> None:
    with serve(lambda request, hits: silence(request)) as server:
        async with client(server, deadline=2, **kw) as c:
            start = time.monotonic()
            with pytest.raises(DeadlineExceeded) as info:
                await c.chat.completions.create(model="m", messages=MSG)
            took = time.monotonic() - start
    assert 1.7 <= took <= 2.3
    assert isinstance(info.value, resilient_llm.APITimeoutError)
    assert c.stats().deadlines_exceeded == 1


async def test_long_generation_is_never_cut_by_timeout_or_stall_timeout() -> None:
    tokens = ["t"] * 3000

    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return await sse(request, tokens, gap=0.001)  # ~3+ s of streaming, never silent for 1 s

    with serve(handler) as server:
        async with client(server, timeout=1, stall_timeout=1) as c:
            start = time.monotonic()
            r = await c.chat.completions.create(model="m", messages=MSG)
            took = time.monotonic() - start
    assert r.choices[0].message.content == "t" * 3000
    assert took > 1.5  # it really streamed for longer than both limits
    assert server.hits == 1


async def test_ghost_answer_is_detected_within_stall_timeout_and_retried() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            return await sse(request, ["x"] * 10, stop_after=5)  # half the answer, then silence
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, stall_timeout=0.5, backoff=resilient_llm.Backoff(base=0.01, cap=0.02)) as c:
            start = time.monotonic()
            r = await c.chat.completions.create(model="m", messages=MSG)
            took = time.monotonic() - start
            assert c.stats().stalls == 1
    assert r.choices[0].message.content == "abc"
    assert 0.5 <= took < 1.5
    assert server.hits == 2


async def test_cancelling_slot_holders_lets_the_next_call_through_at_once(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        body = await request.json()
        if body["messages"][0]["content"] == "hang":
            return await silence(request)
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, max_concurrency=3) as c:
            async with anyio.create_task_group() as tg:
                for _ in range(3):
                    tg.start_soon(
                        lambda: c.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": "hang"}]
                        )
                    )
                with anyio.fail_after(5):
                    while c.stats().in_flight < 3:
                        await anyio.sleep(0.01)
                assert c.stats().capacity == 3
                tg.cancel_scope.cancel()
            assert c.stats().in_flight == 0 and c.stats().queued == 0
            start = time.monotonic()
            r = await c.chat.completions.create(model="m", messages=MSG)
            assert time.monotonic() - start < 1.0
    assert r.choices[0].message.content == "abc"


async def test_queued_calls_are_served_in_fifo_order() -> None:
    order: list[int] = []

    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        body = await request.json()
        order.append(int(body["messages"][0]["content"]))
        await anyio.sleep(0.02)
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, max_concurrency=1) as c:
            async with anyio.create_task_group() as tg:
                for i in range(6):
                    tg.start_soon(
                        lambda i=i: c.chat.completions.create(
                            model="m", messages=[{"role": "user", "content": str(i)}]
                        )
                    )
                    await anyio.sleep(0.005)
    assert order == sorted(order)


async def test_embeddings_and_completions() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        body = await request.json()
        if request.path.endswith("/embeddings"):
            return web.json_response(
                {
                    "object": "list",
                    "model": "e",
                    "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                    "usage": {"prompt_tokens": 1, "total_tokens": 1},
                }
            )
        assert body["stream"] is True
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        for text, fin in (("foo", None), ("bar", "length")):
            piece = {
                "id": "c",
                "object": "text_completion",
                "created": 1,
                "model": "m",
                "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": fin}],
            }
            await resp.write(b"data: " + json.dumps(piece).encode() + b"\n\n")
        await resp.write(b"data: [DONE]\n\n")
        return resp

    with serve(handler) as server:
        async with client(server) as c:
            e = await c.embeddings.create(model="e", input="x")
            comp = await c.completions.create(model="m", prompt="p")
    assert e.data[0].embedding == [0.1, 0.2]
    assert comp.choices[0].text == "foobar" and comp.choices[0].finish_reason == "length"


async def test_connection_refused_is_a_connection_error_within_the_deadline() -> None:
    c = AsyncOpenAI(
        base_url="http://127.0.0.1:9/v1",
        deadline=1.5,
        ramp_up=0,
        breaker=None,
        backoff=resilient_llm.Backoff(base=0.05, cap=0.1),
    )
    start = time.monotonic()
    with pytest.raises(APIConnectionError):
        await c.chat.completions.create(model="m", messages=MSG)
    assert time.monotonic() - start < 2.0
    assert c.stats().attempts >= 2
    await c.close()


def test_the_librarys_own_resources_serve_on_every_openai_version() -> None:
    """The fast ``create`` and, where openai keeps them in ``beta``, ``chat.completions.parse``/``stream``."""
    c = AsyncOpenAI(api_key="sk-test", base_url="http://127.0.0.1:9/v1")
    assert type(c.chat).__module__ == type(c.chat.completions).__module__ == "resilient_llm.resources._chat"
    assert type(c.completions).__module__ == "resilient_llm.resources._completions"
    assert type(c.responses).__module__ == "resilient_llm.resources._responses"
    assert callable(c.chat.completions.parse) and callable(c.chat.completions.stream)


async def test_user_http_client_is_used() -> None:
    with serve(stream_abc) as server:
        async with httpx.AsyncClient() as http, client(server, http_client=http) as c:
            r = await c.chat.completions.create(model="m", messages=MSG)
    assert r.choices[0].message.content == "abc"


async def test_with_options_shares_the_limiter_and_overrides_settings() -> None:
    with serve(stream_abc) as server:
        async with client(server, max_concurrency=2) as c:
            copy = c.with_options(deadline=5, max_retries=1, timeout=3)
            assert copy.deadline == 5 and copy.max_retries == 1 and copy.timeout == 3
            assert c.deadline == resilient_llm.DEFAULT_DEADLINE
            await copy.chat.completions.create(model="m", messages=MSG)
            assert c.stats().calls == 1  # one engine, one set of counters
            with pytest.raises(resilient_llm.ConfigError, match="max_concurrency"):
                c.with_options(max_concurrency=3)


async def test_no_secret_in_repr_or_logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG", logger="resilient_llm")

    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, backoff=resilient_llm.Backoff(base=0.01, cap=0.02)) as c:
            await c.chat.completions.create(model="m", messages=MSG)
            assert "SECRET" not in repr(c)
    assert any("retrying" in r.getMessage() for r in caplog.records)
    assert all("SECRET" not in r.getMessage() for r in caplog.records)


async def test_parse_returns_the_pydantic_object() -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        grid: list[list[int]]
        instructions: str

    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        body = await request.json()
        assert body["response_format"]["type"] == "json_schema"
        return await sse(request, ['{"grid": [[1]], ', '"instructions": "flip"}'])

    with serve(handler) as server:
        async with client(server) as c:
            r = await completions_helpers(c).parse(model="m", messages=MSG, response_format=Answer)
    assert r.choices[0].message.parsed == Answer(grid=[[1]], instructions="flip")


async def test_max_retries_bounds_the_attempts_exactly() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response({"error": {"message": "down"}}, status=503)

    with serve(handler) as server:
        async with client(server, max_retries=3, backoff=resilient_llm.Backoff(base=0.001, cap=0.002)) as c:
            with pytest.raises(InternalServerError):
                await c.chat.completions.create(model="m", messages=MSG)
            assert c.stats().retries == 3
    assert server.hits == 4


async def test_retry_budget_stops_a_retry_storm() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return web.json_response({"error": {"message": "down"}}, status=500)

    budget = resilient_llm.RetryBudgetConfig(ratio=0.0, min_per_second=0.2, ttl=10.0)  # 2 retries per 10 s
    with serve(handler) as server:
        async with client(
            server, max_retries=10, retry_budget=budget, backoff=resilient_llm.Backoff(base=0.001, cap=0.002)
        ) as c:
            for _ in range(3):
                with pytest.raises(InternalServerError):
                    await c.chat.completions.create(model="m", messages=MSG)
            stats = c.stats()
    assert stats.retries == 2
    assert stats.budget_exhausted >= 1
    assert server.hits == 3 + 2


async def test_work_the_server_lost_is_sent_again_once_outside_the_budget() -> None:
    # A dropped connection (a restart, a crash) lost the work: one retry of it is not an amplification.
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        assert request.transport is not None
        request.transport.abort()
        return web.Response()

    empty = resilient_llm.RetryBudgetConfig(ratio=0.0, min_per_second=0.0, ttl=10.0)  # no retries at all
    with serve(handler) as server:
        async with client(
            server, max_retries=10, retry_budget=empty, backoff=resilient_llm.Backoff(base=0.001, cap=0.002)
        ) as c:
            with pytest.raises(openai.APIConnectionError):
                await c.chat.completions.create(model="m", messages=MSG)
            stats = c.stats()
    assert server.hits == 2  # the first attempt and its one free retry; the next one needs the budget
    assert stats.retries == 1
    assert stats.budget_exhausted == 1


async def test_a_failed_breaker_probe_is_retried_outside_the_budget() -> None:
    # The breaker paces its probes (one a cooldown here): a probe's retry is no storm, and a server that
    # answers every probe with a 503 (draining) must not use up the budget the other calls need.
    chats: list[str] = []  # the chat requests (the client also reads /metrics)

    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        chats.append(request.path)
        if len(chats) <= 3:
            return web.json_response({"error": {"message": "draining"}}, status=503)
        return await stream_abc(request, hits)

    one_retry = resilient_llm.RetryBudgetConfig(ratio=0.0, min_per_second=0.1, ttl=10.0)
    breaker = resilient_llm.BreakerConfig(failure_threshold=1, open_cooldown=0.01, half_open_probes=1)
    with serve(no_metrics(handler)) as server:
        async with client(
            server,
            max_retries=5,
            retry_budget=one_retry,
            breaker=breaker,
            backoff=resilient_llm.Backoff(base=0.001, cap=0.002),
        ) as c:
            r = await c.chat.completions.create(model="m", messages=MSG)
            stats = c.stats()
    assert r.choices[0].message.content == "abc"
    # the first failure opened the breaker and took the budget's one retry; the next two were probes
    assert len(chats) == 4 and stats.retries == 3 and stats.budget_exhausted == 0


async def test_per_call_timeout_overrides_the_silence_limit() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            return await silence(request)
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(server, backoff=resilient_llm.Backoff(base=0.01, cap=0.02)) as c:
            start = time.monotonic()
            r = await c.chat.completions.create(model="m", messages=MSG, timeout=0.3)
            assert time.monotonic() - start < 2
    assert r.choices[0].message.content == "abc"


async def test_hooks_receive_retry_events() -> None:
    events: list[Any] = []

    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits == 1:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return await stream_abc(request, hits)

    with serve(handler) as server:
        async with client(
            server, hooks=[events.append], backoff=resilient_llm.Backoff(base=0.01, cap=0.02)
        ) as c:
            await c.chat.completions.create(model="m", messages=MSG)
    assert [type(e).__name__ for e in events] == ["RetryScheduled"]
    assert events[0].reason == "InternalServerError" and 0 <= events[0].delay <= 0.02


async def test_abandoned_and_cancelled_streams_give_their_slot_back() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return await sse(request, ["x"] * 50, gap=0.05)

    with serve(handler) as server:
        async with client(server, max_concurrency=1) as c:
            stream = await c.chat.completions.create(model="m", messages=MSG, stream=True)
            await stream.__anext__()
            assert c.stats().in_flight == 1
            del stream  # abandoned: garbage collection drops the connection and the slot
            import gc

            gc.collect()
            assert c.stats().in_flight == 0
            stream2 = await c.chat.completions.create(model="m", messages=MSG, stream=True)
            with anyio.move_on_after(0.1):
                async for _ in stream2:
                    pass
            assert c.stats().in_flight == 0  # cancelled mid-iteration: the stream is closed
            assert stream2.response.stream.closed  # the body under openai's stream
        await anyio.sleep(0.2)
    assert server.disconnects >= 1  # the server saw the client go away


async def test_client_metrics_in_prometheus_text() -> None:
    with serve(stream_abc) as server:
        async with client(server) as c:
            await c.chat.completions.create(model="m", messages=MSG)
            text = c.metrics().decode()
    assert "resilient_llm_attempts_total 1.0" in text
    assert "resilient_llm_in_flight 0.0" in text


async def test_responses_create_is_reassembled_from_events() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        body = await request.json()
        assert body["stream"] is True and "stream_options" not in body
        resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await resp.prepare(request)
        final = {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "model": "m",
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "text": "hello", "annotations": []}],
                }
            ],
        }
        for event in (
            {"type": "response.created", "response": {**final, "status": "in_progress", "output": []}},
            {"type": "response.output_text.delta", "delta": "hello"},
            {"type": "response.completed", "response": final},
        ):
            await resp.write(f"event: {event['type']}\ndata: {json.dumps(event)}\n\n".encode())
        return resp

    with serve(handler) as server:
        async with client(server) as c:
            r = await c.responses.create(model="m", input="hi")
    assert r.output_text == "hello"


async def test_with_options_to_another_server_gets_its_own_engine() -> None:
    with serve(stream_abc) as one, serve(stream_abc) as two:
        async with client(one) as c:
            other = c.with_options(base_url=two.base_url)
            same = c.with_options(timeout=5)
            assert same._engine is c._engine
            assert other._engine is not c._engine
            await other.chat.completions.create(model="m", messages=MSG)
            assert c.stats().calls == 0 and other.stats().calls == 1
            await other.close()
    assert two.hits == 1 and one.hits == 0


async def test_rate_limit_spaces_requests(anyio_backend: str) -> None:
    with serve(stream_abc) as server:
        async with client(server, rate_limit=resilient_llm.RateLimit(rate=20, burst=1)) as c:
            if anyio_backend == "trio":
                with pytest.raises(resilient_llm.ConfigError, match="rate_limit needs asyncio"):
                    await c.chat.completions.create(model="m", messages=MSG)
                return
            async with anyio.create_task_group() as tg:
                for _ in range(5):
                    tg.start_soon(lambda: c.chat.completions.create(model="m", messages=MSG))
            assert c.stats().in_flight == 0
    times = [r["t"] for r in server.requests]
    assert len(times) == 5
    assert max(times) - min(times) >= 0.15  # 5 requests at 20/s with a burst of 1: about 0.2 s apart in all


async def test_a_committed_stream_that_goes_silent_raises_stall_and_frees_its_slot(
    anyio_backend: str,
) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return await sse(request, ["x"] * 10, stop_after=2)

    with serve(handler) as server:
        async with client(server, stall_timeout=0.3) as c:
            stream = await c.chat.completions.create(model="m", messages=MSG, stream=True)
            received = []
            with pytest.raises(resilient_llm.StallError):
                async for chunk in stream:
                    received.append(chunk)
            assert len(received) == 3  # the role chunk and two tokens reached the caller: not retried
            assert c.stats().in_flight == 0
            assert c.stats().stalls == 1
    assert server.hits == 1


async def test_a_committed_stream_ends_at_the_deadline() -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        return await sse(request, ["x"] * 400, gap=0.01)  # four seconds of live tokens

    with serve(handler) as server:
        async with client(server, deadline=1) as c:
            start = time.monotonic()
            stream = await c.chat.completions.create(model="m", messages=MSG, stream=True)
            with pytest.raises(DeadlineExceeded):
                async for _ in stream:
                    pass
            assert 0.8 <= time.monotonic() - start <= 1.5


async def test_cancelled_calls_are_counted_not_left_as_going(anyio_backend: str) -> None:
    with serve(lambda request, hits: silence(request)) as server:
        async with client(server) as c:
            async with anyio.create_task_group() as tg:
                for _ in range(20):
                    tg.start_soon(lambda: c.chat.completions.create(model="m", messages=MSG))
                await anyio.sleep(0.2)
                tg.cancel_scope.cancel()
            stats = c.stats()
            text = c.metrics().decode()
    assert stats.calls == 20 and stats.calls_cancelled == 20
    assert stats.calls_ok == stats.calls_failed == 0 and stats.in_flight == stats.queued == 0
    assert 'resilient_llm_calls_total{outcome="cancelled"} 20.0' in text
