"""One simulated vLLM per module, and each scenario run twice: with ``openai.AsyncOpenAI`` as the
reference and with ``resilient_llm.AsyncOpenAI``, the drop-in under test.

Every telemetry and tracing switch of the consumer libraries is off before they are imported: the
tests never reach outside this machine.
"""

from __future__ import annotations

import os

os.environ["OPENAI_AGENTS_DISABLE_TRACING"] = "1"
os.environ["LANGSMITH_TRACING"] = "false"
os.environ["LANGSMITH_TRACING_V2"] = "false"
os.environ["LANGCHAIN_TRACING_V2"] = "false"
os.environ["LANGCHAIN_TRACING"] = "false"
os.environ["OTEL_SDK_DISABLED"] = "true"
os.environ.pop("OPENAI_BASE_URL", None)

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import openai
import pytest

import resilient_llm
from resilient_llm.testing import SimulatorConfig, SimulatorThread

MODEL = "openai/gpt-oss-20b"
#: Fast simulated time: a 256-token answer takes about 50 ms.
FAST: dict[str, Any] = {"time_scale": 0.01, "tick": 0.002, "sample_interval": 1.0}

ClientFactory = Callable[..., Any]  # -> openai.AsyncOpenAI (ours is one once the rewrite lands)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the consumer libraries run on asyncio


@pytest.fixture(scope="module")
def simulator_config() -> SimulatorConfig:
    """The module's simulator; a module overrides this fixture to serve another model name."""
    return SimulatorConfig(**FAST)


@pytest.fixture(scope="module")
def simulator(simulator_config: SimulatorConfig) -> Iterator[SimulatorThread]:
    with SimulatorThread(simulator_config) as sim:
        yield sim


@pytest.fixture(params=["openai", "resilient"])
async def client_factory(
    request: pytest.FixtureRequest, simulator: SimulatorThread
) -> AsyncIterator[ClientFactory]:
    """Makes clients of the parametrized class against the simulator; closes them after the test."""
    cls: Any = openai.AsyncOpenAI if request.param == "openai" else resilient_llm.AsyncOpenAI
    made: list[Any] = []

    def make(**options: Any) -> Any:
        client = cls(base_url=simulator.base_url, api_key="EMPTY", **options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


@pytest.fixture
def client(client_factory: ClientFactory) -> Any:
    return client_factory()
