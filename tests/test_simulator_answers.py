"""What the simulated model says: JSON for schemas, the tool-call decision, and the shapes of tool
calls and of the Responses API checked against openai-python's own types."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import FunctionTool, Response, ResponseStreamEvent
from pydantic import BaseModel, Field, TypeAdapter

from resilient_llm.testing import SimulatorConfig, VLLMSimulator
from resilient_llm.testing._answers import Reply, chat_reply, responses_reply
from resilient_llm.testing._schema import instance_of, schema_in

MODEL = "openai/gpt-oss-20b"
FAST: dict[str, Any] = {"time_scale": 0.01, "tick": 0.002, "sample_interval": 1.0}
EVENTS: TypeAdapter[Any] = TypeAdapter(ResponseStreamEvent)
#: Older openai versions' Responses types cannot read all of what vLLM (and so the simulator) sends; openai's
#: client reads it leniently all the same, so only this strict check depends on the openai version.
TYPES_LACK_REASONING_TEXT = not hasattr(openai.types.responses, "ResponseReasoningTextDeltaEvent")
TYPES_REQUIRE_STRICT = FunctionTool.model_fields["strict"].is_required()


class Colour(BaseModel):
    name: Literal["red", "green"]
    hex: str = Field(min_length=7, max_length=7)


class Node(BaseModel):
    label: str
    children: list[Node] = []


class Scene(BaseModel):
    title: str
    when: str = Field(json_schema_extra={"format": "date-time"})
    ratio: float = Field(gt=0, le=1)
    count: int = Field(ge=3, multiple_of=5)
    flags: list[bool] = Field(min_length=3)
    colour: Colour
    backup: Colour | None
    tree: Node
    pair: tuple[int, str]
    extra: dict[str, int]


SCHEMAS: list[Any] = [
    Scene.model_json_schema(),
    Node.model_json_schema(),
    {"type": "object", "properties": {"a": {"type": ["null", "integer"], "minimum": -3, "maximum": -1}}},
    {"type": "array", "items": {"enum": [3, 4]}, "minItems": 1, "maxItems": 1},
    {"allOf": [{"$ref": "#/$defs/A"}, {"properties": {"b": {"type": "boolean"}}, "required": ["b"]}],
     "$defs": {"A": {"type": "object", "properties": {"a": {"const": "x"}}, "required": ["a"]}}},
    {"anyOf": [{"type": "null"}, {"type": "string", "format": "email"}]},
    {"type": "number", "exclusiveMinimum": 2, "exclusiveMaximum": 3},
]  # fmt: skip


@pytest.mark.parametrize("schema", SCHEMAS)
def test_instance_of_validates_against_its_schema(schema: Any) -> None:
    jsonschema.validate(instance_of(schema), schema)


def test_instance_of_takes_the_values_a_schema_offers() -> None:
    class Choice(BaseModel):
        city: Literal["Paris", "Rome"]
        name: str = Field(examples=["Jason"])
        age: int = 30
        note: str

    assert instance_of(Choice.model_json_schema()) == {
        "city": "Paris",
        "name": "Jason",
        "age": 30,
        "note": "note",
    }
    assert Scene.model_validate(instance_of(Scene.model_json_schema()))


def test_schema_in_finds_the_last_schema_pasted_into_a_prompt() -> None:
    schema = Colour.model_json_schema()
    texts = ["Reply in JSON {not json}", f"Follow: {json.dumps(schema, indent=2)} and nothing else", "{}"]
    assert schema_in(texts) == schema
    assert schema_in(['{"properties": 3}', "no schema"]) is None


TOOLS = [
    {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}},
    {"type": "function", "function": {"name": "final", "parameters": Colour.model_json_schema()}},
]
USER = {"role": "user", "content": "hi"}
CALLED = [
    USER,
    {"role": "assistant", "tool_calls": [{"id": "1", "type": "function", "function": {"name": "lookup"}}]},
    {"role": "tool", "tool_call_id": "1", "content": "ok"},
]


@pytest.mark.parametrize(
    ("messages", "choice", "expected"),
    [
        ([USER], None, "lookup"),
        ([USER], "auto", "lookup"),
        ([USER], "required", "lookup"),
        ([USER], "none", None),
        ([USER], {"type": "function", "function": {"name": "final"}}, "final"),
        (CALLED, None, None),
        (CALLED, "required", "final"),
        (CALLED, {"type": "function", "function": {"name": "lookup"}}, "lookup"),
        ([*CALLED, USER], "auto", "lookup"),
    ],
)
def test_chat_reply_decides_between_a_tool_and_content(
    messages: list[Any], choice: Any, expected: str | None
) -> None:
    body = {"messages": messages, "tools": TOOLS, **({"tool_choice": choice} if choice else {})}
    reply = chat_reply(body, messages)
    assert reply.tool == expected
    if expected == "final":
        assert Colour.model_validate_json(reply.text)


def test_content_follows_the_format() -> None:
    schema_format = {
        "type": "json_schema",
        "json_schema": {"name": "c", "schema": Colour.model_json_schema()},
    }
    assert Colour.model_validate_json(chat_reply({"response_format": schema_format}, [USER]).text)
    prompted = [{"role": "system", "content": json.dumps(Colour.model_json_schema())}, USER]
    assert Colour.model_validate_json(chat_reply({"response_format": {"type": "json_object"}}, prompted).text)
    assert chat_reply({"response_format": {"type": "json_object"}}, [USER]) == Reply("arc_json")
    assert chat_reply({}, [USER]) == Reply("words")
    text_format = {"format": {"type": "json_schema", "name": "c", "schema": Colour.model_json_schema()}}
    assert Colour.model_validate_json(responses_reply({"text": text_format}, [USER]).text)


def test_responses_reply_calls_function_tools_until_a_result_comes_back() -> None:
    tools = [{"type": "function", "name": "lookup", "parameters": {}}, {"type": "web_search"}]
    assert responses_reply({"tools": tools}, [USER]).tool == "lookup"
    done = [
        USER,
        {"type": "function_call", "name": "lookup"},
        {"type": "function_call_output", "output": "x"},
    ]
    assert responses_reply({"tools": tools}, done).tool is None


@asynccontextmanager
async def serve(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
    async with VLLMSimulator(SimulatorConfig(**{**FAST, **overrides})) as sim:
        async with httpx.AsyncClient(base_url=sim.base_url, timeout=5.0) as client:
            yield client


def sse_data(text: str) -> list[str]:
    return [
        line.removeprefix("data: ")
        for block in text.split("\n\n")
        for line in block.split("\n")
        if line.startswith("data: ")
    ]


@pytest.mark.anyio
@pytest.mark.timeout(20)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_tool_calls_match_openais_types_streamed_or_not() -> None:
    tools = [{"type": "function", "function": {"name": "final", "parameters": Colour.model_json_schema()}}]
    body = {"model": MODEL, "messages": [USER], "tools": tools}
    async with serve() as client:
        whole = (await client.post("/chat/completions", json=body)).json()
        streamed = await client.post("/chat/completions", json={**body, "stream": True})
        cut = (await client.post("/chat/completions", json={**body, "max_tokens": 70})).json()
    completion = ChatCompletion.model_validate(whole)
    (call,) = completion.choices[0].message.tool_calls or []
    assert completion.choices[0].finish_reason == "tool_calls" and call.id.startswith("chatcmpl-tool-")
    assert Colour.model_validate_json(call.function.arguments)  # type: ignore[union-attr]
    chunks = [ChatCompletionChunk.model_validate_json(d) for d in sse_data(streamed.text)[:-1]]
    deltas = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert deltas[0].id and deltas[0].function and deltas[0].function.name == "final"
    assert all(d.id is None and d.function and d.function.name is None for d in deltas[1:])
    assert "".join(d.function.arguments or "" for d in deltas if d.function) == call.function.arguments  # type: ignore[union-attr]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    assert cut["choices"][0]["finish_reason"] == "length"


@pytest.mark.anyio
@pytest.mark.timeout(20)
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("tools", [False, True])
@pytest.mark.parametrize("reasoning_ratio", [0.0, 0.25])
async def test_responses_match_openais_types(tools: bool, reasoning_ratio: float) -> None:
    if reasoning_ratio and TYPES_LACK_REASONING_TEXT:
        pytest.skip(f"openai {openai.__version__}'s Responses events have no reasoning_text kinds")
    if tools and TYPES_REQUIRE_STRICT:
        pytest.skip(
            f"openai {openai.__version__}'s FunctionTool requires 'strict', which the request (so the echo) leaves out"
        )
    body: dict[str, Any] = {"model": MODEL, "input": "Describe the grid.", "max_output_tokens": 500}
    if tools:
        body["tools"] = [{"type": "function", "name": "final", "parameters": Colour.model_json_schema()}]
    async with serve(reasoning_ratio=reasoning_ratio) as client:
        whole = await client.post("/responses", json=body)
        streamed = await client.post("/responses", json={**body, "stream": True})
        cut = await client.post("/responses", json={**body, "max_output_tokens": 5})
    response = Response.model_validate(whole.json())
    assert whole.headers["x-request-id"] and response.status == "completed"
    assert [item.type for item in response.output] == [
        *(["reasoning"] if reasoning_ratio else []),
        "function_call" if tools else "message",
    ]
    assert response.usage and response.usage.output_tokens_details.reasoning_tokens == (
        64 if reasoning_ratio else 0
    )
    events = [EVENTS.validate_json(data) for data in sse_data(streamed.text)]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    kinds = [e.type for e in events]
    content = ["response.function_call_arguments.delta", "response.function_call_arguments.done"]
    if not tools:
        content = ["response.content_part.added", "response.output_text.delta", "response.output_text.done",
                   "response.content_part.done"]  # fmt: skip
    expected = ["response.created", "response.in_progress"]
    if reasoning_ratio:
        expected += [
            "response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
            "response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
        ]  # fmt: skip
    expected += ["response.output_item.added", *content, "response.output_item.done", "response.completed"]
    assert [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]] == expected
    final = events[-1].response
    assert [item.type for item in final.output] == [item.type for item in response.output]
    assert final.usage == response.usage and final.status == "completed"
    cut_response = Response.model_validate(cut.json())
    assert cut_response.status == "incomplete" and cut_response.incomplete_details is not None
