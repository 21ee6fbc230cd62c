"""tenacity wait strategies as ``backoff=``: the delays are the strategy's, asked as tenacity asks them."""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest
import tenacity
from aiohttp import web

import resilient_llm
from resilient_llm import AsyncOpenAI, Backoff, ConfigError
from resilient_llm._policies._tenacity import TenacityBackoff, is_tenacity_wait
from tests.stubserver import completion_body, serve

pytestmark = pytest.mark.timeout(20)

URL = "http://127.0.0.1:1/v1"


@pytest.mark.parametrize(
    ("wait", "delays"),
    [
        (tenacity.wait_fixed(2), [2, 2, 2, 2]),
        (tenacity.wait_none(), [0, 0, 0, 0]),
        (tenacity.wait_exponential(multiplier=0.5, max=2), [0.5, 1, 2, 2]),
        (tenacity.wait_incrementing(start=1, increment=2), [1, 3, 5, 7]),
        (
            tenacity.wait_chain(tenacity.wait_fixed(1), tenacity.wait_fixed(1), tenacity.wait_fixed(4)),
            [1, 1, 4, 4],
        ),
        (tenacity.wait_fixed(1) + tenacity.wait_exponential(multiplier=1), [2, 3, 5, 9]),
    ],
)
def test_delay_n_is_what_tenacity_waits_after_attempt_n(wait: Any, delays: list[float]) -> None:
    backoff = TenacityBackoff(wait)
    assert [backoff.delay(n, None) for n in range(1, len(delays) + 1)] == delays


def test_random_exponential_stays_within_the_windows_of_full_jitter() -> None:
    """``wait_random_exponential(multiplier=0.5, max=8)`` is the default ``Backoff()``, drawn by tenacity."""
    random.seed(7)
    backoff, reference = TenacityBackoff(tenacity.wait_random_exponential(multiplier=0.5, max=8)), Backoff()
    for attempt in range(1, 9):
        samples = [backoff.delay(attempt, None) for _ in range(200)]
        assert min(samples) >= 0 and max(samples) <= reference.ceiling(attempt)
        assert max(samples) > 0.8 * reference.ceiling(attempt)  # the whole window is used


class _Broken(tenacity.wait.wait_base):
    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, retry_state: Any) -> float:
        return self.value


@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_a_negative_or_nan_wait_is_no_wait(value: float) -> None:
    assert TenacityBackoff(_Broken(value)).delay(1, None) == 0.0


def test_the_client_takes_a_wait_strategy_and_with_options_too() -> None:
    wait = tenacity.wait_random_exponential(multiplier=0.5, max=8)
    assert is_tenacity_wait(wait) and not is_tenacity_wait(Backoff())
    client = AsyncOpenAI(base_url=URL, backoff=wait)
    assert client._settings.backoff == TenacityBackoff(wait)
    fixed = tenacity.wait_fixed(3)
    copy = client.with_options(backoff=fixed)
    assert copy._settings.backoff.delay(5, None) == 3
    assert client._settings.backoff.wait is wait  # the original keeps its own


@pytest.mark.parametrize(
    ("backoff", "message"),
    [
        (
            tenacity.wait_exception(lambda exc: 1.0),
            "AsyncOpenAI: backoff must be a tenacity wait strategy that reads only the attempt number, got ",
        ),
        (lambda state: 1.0, "AsyncOpenAI: backoff must be a Backoff or a tenacity wait strategy, got "),
        (
            tenacity.stop_after_attempt(3),
            "AsyncOpenAI: backoff must be a Backoff or a tenacity wait strategy, got ",
        ),
    ],
)
def test_what_cannot_serve_as_a_backoff_is_refused_at_construction(backoff: Any, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        AsyncOpenAI(base_url=URL, backoff=backoff)
    assert str(info.value).startswith(message)


@pytest.mark.anyio
async def test_retries_sleep_what_the_strategy_says(anyio_backend: str) -> None:
    async def handler(request: web.Request, hits: int) -> web.StreamResponse:
        if hits < 3:
            return web.json_response({"error": {"message": "busy"}}, status=503)
        return web.json_response(completion_body("ok"))

    events: list[Any] = []
    with serve(handler) as server:
        async with resilient_llm.AsyncOpenAI(
            api_key="sk-test",
            base_url=server.base_url,
            breaker=None,
            ramp_up=0,
            stall_timeout=None,
            backoff=tenacity.wait_incrementing(start=0.3, increment=0.3),
            hooks=[events.append],
        ) as client:
            answer = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "hi"}]
            )
    assert answer.choices[0].message.content == "ok"
    planned = [e.delay for e in events if isinstance(e, resilient_llm.RetryScheduled)]
    assert planned == pytest.approx([0.3, 0.6])  # after attempt 1, after attempt 2
    times = [r["t"] for r in server.requests]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert len(gaps) == 2 and gaps[0] >= 0.3 and gaps[1] >= 0.6 and sum(gaps) < 2.0  # and slept as planned
