"""Shared fixtures. Async tests run through the anyio plugin; by default on asyncio and trio."""

from __future__ import annotations

import pytest

from tests.redis_server import flaky_redis, redis_server  # fixtures of the coordination tests

__all__ = ["flaky_redis", "redis_server"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def _openai_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests run with a placeholder key, as a user's shell would have one (openai's client needs a key,
    a local vLLM ignores it), and without whatever OPENAI_* / RESILIENT_LLM_* the machine has set."""
    import os

    for name in list(os.environ):
        if name.startswith(("OPENAI_", "RESILIENT_LLM_")):
            monkeypatch.delenv(name)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-placeholder")
