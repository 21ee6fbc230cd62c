"""langchain-openai: ``ChatOpenAI`` given this client (``async_client`` and ``root_async_client``).

``ainvoke`` and ``astream``; ``with_structured_output`` with every method, invoked and streamed;
``bind_tools`` through a tool round trip; and the Responses API (``use_responses_api=True``),
invoked, streamed, structured and with tools. ChatOpenAI calls ``with_raw_response.create/parse``
for every non-streaming call and ``beta.chat.completions.stream`` for streamed structured output.
"""

from __future__ import annotations

import json
from typing import Any, Literal

import pytest

# Consumer libraries need a newer openai than the oldest one supported: skipped where absent.
pytest.importorskip("langchain_openai", reason='pip install "langchain-openai" (the dev extra has it)')
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from pydantic import BaseModel, Field

from resilient_llm.testing import SimulatorThread
from tests.consumers.conftest import MODEL, ClientFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]

METHODS = ["function_calling", "json_schema", "json_mode"]


class City(BaseModel):
    """A city and its population."""

    name: str = Field(examples=["Paris"])
    population: int = Field(examples=[2100000])


EXPECTED = City(name="Paris", population=2100000)


@tool
def get_weather(city: Literal["Paris", "Rome"]) -> str:
    """The weather in a city."""
    return f"Sunny in {city}."


@pytest.fixture
def make_llm(client_factory: ClientFactory, simulator: SimulatorThread) -> Any:
    def make(**options: Any) -> ChatOpenAI:
        client = client_factory()
        return ChatOpenAI(
            model=MODEL,
            async_client=client.chat.completions,
            root_async_client=client,
            api_key="EMPTY",  # type: ignore[arg-type]
            base_url=simulator.base_url,
            **options,
        )

    return make


def prompt_for(method: str) -> str:
    if method == "json_mode":  # json_mode sends no schema: the prompt carries it, as the docs say
        return f"The largest city of France, as JSON following this schema: {json.dumps(City.model_json_schema())}"
    return "The largest city of France?"


async def test_ainvoke_returns_an_ai_message(make_llm: Any) -> None:
    message = await make_llm().ainvoke("Describe the grid.")
    assert isinstance(message, AIMessage) and isinstance(message.content, str) and message.content.strip()
    assert message.response_metadata["finish_reason"] == "stop"
    assert message.response_metadata["model_name"] == MODEL
    assert message.usage_metadata is not None and message.usage_metadata["output_tokens"] > 0


async def test_astream_yields_chunks(make_llm: Any) -> None:
    chunks = [chunk async for chunk in make_llm(stream_usage=True).astream("Describe the grid.")]
    assert len(chunks) > 1 and all(isinstance(c, AIMessageChunk) for c in chunks)
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert isinstance(whole.content, str) and whole.content.strip()
    assert whole.usage_metadata is not None and whole.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize("method", METHODS)
async def test_with_structured_output(make_llm: Any, method: str) -> None:
    structured = make_llm().with_structured_output(City, method=method)
    assert await structured.ainvoke(prompt_for(method)) == EXPECTED


# langchain-openai model_dump()s openai's ParsedChatCompletion stream events; pydantic warns that
# the generic `parsed` field holds a model where `None` was declared. Third-party, harmless.
@pytest.mark.filterwarnings("ignore:Pydantic serializer warnings:UserWarning")
@pytest.mark.parametrize("method", METHODS)
async def test_with_structured_output_streamed(make_llm: Any, method: str) -> None:
    structured = make_llm().with_structured_output(City, method=method)
    parts = [part async for part in structured.astream(prompt_for(method))]
    assert parts and parts[-1] == EXPECTED


async def test_bind_tools_round_trip(make_llm: Any) -> None:
    llm = make_llm().bind_tools([get_weather])
    question = HumanMessage("Weather in Paris?")
    call = await llm.ainvoke([question])
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [("get_weather", {"city": "Paris"})]
    assert call.response_metadata["finish_reason"] == "tool_calls"
    result = await get_weather.ainvoke(call.tool_calls[0])
    assert isinstance(result, ToolMessage)
    answer = await llm.ainvoke([question, call, result])
    assert not answer.tool_calls and answer.text.strip()


async def test_responses_api_ainvoke_and_astream(make_llm: Any) -> None:
    llm = make_llm(use_responses_api=True)
    message = await llm.ainvoke("Describe the grid.")
    assert isinstance(message, AIMessage) and message.text.strip()
    assert message.response_metadata["status"] == "completed"
    assert message.usage_metadata is not None and message.usage_metadata["output_tokens"] > 0
    chunks = [chunk async for chunk in llm.astream("Describe the grid.")]
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert len(chunks) > 1 and whole.text.strip()


async def test_responses_api_structured_output(make_llm: Any) -> None:
    structured = make_llm(use_responses_api=True).with_structured_output(City)
    assert await structured.ainvoke("The largest city of France?") == EXPECTED
    parts = [part async for part in structured.astream("The largest city of France?")]
    assert parts and parts[-1] == EXPECTED


async def test_responses_api_bind_tools(make_llm: Any) -> None:
    llm = make_llm(use_responses_api=True).bind_tools([get_weather])
    call = await llm.ainvoke("Weather in Paris?")
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [("get_weather", {"city": "Paris"})]
    chunks = [chunk async for chunk in llm.astream("Weather in Paris?")]
    whole = chunks[0]
    for chunk in chunks[1:]:
        whole += chunk
    assert [(c["name"], c["args"]) for c in whole.tool_calls] == [("get_weather", {"city": "Paris"})]
