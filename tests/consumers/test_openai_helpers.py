"""openai-python's own helpers on the client: raw and streaming responses, the ``.stream(...)``
helpers, ``parse``, the Responses API, pages, plain ``get``/``post``, ``is_closed``, copies.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import openai
import pytest
from openai.pagination import AsyncPage
from openai.types import Model
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ParsedChatCompletion
from openai.types.responses import (
    Response,
    ResponseCompletedEvent,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseUsage,
)
from pydantic import BaseModel, Field

from tests.consumers.conftest import MODEL, ClientFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]

MESSAGES: list[Any] = [{"role": "user", "content": "Describe the grid."}]


class City(BaseModel):
    name: str = Field(examples=["Paris"])
    population: int = Field(examples=[2100000])


class GetWeather(BaseModel):
    """The weather in a city."""

    city: Literal["Paris", "Rome"]


EXPECTED = City(name="Paris", population=2100000)
WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "parameters": GetWeather.model_json_schema(),
    "strict": False,
}


async def test_with_raw_response_has_headers_and_parses(client: Any) -> None:
    raw = await client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.http_response.status_code == 200
    assert raw.headers["x-request-id"] and raw.request_id == raw.headers["x-request-id"]
    completion = raw.parse()
    assert isinstance(completion, ChatCompletion) and completion.choices[0].message.content
    assert completion._request_id == raw.headers["x-request-id"]
    # vLLM's own fields stay readable, as with openai's client
    assert completion.choices[0].message.reasoning_content  # type: ignore[attr-defined]


async def test_with_streaming_response_streams_sse_lines(client: Any) -> None:
    async with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=MESSAGES, stream=True
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-request-id"]
        lines = [line async for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    first = ChatCompletionChunk.model_validate(json.loads(lines[0].removeprefix("data: ")))
    assert first.choices[0].delta.role == "assistant"


async def test_create_with_tools_then_the_tool_result(client: Any) -> None:
    tools: Any = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    first = await client.chat.completions.create(model=MODEL, messages=MESSAGES, tools=tools)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (call,) = choice.message.tool_calls
    assert (call.function.name, json.loads(call.function.arguments)) == ("get_weather", {"city": "Paris"})
    follow_up = [
        *MESSAGES,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "Sunny."},
    ]
    second = await client.chat.completions.create(model=MODEL, messages=follow_up, tools=tools)
    assert second.choices[0].finish_reason == "stop" and second.choices[0].message.content


async def test_parse_with_a_model(client: Any) -> None:
    completion = await client.chat.completions.parse(model=MODEL, messages=MESSAGES, response_format=City)
    assert isinstance(completion, ParsedChatCompletion)
    assert completion.choices[0].message.parsed == EXPECTED


async def test_parse_with_a_tool(client: Any) -> None:
    tools: Any = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    completion = await client.chat.completions.parse(model=MODEL, messages=MESSAGES, tools=tools)
    (call,) = completion.choices[0].message.tool_calls
    assert call.function.parsed_arguments == GetWeather(city="Paris")


async def test_chat_completions_stream_helper(client: Any) -> None:
    async with client.chat.completions.stream(model=MODEL, messages=MESSAGES, response_format=City) as stream:
        kinds = [event.type async for event in stream]
        final = await stream.get_final_completion()
    assert "content.delta" in kinds and "content.done" in kinds
    assert final.choices[0].message.parsed == EXPECTED


async def test_chat_completions_stream_helper_with_a_tool(client: Any) -> None:
    tools: Any = [openai.pydantic_function_tool(GetWeather, name="get_weather")]
    async with client.chat.completions.stream(model=MODEL, messages=MESSAGES, tools=tools) as stream:
        done = [event async for event in stream if event.type == "tool_calls.function.arguments.done"]
    assert [(e.name, e.parsed_arguments) for e in done] == [("get_weather", GetWeather(city="Paris"))]


@pytest.mark.skipif(
    not hasattr(openai.resources.beta.AsyncBeta, "chat"), reason="this openai has no beta.chat"
)
async def test_beta_chat_completions_stream(client: Any) -> None:
    async with client.beta.chat.completions.stream(
        model=MODEL, messages=MESSAGES, response_format=City
    ) as stream:
        final = await stream.get_final_completion()
    assert final.choices[0].message.parsed == EXPECTED


async def test_responses_create(client: Any) -> None:
    response = await client.responses.create(model=MODEL, input="Describe the grid.")
    assert isinstance(response, Response) and response.status == "completed"
    assert response.output_text.strip()
    assert isinstance(response.output[-1], ResponseOutputMessage)
    assert isinstance(response.usage, ResponseUsage)
    assert response.usage.output_tokens_details.reasoning_tokens > 0
    assert response._request_id


async def test_responses_create_with_a_function_tool(client: Any) -> None:
    response = await client.responses.create(model=MODEL, input="Weather in Paris?", tools=[WEATHER_TOOL])
    (call,) = [item for item in response.output if isinstance(item, ResponseFunctionToolCall)]
    assert (call.name, json.loads(call.arguments)) == ("get_weather", {"city": "Paris"})
    follow_up = [
        {"role": "user", "content": "Weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in response.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "Sunny."},
    ]
    answer = await client.responses.create(model=MODEL, input=follow_up, tools=[WEATHER_TOOL])
    assert answer.output_text.strip()


async def test_responses_parse(client: Any) -> None:
    response = await client.responses.parse(
        model=MODEL, input="The largest city of France?", text_format=City
    )
    assert response.output_parsed == EXPECTED


async def test_responses_stream(client: Any) -> None:
    async with client.responses.stream(
        model=MODEL, input="The largest city of France?", text_format=City
    ) as stream:
        events = [event async for event in stream]
        final = await stream.get_final_response()
    kinds = [event.type for event in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed" and isinstance(events[-1], ResponseCompletedEvent)
    assert "response.output_text.delta" in kinds
    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert final.output_parsed == EXPECTED


async def test_responses_create_streamed_function_call(client: Any) -> None:
    stream = await client.responses.create(
        model=MODEL, input="Weather in Paris?", tools=[WEATHER_TOOL], stream=True
    )
    events = [event async for event in stream]
    kinds = [event.type for event in events]
    assert "response.function_call_arguments.delta" in kinds
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(done.arguments) == {"city": "Paris"}
    assert isinstance(events[-1], ResponseCompletedEvent)


async def test_models_list_is_a_page(client: Any) -> None:
    page = await client.models.list()
    assert isinstance(page, AsyncPage) and not page.has_next_page()
    assert [model.id for model in page.data] == [MODEL] and isinstance(page.data[0], Model)
    assert [model.id async for model in client.models.list()] == [MODEL]


async def test_get_and_post_on_plain_paths(client: Any) -> None:
    listing = await client.get("/models", cast_to=object)
    assert listing["data"][0]["id"] == MODEL
    completion = await client.post(
        "/chat/completions", body={"model": MODEL, "messages": MESSAGES}, cast_to=ChatCompletion
    )
    assert isinstance(completion, ChatCompletion) and completion.choices[0].message.content


async def test_is_closed_copy_and_with_options(client_factory: ClientFactory) -> None:
    client = client_factory()
    assert not client.is_closed()
    copied = client.copy(max_retries=1)
    scoped = client.with_options(timeout=30.0, max_retries=0)
    assert type(copied) is type(client) and type(scoped) is type(client)
    assert (copied.max_retries, scoped.max_retries, scoped.timeout) == (1, 0, 30.0)
    completion = await scoped.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert isinstance(completion, ChatCompletion)
    await client.close()
    assert client.is_closed()
