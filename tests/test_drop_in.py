"""The one-line swap, checked against openai-python itself on the same loopback server.

Each test sends the same call through ``openai.AsyncOpenAI`` and ``resilient_llm.AsyncOpenAI`` and
compares what users see: the request on the wire, the result (type, every field, ``_request_id``),
streamed chunks, ``parse`` results, raw responses, errors. The server answers recorded vLLM and OpenAI
bodies (``tests/fixtures``); asked to stream, it streams the same answer as vLLM would.

Stall detection streams non-streaming calls under the hood; the result is then rebuilt from chunks,
which keeps every field users read but not always the byte-identical body (vLLM opens a stream with
``content: ""``...). So exact equality is checked with stall detection off (the same JSON reaches both
clients), and the reassembled answer against openai's own stream accumulator.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import openai
import pydantic
import pytest
from aiohttp import web

import resilient_llm
from tests._fixtures import completions_helpers, load, sse_bytes, sse_chunks, vllm_chunks
from tests.stubserver import StubServer, serve

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]

MSG = [{"role": "user", "content": "hi"}]
REQUEST_ID = "req-7f3a"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Answers:
    """What the stub server answers: a JSON body, and optionally an event stream when asked to stream."""

    def __init__(self) -> None:
        self.json: Any = {}
        self.sse: bytes | None = None
        self.status = 200

    async def handle(self, request: web.Request, hits: int) -> web.StreamResponse:
        headers = {"x-request-id": REQUEST_ID}
        if self.status != 200:
            return web.json_response(self.json, status=self.status, headers=headers)
        raw = await request.read()  # the stub already read it: this is the cached body
        body = json.loads(raw) if raw else None
        if isinstance(body, dict) and body.get("stream") and self.sse is not None:
            return web.Response(body=self.sse, content_type="text/event-stream", headers=headers)
        return web.json_response(self.json, headers=headers)


@contextmanager
def stub() -> Iterator[tuple[StubServer, Answers]]:
    answers = Answers()
    with serve(answers.handle) as server:
        yield server, answers


@asynccontextmanager
async def clients(server: StubServer, **ours_kw: Any) -> AsyncIterator[tuple[Any, Any]]:
    """(resilient_llm's, openai's) clients for the server; no breaker, so no /metrics polls."""
    ours_kw.setdefault("stall_timeout", None)
    ours = resilient_llm.AsyncOpenAI(
        api_key="sk-test", base_url=server.base_url, ramp_up=0, breaker=None, max_retries=0, **ours_kw
    )
    theirs = openai.AsyncOpenAI(api_key="sk-test", base_url=server.base_url, max_retries=0)
    async with ours, theirs:
        yield ours, theirs


def same(a: Any, b: Any) -> None:
    """The same openai type, the same fields as the server sent them, the same request id."""
    assert type(a) is type(b)
    assert a.to_dict() == b.to_dict()
    assert a.model_dump() == b.model_dump()
    assert getattr(a, "_request_id", None) == getattr(b, "_request_id", None)


CHAT_FIXTURES = [
    "types_vllm032_chat.json",
    "types_chat_tool_calls.json",
    "types_chat_reasoning.json",
    "types_chat_reasoning_legacy.json",
    "types_chat_logprobs.json",
    "types_chat_n2.json",
    "types_chat_usage_details.json",
    "types_chat_refusal.json",
    "types_vllm032_chat_logprobs.json",
    "types_vllm032_chat_n2.json",
    "types_vllm032_chat_token_ids.json",
    "vllm032_chat.json",
]


@pytest.mark.parametrize("fixture", CHAT_FIXTURES)
async def test_chat_completion_is_openais(fixture: str) -> None:
    with stub() as (server, answers):
        answers.json = load(fixture)
        async with clients(server) as (ours, theirs):
            mine = await ours.chat.completions.create(model="m", messages=MSG)
            other = await theirs.chat.completions.create(model="m", messages=MSG)
            same(mine, other)
            assert mine._request_id == REQUEST_ID
            # The raw-response wrapper (langchain-openai calls it for every non-streaming call).
            raw = await ours.chat.completions.with_raw_response.create(model="m", messages=MSG)
            assert raw.headers["x-request-id"] == REQUEST_ID
            same(raw.parse(), other)


@pytest.mark.parametrize("fixture", ["types_completion.json", "types_vllm032_completion.json"])
async def test_completion_is_openais(fixture: str) -> None:
    with stub() as (server, answers):
        answers.json = load(fixture)
        async with clients(server) as (ours, theirs):
            same(
                await ours.completions.create(model="m", prompt="Once"),
                await theirs.completions.create(model="m", prompt="Once"),
            )


@pytest.mark.parametrize("fixture", ["types_response.json", "types_vllm032_response.json"])
async def test_response_is_openais(fixture: str) -> None:
    body = load(fixture)
    with stub() as (server, answers):
        answers.json = body
        answers.sse = sse_bytes([{"type": "response.completed", "response": body, "sequence_number": 0}])
        async with clients(server) as (ours, theirs):
            other = await theirs.responses.create(model="m", input="hi")
            same(await ours.responses.create(model="m", input="hi"), other)
        # With stall detection the answer is streamed and its final event carries the same object.
        async with clients(server, stall_timeout=30) as (ours, _):
            streamed = await ours.responses.create(model="m", input="hi")
        assert streamed.to_dict() == other.to_dict()
        assert server.requests[-1]["body"]["stream"] is True


@pytest.mark.parametrize("encoding_format", [None, "float"])
async def test_embeddings_are_openais(encoding_format: str | None) -> None:
    extra = {} if encoding_format is None else {"encoding_format": encoding_format}
    with stub() as (server, answers):
        answers.json = load("types_embeddings.json")
        async with clients(server) as (ours, theirs):
            same(
                await ours.embeddings.create(model="m", input=["a", "b"], **extra),
                await theirs.embeddings.create(model="m", input=["a", "b"], **extra),
            )
    ours_body, theirs_body = (r["body"] for r in server.requests)
    assert ours_body == theirs_body  # openai asks for base64 unless told otherwise; so does the swap


@pytest.mark.parametrize("fixture", ["types_models.json", "types_vllm032_models.json"])
async def test_models_page_is_openais(fixture: str) -> None:
    with stub() as (server, answers):
        answers.json = load(fixture)
        async with clients(server) as (ours, theirs):
            mine, other = await ours.models.list(), await theirs.models.list()
            assert type(mine) is type(other) and mine.has_next_page() == other.has_next_page()
            assert [m.to_dict() for m in mine.data] == [m.to_dict() for m in other.data]
            assert [m.id async for m in ours.models.list()] == [m.id for m in other.data]


STREAMS = [
    "stream_vllm032_chat.sse",
    "stream_vllm032_chat_logprobs.sse",
    "stream_vllm032_chat_n2.sse",
    "stream_vllm032_chat_token_ids.sse",
    "stream_chat_tool_calls.sse",
    "stream_chat_reasoning.sse",
    "stream_chat_reasoning_legacy.sse",
    "stream_chat_logprobs.sse",
    "stream_chat_n2.sse",
    "vllm032_chat_stream.sse",
]


@pytest.mark.parametrize("fixture", STREAMS)
async def test_stream_chunks_are_openais(fixture: str) -> None:
    with stub() as (server, answers):
        answers.sse = sse_bytes(sse_chunks(fixture))
        async with clients(server) as (ours, theirs):
            mine = await ours.chat.completions.create(model="m", messages=MSG, stream=True)
            other = await theirs.chat.completions.create(model="m", messages=MSG, stream=True)
            assert isinstance(mine, openai.AsyncStream)
            got, want = [c async for c in mine], [c async for c in other]
            assert len(got) == len(want) > 2
            for a, b in zip(got, want, strict=True):
                same(a, b)
            assert ours.stats().in_flight == 0


def final_view(completion: Any) -> dict[str, Any]:
    return {
        "head": [completion.id, completion.object, completion.created, completion.model],
        "usage": completion.usage.to_dict() if completion.usage else None,
        "choices": [
            {
                "index": c.index,
                "finish_reason": c.finish_reason,
                "logprobs": None if c.logprobs is None else c.logprobs.to_dict().get("content"),
                "role": c.message.role,
                # openai's accumulator keeps the empty "" every vLLM stream opens with; the library says
                # None, as the non-streaming endpoint does for an answer made only of tool calls.
                "content": c.message.content or None,
                "refusal": c.message.refusal,
                "reasoning": getattr(c.message, "reasoning", None)
                or getattr(c.message, "reasoning_content", None),
                "tool_calls": [
                    (t.id, t.type, t.function.name, t.function.arguments) for t in c.message.tool_calls or []
                ],
            }
            for c in completion.choices
        ],
    }


@pytest.mark.parametrize("fixture", STREAMS)
async def test_reassembled_answer_matches_openais_stream_accumulator(fixture: str) -> None:
    with stub() as (server, answers):
        answers.sse = sse_bytes(sse_chunks(fixture))
        async with clients(server, stall_timeout=30) as (ours, theirs):
            mine = await ours.chat.completions.create(model="m", messages=MSG)
            try:
                async with completions_helpers(theirs).stream(model="m", messages=MSG) as events:
                    other = await events.get_final_completion()
            except openai.LengthFinishReasonError as exc:  # its accumulator refuses answers cut short
                other = exc.completion
    assert isinstance(mine, openai.types.chat.ChatCompletion)
    assert final_view(mine) == final_view(other)
    assert server.requests[0]["body"]["stream"] is True


# --- structured outputs: openai's own parse helpers, on the resilient path -----------------------


class Answer(pydantic.BaseModel):
    answer: int
    confidence: float


class Step(pydantic.BaseModel):
    explanation: str
    output: str


class Solution(pydantic.BaseModel):
    steps: list[Step]
    final_answer: str
    best_step: Step | None = pydantic.Field(default=None, description="The step that mattered most.")


class ArcReply(pydantic.BaseModel):
    instructions: str
    grid: list[list[int]]


INSTANCES: list[pydantic.BaseModel] = [
    Answer(answer=4, confidence=0.98),
    Solution(steps=[Step(explanation="add", output="4")], final_answer="4"),
    ArcReply(instructions="rotate", grid=[[1, 0], [0, 1]]),
]


def chat_body_with(content: str, finish: str = "stop") -> dict[str, Any]:
    body: dict[str, Any] = load("types_chat_reasoning.json")
    body["choices"][0]["message"].update(content=content, refusal=None)
    body["choices"][0]["finish_reason"] = finish
    return body


@pytest.mark.parametrize("instance", INSTANCES, ids=lambda i: type(i).__name__)
@pytest.mark.parametrize("stall_timeout", [None, 30])
async def test_chat_parse_is_openais(instance: pydantic.BaseModel, stall_timeout: float | None) -> None:
    model = type(instance)
    body = chat_body_with(instance.model_dump_json())
    with stub() as (server, answers):
        answers.json, answers.sse = body, sse_bytes(vllm_chunks(body))
        async with clients(server, stall_timeout=stall_timeout) as (ours, theirs):
            mine = await completions_helpers(ours).parse(model="m", messages=MSG, response_format=model)
            other = await completions_helpers(theirs).parse(model="m", messages=MSG, response_format=model)
    assert type(mine) is type(other)
    assert mine.choices[0].message.parsed == other.choices[0].message.parsed == instance
    ours_req, theirs_req = (r["body"] for r in server.requests)
    assert ours_req["response_format"] == theirs_req["response_format"]


async def test_chat_parse_length_raises_openais_error() -> None:
    with stub() as (server, answers):
        answers.json = chat_body_with('{"answer": 1, "conf', "length")
        async with clients(server) as (ours, _):
            with pytest.raises(openai.LengthFinishReasonError):
                await completions_helpers(ours).parse(model="m", messages=MSG, response_format=Answer)


@pytest.mark.parametrize("instance", INSTANCES, ids=lambda i: type(i).__name__)
async def test_responses_parse_is_openais(instance: pydantic.BaseModel) -> None:
    model = type(instance)
    body = load("types_response.json")
    body["output"][1]["content"][0]["text"] = instance.model_dump_json()
    with stub() as (server, answers):
        answers.json = body
        async with clients(server) as (ours, theirs):
            mine = await ours.responses.parse(model="m", input="x", text_format=model)
            other = await theirs.responses.parse(model="m", input="x", text_format=model)
    assert type(mine) is type(other)
    assert mine.output_parsed == other.output_parsed == instance


# --- errors ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (400, load("vllm032_error_400.json")),
        (404, load("vllm032_error_404.json")),
        (401, {"error": {"message": "bad key", "type": "invalid_request_error", "code": "invalid_api_key"}}),
        (422, {"detail": [{"loc": ["body", "model"], "msg": "field required"}]}),
        (409, "conflict"),
    ],
)
async def test_error_responses_raise_openais_exceptions(status: int, body: Any) -> None:
    with stub() as (server, answers):
        answers.status, answers.json = status, body
        async with clients(server) as (ours, theirs):
            errors = []
            for client in (ours, theirs):
                with pytest.raises(openai.APIStatusError) as info:
                    await client.chat.completions.create(model="m", messages=MSG)
                errors.append(info.value)
    mine, other = errors
    assert type(mine) is type(other)
    for attr in ("message", "status_code", "body", "code", "param", "type", "request_id"):
        assert getattr(mine, attr) == getattr(other, attr), attr
    assert str(mine) == str(other)
    assert mine.response.json() == other.response.json()
    assert "sk-test" not in repr(mine.request.headers) + str(mine)


# --- the request on the wire ----------------------------------------------------------------------

_TRANSPORT_HEADERS = {"host", "content-length", "accept-encoding", "connection"}


def wire(request: dict[str, Any]) -> tuple[str, dict[str, Any], Any, dict[str, str]]:
    headers = {k.lower(): v for k, v in request["headers"].items() if k.lower() not in _TRANSPORT_HEADERS}
    return request["path"], request["query"], request["body"], headers


CALLS: list[dict[str, Any]] = [
    {"model": "m", "messages": MSG},
    {
        "model": "m",
        "messages": MSG,
        "max_tokens": 8000,
        "temperature": 0.3,
        "response_format": {"type": "json_object"},
        "extra_body": {"skip_special_tokens": True},
    },
    {
        "model": "m",
        "messages": (m for m in MSG),  # any iterable, as openai's types allow
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "tool_choice": "auto",
        "stop": ["\n"],
        "seed": openai.NOT_GIVEN,
        "user": getattr(openai, "omit", openai.NOT_GIVEN),  # openai >= 1.100 has omit
        "extra_headers": {"X-Trace": "t-1"},
        "extra_query": {"debug": "1"},
        "timeout": 30,
    },
]


@pytest.mark.parametrize("kwargs", CALLS, ids=["plain", "arc", "tools-extras"])
async def test_the_request_is_the_one_openai_sends(kwargs: dict[str, Any]) -> None:
    with stub() as (server, answers):
        answers.json = load("types_vllm032_chat.json")
        async with clients(server) as (ours, theirs):
            await ours.chat.completions.create(**kwargs)
            if "messages" in kwargs and not isinstance(kwargs["messages"], list):
                kwargs["messages"] = list(MSG)
            await theirs.chat.completions.create(**kwargs)
    mine, other = (wire(r) for r in server.requests)
    assert mine == other


async def test_streaming_under_the_hood_changes_only_stream_and_usage() -> None:
    with stub() as (server, answers):
        body = load("types_vllm032_chat.json")
        answers.json, answers.sse = body, sse_bytes(vllm_chunks(body))
        async with clients(server, stall_timeout=30) as (ours, theirs):
            await ours.chat.completions.create(**CALLS[1])
            await theirs.chat.completions.create(**CALLS[1])
    (_, _, mine, headers), (_, _, other, other_headers) = (wire(r) for r in server.requests)
    assert mine == {**other, "stream": True, "stream_options": {"include_usage": True}}
    assert headers == other_headers


async def test_json_body_sent_is_valid_json_with_unicode() -> None:
    with stub() as (server, answers):
        answers.json = load("types_vllm032_chat.json")
        async with clients(server) as (ours, _):
            await ours.chat.completions.create(model="m", messages=[{"role": "user", "content": "격자 ✓"}])
    assert server.requests[0]["body"]["messages"][0]["content"] == "격자 ✓"
    assert json.dumps(server.requests[0]["body"])


async def test_a_large_answer_is_built_a_slice_at_a_time_and_is_still_openais() -> None:
    body = {
        "object": "list",
        "model": "m",
        "data": [{"object": "embedding", "index": i, "embedding": [0.25] * 512} for i in range(400)],
        "usage": {"prompt_tokens": 1, "total_tokens": 1},
    }
    with stub() as (server, answers):
        answers.json = body
        async with clients(server) as (ours, theirs):
            mine = await ours.embeddings.create(model="m", input=["a"], encoding_format="float")
            other = await theirs.embeddings.create(model="m", input=["a"], encoding_format="float")
    assert len(json.dumps(body)) > 1024 * 1024  # past the size where building is sliced
    same(mine, other)
