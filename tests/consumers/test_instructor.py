"""instructor: ``from_openai`` and ``patch``, modes TOOLS and JSON, partial streaming, the raw completion.

instructor accepts only an ``openai.AsyncOpenAI`` in ``from_openai`` and patches
``chat.completions.create`` in place. In TOOLS mode the simulator answers with a call to the forced
tool; in JSON mode it follows the schema instructor writes into the system message.
"""

from __future__ import annotations

from typing import Any

import pytest
from openai.types.chat import ChatCompletion
from pydantic import BaseModel, Field

from tests.consumers.conftest import MODEL, ClientFactory

# Not in the dev extra: its jiter pin would hold openai back at 3.3 (see pyproject and .ci/run).
instructor = pytest.importorskip(
    "instructor", reason='install it with: pip install --no-deps "instructor>=1.17"'
)

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(15)]

MESSAGES = [{"role": "user", "content": "Extract the user: Jason is 25 years old."}]
MODES = [instructor.Mode.TOOLS, instructor.Mode.JSON]


class User(BaseModel):
    name: str = Field(examples=["Jason"])
    age: int = Field(examples=[25])


EXPECTED = User(name="Jason", age=25)


def wrap(how: str, client: Any, mode: instructor.Mode) -> Any:
    if how == "from_openai":
        return instructor.from_openai(client, mode=mode)
    return instructor.patch(client, mode=mode)


@pytest.mark.parametrize("how", ["from_openai", "patch"])
@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
async def test_create_returns_the_response_model(
    client_factory: ClientFactory, how: str, mode: instructor.Mode
) -> None:
    wrapped = wrap(how, client_factory(), mode)
    user = await wrapped.chat.completions.create(model=MODEL, response_model=User, messages=MESSAGES)
    assert isinstance(user, User) and user.model_dump() == EXPECTED.model_dump()


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
async def test_create_with_completion_returns_the_model_and_openais_completion(
    client_factory: ClientFactory, mode: instructor.Mode
) -> None:
    wrapped = instructor.from_openai(client_factory(), mode=mode)
    user, completion = await wrapped.chat.completions.create_with_completion(
        model=MODEL, response_model=User, messages=MESSAGES
    )
    assert isinstance(user, User) and user.model_dump() == EXPECTED.model_dump()
    assert isinstance(completion, ChatCompletion)
    expected_finish = "tool_calls" if mode is instructor.Mode.TOOLS else "stop"
    assert completion.choices[0].finish_reason == expected_finish
    assert completion.usage is not None and completion.usage.completion_tokens > 0


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.name)
async def test_create_partial_streams_growing_models(
    client_factory: ClientFactory, mode: instructor.Mode
) -> None:
    wrapped = instructor.from_openai(client_factory(), mode=mode)
    partials = [
        partial
        async for partial in wrapped.chat.completions.create_partial(
            model=MODEL, response_model=User, messages=MESSAGES
        )
    ]
    assert partials
    assert partials[-1].model_dump() == EXPECTED.model_dump()
