"""pydantic-ai: ``OpenAIChatModel`` and ``OpenAIResponsesModel`` over ``OpenAIProvider(openai_client=...)``.

An agent run that calls a tool, structured output, ``run_stream``, a ``FallbackModel`` that falls
back from a 404 (an unknown model, answered as vLLM does), and openai's own ``Timeout`` type passed
through ``model_settings``.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest

# Consumer libraries need a newer openai than the oldest one supported: skipped where absent.
pytest.importorskip("pydantic_ai", reason='pip install "pydantic-ai-slim[openai]" (the dev extra has it)')
from pydantic import BaseModel, Field
from pydantic_ai import Agent, ModelHTTPError
from pydantic_ai.messages import ModelResponse, ToolCallPart
from pydantic_ai.models.fallback import FallbackModel
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from resilient_llm._compat import httpx_flavour  # httpx2 on openai 3.x: openai's own Timeout type
from tests.consumers.conftest import MODEL, ClientFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]

MODEL_CLASSES = [OpenAIChatModel, OpenAIResponsesModel]


class City(BaseModel):
    name: str = Field(examples=["Paris"])
    population: int = Field(examples=[2100000])


def weather_agent(model: Any, calls: list[str]) -> Agent[None, str]:
    agent: Agent[None, str] = Agent(model, instructions="Answer with the weather.")

    @agent.tool_plain
    def get_weather(city: Literal["Paris", "Rome"]) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}."

    return agent


@pytest.fixture(params=MODEL_CLASSES, ids=lambda cls: cls.__name__)
def model_class(request: pytest.FixtureRequest) -> Any:
    return request.param


def model(model_class: Any, client_factory: ClientFactory, name: str = MODEL) -> Any:
    return model_class(name, provider=OpenAIProvider(openai_client=client_factory()))


async def test_agent_run_calls_the_tool_then_answers(model_class: Any, client_factory: ClientFactory) -> None:
    calls: list[str] = []
    result = await weather_agent(model(model_class, client_factory), calls).run("Weather in Paris?")
    assert calls == ["Paris"]
    tool_calls = [
        part
        for message in result.all_messages()
        if isinstance(message, ModelResponse)
        for part in message.parts
        if isinstance(part, ToolCallPart)
    ]
    assert [(c.tool_name, c.args_as_dict()) for c in tool_calls] == [("get_weather", {"city": "Paris"})]
    assert isinstance(result.output, str) and result.output.strip()
    usage = result.usage
    assert usage.requests == 2 and usage.output_tokens > 0


async def test_structured_output_is_the_model(model_class: Any, client_factory: ClientFactory) -> None:
    agent = Agent(model(model_class, client_factory), output_type=City)
    result = await agent.run("The largest city of France?")
    assert result.output == City(name="Paris", population=2100000)


async def test_run_stream_streams_the_text(model_class: Any, client_factory: ClientFactory) -> None:
    agent: Agent[None, str] = Agent(model(model_class, client_factory))
    async with agent.run_stream("Describe the grid.") as run:
        deltas = [delta async for delta in run.stream_text(delta=True)]
        output = await run.get_output()
    assert deltas and "".join(deltas) == output and output.strip()


async def test_run_stream_with_a_tool_and_structured_output(
    model_class: Any, client_factory: ClientFactory
) -> None:
    calls: list[str] = []
    agent = weather_agent(model(model_class, client_factory), calls)
    async with agent.run_stream("Weather in Paris, then the city?", output_type=City) as run:
        output = await run.get_output()
    assert calls == ["Paris"] and output == City(name="Paris", population=2100000)


async def test_fallback_model_falls_back_from_a_404(model_class: Any, client_factory: ClientFactory) -> None:
    missing = model(model_class, client_factory, name="no-such-model")
    with pytest.raises(ModelHTTPError) as caught:
        await Agent(missing).run("hi")
    assert caught.value.status_code == 404
    fallback = FallbackModel(missing, model(model_class, client_factory))
    result = await Agent(fallback).run("hi")
    assert result.output.strip()
    assert result.all_messages()[-1].model_name == MODEL  # type: ignore[union-attr]


async def test_timeout_setting_in_openais_own_type(model_class: Any, client_factory: ClientFactory) -> None:
    agent: Agent[None, str] = Agent(model(model_class, client_factory))
    result = await agent.run("hi", model_settings={"timeout": httpx_flavour.Timeout(30.0)})
    assert result.output.strip()
