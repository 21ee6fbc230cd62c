"""The httpx transport path without sockets: a user's ``httpx.AsyncClient``, answered by pytest-httpx.

pytest-httpx replaces ``httpx.AsyncHTTPTransport.handle_async_request``, so it answers every request a
plain ``httpx.AsyncClient`` sends. openai 1.x and 2.x build their own client on ``httpx``; openai 3.x on
its fork ``httpx2``, which pytest-httpx does not touch. Every test therefore hands the client an
``httpx.AsyncClient`` (which openai accepts on every supported version, and the library then sends
through), and the base URL is a closed loopback port, so a request that escaped the mock would fail at
once rather than leave the machine.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import openai
import pytest
from pytest_httpx import HTTPXMock, IteratorStream

import resilient_llm
from resilient_llm import AsyncOpenAI, Backoff

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(20)]

BASE_URL = "http://127.0.0.1:9/v1"
CHAT_URL = f"{BASE_URL}/chat/completions"
MSG = [{"role": "user", "content": "hi"}]
MODELS = {"object": "list", "data": [{"id": "m1", "object": "model", "created": 0, "owned_by": "vllm"}]}


def completion(content: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def chunk(content: str | None = None, finish_reason: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def events(*tokens: str) -> list[bytes]:
    return [*(chunk(t) for t in tokens), chunk(finish_reason="stop"), b"data: [DONE]\n\n"]


def split_oddly(pieces: list[bytes], size: int = 7) -> Iterator[bytes]:
    """The same bytes, cut across event boundaries as a network would."""
    data = b"".join(pieces)
    return (data[i : i + size] for i in range(0, len(data), size))


SSE = {"content-type": "text/event-stream"}


@asynccontextmanager
async def client(**kw: Any) -> AsyncIterator[AsyncOpenAI]:
    kw.setdefault("backoff", Backoff(base=0.01, cap=0.02))
    async with httpx.AsyncClient() as http:
        async with AsyncOpenAI(
            api_key="sk-test", base_url=BASE_URL, http_client=http, breaker=None, ramp_up=0, **kw
        ) as c:
            yield c


def sent_json(request: httpx.Request) -> Any:
    return json.loads(request.content)


# --- retries ---------------------------------------------------------------------------------------
async def test_503_and_429_are_retried_and_retry_after_is_honoured(
    httpx_mock: HTTPXMock, anyio_backend: str
) -> None:
    seen: list[float] = []
    answers = [
        httpx.Response(503, json={"error": {"message": "busy"}}),
        httpx.Response(429, json={"error": {"message": "slow down"}}, headers={"retry-after": "1"}),
        httpx.Response(200, headers=SSE, stream=IteratorStream(events("o", "k"))),
    ]

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(time.monotonic())
        return answers[len(seen) - 1]

    httpx_mock.add_callback(answer, url=CHAT_URL, method="POST", is_reusable=True)
    async with client() as c:
        reply = await c.chat.completions.create(model="m", messages=MSG)
        stats = c.stats()
    assert isinstance(reply, openai.types.chat.ChatCompletion)
    assert reply.choices[0].message.content == "ok"
    assert len(seen) == 3 and stats.retries == 2
    assert seen[1] - seen[0] < 0.9  # the backoff alone (at most 20 ms) after the 503, no Retry-After
    assert 0.95 <= seen[2] - seen[1] < 3.0  # Retry-After: 1 after the 429
    for request in httpx_mock.get_requests():  # non-streaming, streamed under the hood to watch for stalls
        assert sent_json(request)["stream"] is True


async def test_openais_own_request_path_goes_through_the_users_client_and_is_retried(
    httpx_mock: HTTPXMock, anyio_backend: str
) -> None:
    httpx_mock.add_response(url=f"{BASE_URL}/models", status_code=503, json={"error": {"message": "busy"}})
    httpx_mock.add_response(url=f"{BASE_URL}/models", json=MODELS)
    async with client() as c:
        page = await c.models.list()
    assert [m.id for m in page.data] == ["m1"]
    retry_counts = [r.headers["x-stainless-retry-count"] for r in httpx_mock.get_requests()]
    assert retry_counts == ["0", "1"]


# --- errors ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("status", "error", "requests"),
    [
        (400, openai.BadRequestError, 1),
        (401, openai.AuthenticationError, 1),
        (404, openai.NotFoundError, 1),
        (422, openai.UnprocessableEntityError, 1),
        (429, openai.RateLimitError, 3),
        (500, openai.InternalServerError, 3),
        (503, openai.InternalServerError, 3),
    ],
)
async def test_status_errors_are_openais_classes_after_the_retries_they_deserve(
    httpx_mock: HTTPXMock, anyio_backend: str, status: int, error: type[openai.APIStatusError], requests: int
) -> None:
    httpx_mock.add_response(
        url=CHAT_URL, status_code=status, json={"error": {"message": f"no ({status})"}}, is_reusable=True
    )
    async with client(max_retries=2) as c:
        with pytest.raises(error) as info:
            await c.chat.completions.create(model="m", messages=MSG)
    assert type(info.value) is error  # exactly openai's class, as openai.AsyncOpenAI raises it
    assert info.value.status_code == status and f"no ({status})" in info.value.message
    assert len(httpx_mock.get_requests()) == requests


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (httpx.ConnectError("refused"), resilient_llm.ServerUnreachable),
        (httpx.ConnectTimeout("slow"), openai.APITimeoutError),
        (httpx.RemoteProtocolError("cut"), openai.APIConnectionError),
    ],
)
async def test_transport_failures_are_openais_connection_errors(
    httpx_mock: HTTPXMock, anyio_backend: str, failure: Exception, error: type[Exception]
) -> None:
    httpx_mock.add_exception(failure, url=CHAT_URL, is_reusable=True)
    async with client(max_retries=1) as c:
        with pytest.raises(error) as info:
            await c.chat.completions.create(model="m", messages=MSG)
    assert isinstance(info.value, openai.APIConnectionError)
    assert len(httpx_mock.get_requests()) == 2  # retried once


# --- answers ---------------------------------------------------------------------------------------
async def test_a_streamed_answer_arrives_as_openais_chunks(httpx_mock: HTTPXMock, anyio_backend: str) -> None:
    httpx_mock.add_response(
        url=CHAT_URL, headers=SSE, stream=IteratorStream(list(split_oddly(events("Hel", "lo", "!"))))
    )
    async with client() as c:
        stream = await c.chat.completions.create(model="m", messages=MSG, stream=True)
        chunks = [piece async for piece in stream]
    assert all(isinstance(piece, openai.types.chat.ChatCompletionChunk) for piece in chunks)
    assert "".join(p.choices[0].delta.content or "" for p in chunks) == "Hello!"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert sent_json(httpx_mock.get_request())["stream"] is True


async def test_a_plain_json_answer_when_stall_detection_is_off(
    httpx_mock: HTTPXMock, anyio_backend: str
) -> None:
    httpx_mock.add_response(url=CHAT_URL, json=completion("plain"))
    async with client(stall_timeout=None) as c:
        reply = await c.chat.completions.create(model="m", messages=MSG)
    assert reply == openai.types.chat.ChatCompletion.model_validate(completion("plain"))
    assert "stream" not in sent_json(httpx_mock.get_request())


# --- time ------------------------------------------------------------------------------------------
async def test_the_deadline_ends_a_call_whose_answer_never_comes(
    httpx_mock: HTTPXMock, anyio_backend: str
) -> None:
    async def never(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(60)
        raise AssertionError("unreachable")

    httpx_mock.add_callback(never, url=CHAT_URL, is_reusable=True)
    async with client(deadline=0.5, stall_timeout=None, max_retries=5) as c:
        start = time.monotonic()
        with pytest.raises(resilient_llm.DeadlineExceeded) as info:
            await c.chat.completions.create(model="m", messages=MSG)
        elapsed = time.monotonic() - start
    assert 0.45 <= elapsed < 2.0  # the server would have taken 60 s
    assert isinstance(info.value, openai.APITimeoutError)


class _Stalls(httpx.AsyncByteStream):
    """One event, then silence."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield chunk("partial")
        await anyio.sleep(60)

    async def aclose(self) -> None:
        pass


async def test_a_stalled_answer_is_retried_and_the_retry_answers(
    httpx_mock: HTTPXMock, anyio_backend: str
) -> None:
    httpx_mock.add_response(url=CHAT_URL, headers=SSE, stream=_Stalls())
    httpx_mock.add_response(url=CHAT_URL, headers=SSE, stream=IteratorStream(events("whole")))
    async with client(stall_timeout=0.3) as c:
        start = time.monotonic()
        reply = await c.chat.completions.create(model="m", messages=MSG)
        elapsed = time.monotonic() - start
        stats = c.stats()
    assert reply.choices[0].message.content == "whole"
    assert 0.3 <= elapsed < 3.0 and stats.retries == 1  # the stalled stream would have taken 60 s
