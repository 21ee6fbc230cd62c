"""openai-agents: ``Runner.run`` and ``Runner.run_streamed`` with a function tool, on the chat
completions and the Responses model, and a client installed with ``set_default_openai_client``.

Tracing is off (``set_tracing_disabled`` and ``OPENAI_AGENTS_DISABLE_TRACING``). Agents strips an
``openai/`` prefix from a model given by name, so this module's simulator serves ``gpt-oss-20b``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import pytest

# Consumer libraries need a newer openai than the oldest one supported: skipped where absent.
pytest.importorskip("agents", reason='pip install "openai-agents" (the dev extra has it)')
from agents import (
    Agent,
    ModelSettings,
    OpenAIChatCompletionsModel,
    OpenAIResponsesModel,
    Runner,
    function_tool,
    set_default_openai_api,
    set_default_openai_client,
    set_tracing_disabled,
)
from agents.items import ToolCallItem, ToolCallOutputItem
from agents.models import _openai_shared

from resilient_llm.testing import SimulatorConfig
from tests.consumers.conftest import FAST, ClientFactory

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]

MODEL = "gpt-oss-20b"
MODELS = {"chat_completions": OpenAIChatCompletionsModel, "responses": OpenAIResponsesModel}


@pytest.fixture(scope="module")
def simulator_config() -> SimulatorConfig:
    return SimulatorConfig(model=MODEL, **FAST)


@pytest.fixture(autouse=True)
def no_tracing() -> None:
    set_tracing_disabled(True)


def weather_agent(model: Any, calls: list[str]) -> Agent[Any]:
    @function_tool
    def get_weather(city: Literal["Paris", "Rome"]) -> str:
        """The weather in a city."""
        calls.append(city)
        return f"Sunny in {city}."

    return Agent(
        name="weather",
        instructions="Answer with the weather.",
        model=model,
        tools=[get_weather],
        model_settings=ModelSettings(include_usage=True),  # streamed chat completions report usage
    )


def called(items: list[Any]) -> list[tuple[str, str]]:
    return [
        (item.raw_item.name, item.raw_item.arguments)  # chat and Responses models both give these
        for item in items
        if isinstance(item, ToolCallItem)
    ]


def assert_tool_round_trip(result: Any, calls: list[str]) -> None:
    assert calls == ["Paris"]
    assert called(result.new_items) == [("get_weather", '{"city": "Paris"}')]
    assert [i.output for i in result.new_items if isinstance(i, ToolCallOutputItem)] == ["Sunny in Paris."]
    assert isinstance(result.final_output, str) and result.final_output.strip()
    usage = result.context_wrapper.usage
    assert usage.requests == 2 and usage.output_tokens > 0 and usage.input_tokens > 0


@pytest.mark.parametrize("api", list(MODELS))
async def test_runner_run_calls_the_tool(client_factory: ClientFactory, api: str) -> None:
    calls: list[str] = []
    model = MODELS[api](MODEL, openai_client=client_factory())
    result = await Runner.run(weather_agent(model, calls), "Weather in Paris?")
    assert_tool_round_trip(result, calls)


@pytest.mark.parametrize("api", list(MODELS))
async def test_runner_run_streamed_calls_the_tool(client_factory: ClientFactory, api: str) -> None:
    calls: list[str] = []
    model = MODELS[api](MODEL, openai_client=client_factory())
    run = Runner.run_streamed(weather_agent(model, calls), "Weather in Paris?")
    kinds = {event.type async for event in run.stream_events()}
    assert {"raw_response_event", "run_item_stream_event"} <= kinds
    assert_tool_round_trip(run, calls)


@pytest.fixture
def restore_defaults() -> Iterator[None]:
    client, responses = (
        _openai_shared.get_default_openai_client(),
        _openai_shared.get_use_responses_by_default(),
    )
    yield
    _openai_shared.set_default_openai_client(client)  # type: ignore[arg-type]
    _openai_shared.set_use_responses_by_default(responses)


@pytest.mark.usefixtures("restore_defaults")
@pytest.mark.parametrize("api", list(MODELS))
async def test_set_default_openai_client(client_factory: ClientFactory, api: Any) -> None:
    set_default_openai_client(client_factory(), use_for_tracing=False)
    set_default_openai_api(api)
    calls: list[str] = []
    result = await Runner.run(weather_agent(MODEL, calls), "Weather in Paris?")
    assert_tool_round_trip(result, calls)
