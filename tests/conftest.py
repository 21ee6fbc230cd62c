"""Shared fixtures. Async tests run through the anyio plugin; by default on asyncio and trio."""

from __future__ import annotations

import pytest

from tests.redis_server import flaky_redis, redis_server  # fixtures of the coordination tests

__all__ = ["flaky_redis", "redis_server"]


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
