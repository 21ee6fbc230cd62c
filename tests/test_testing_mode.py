"""``resilient_llm.testing``: the fake clock and the switch that keeps users' test suites from sleeping."""

from __future__ import annotations

import time
from collections.abc import Iterator

import anyio
import pytest
from aiohttp import web

import resilient_llm
from resilient_llm.testing import FakeClock, set_testing
from tests.stubserver import completion_body, serve

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def testing_mode() -> Iterator[None]:
    set_testing(True)
    try:
        yield
    finally:
        set_testing(False)


def test_fake_clock_moves_only_when_told() -> None:
    clock = FakeClock(10.0)
    assert clock() == 10.0 and clock.wall() == clock.epoch + 10.0
    clock.advance(2.5)
    clock.now += 1
    assert clock() == 13.5
    with pytest.raises(ValueError, match="does not go back"):
        clock.advance(-1)

    async def main() -> None:
        await clock.sleep(30)

    anyio.run(main)
    assert clock() == 43.5


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_testing_mode_retries_at_once_without_polling(anyio_backend: str, testing_mode: None) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits <= 3:
            return web.json_response({"error": {"message": "busy"}}, status=503, headers={"retry-after": "5"})
        return web.json_response(completion_body())

    with serve(handler) as server:
        async with resilient_llm.AsyncOpenAI(api_key="k", base_url=server.base_url, stall_timeout=None) as c:
            start = time.monotonic()
            reply = await c.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
            took = time.monotonic() - start
            assert c.stats().ramp_level == 1.0  # no slow-start ramp
    assert reply.choices[0].message.content == "hello"
    assert took < 1.0  # three retries, none of them slept (not even Retry-After's 5 s)
    assert not [r for r in server.requests if r["path"].endswith("/metrics")]
