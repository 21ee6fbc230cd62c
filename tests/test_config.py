"""Settings: validation messages, defaults that always bound a call, environment variables."""

from __future__ import annotations

import math
from typing import Any

import httpx
import pytest

import resilient_llm
from resilient_llm import AsyncOpenAI, BreakerConfig, ConfigError, RateLimit
from resilient_llm._compat import httpx_flavour as openai_httpx
from resilient_llm._config import Settings, read_env

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deadline": 0}, "deadline"),
        ({"deadline": -1}, "deadline"),
        ({"deadline": math.inf}, "deadline"),
        ({"deadline": "10"}, "deadline"),
        ({"stall_timeout": 0}, "stall_timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"max_retries": 1.5}, "max_retries"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"ramp_up": -3}, "ramp_up"),
        ({"rate_limit": 0}, "rate_limit"),
        ({"rate_limit": "fast"}, "rate_limit"),
        ({"timeout": -2}, "timeout"),
        ({"breaker": "on"}, "breaker"),
        ({"base_url": "localhost:8000"}, "base_url"),
    ],
)
def test_invalid_settings_name_the_argument_and_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        AsyncOpenAI(base_url=kwargs.pop("base_url", "http://127.0.0.1:1/v1"), **kwargs)
    assert message in str(info.value)
    assert repr(next(iter(kwargs.values()), "localhost:8000")) in str(info.value) or "localhost" in str(
        info.value
    )


def test_defaults_bound_every_call() -> None:
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1")
    assert math.isfinite(c.deadline) and c.deadline == resilient_llm.DEFAULT_DEADLINE
    assert c.stall_timeout == resilient_llm.DEFAULT_STALL_TIMEOUT
    assert c.timeout.connect == 5.0
    assert c.max_retries == resilient_llm.DEFAULT_MAX_RETRIES


def test_openai_timeout_meanings() -> None:
    # The attribute is openai's own: what was given, as openai-python keeps it.
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1", timeout=2500)
    assert c.timeout == 2500
    call = c._settings_for()
    assert call.connect_timeout == 2500 and call.silence == resilient_llm.DEFAULT_STALL_TIMEOUT
    for flavour in (httpx, openai_httpx):
        c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1", timeout=flavour.Timeout(30, connect=2))
        assert c.timeout.connect == 2
        assert c._settings_for().connect_timeout == 2 and c._settings_for().silence == 30


def test_silence_is_the_smaller_of_stall_timeout_and_read_timeout() -> None:
    assert Settings(stall_timeout=60).for_call(httpx.Timeout(10), 0).silence == 10
    assert Settings(stall_timeout=60).for_call(httpx.Timeout(600), 0).silence == 60
    assert Settings(stall_timeout=60).for_call(600.0, 0).silence == 60
    assert Settings(stall_timeout=None).for_call(httpx.Timeout(None), 0).silence is None
    assert Settings(stall_timeout=None).for_call(None, 0).silence is None


def test_api_key_never_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-SECRET")
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1")
    assert c.api_key == "sk-from-env-SECRET"
    assert "SECRET" not in repr(c)


def test_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RESILIENT_LLM_DEADLINE", "120")
    monkeypatch.setenv("RESILIENT_LLM_STALL_TIMEOUT", "off")
    monkeypatch.setenv("RESILIENT_LLM_MAX_CONCURRENCY", "8")
    monkeypatch.setenv("RESILIENT_LLM_RATE_LIMIT", "5")
    monkeypatch.setenv("RESILIENT_LLM_MAX_RETRIES", "3")
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1")
    assert c.deadline == 120 and c.stall_timeout is None and c.max_retries == 3
    assert c._engine.replicas[0].lane.max_concurrency == 8
    # explicit arguments win over the environment
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1", deadline=30, max_retries=1)
    assert c.deadline == 30 and c.max_retries == 1


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("RESILIENT_LLM_DEADLINE", "soon", "RESILIENT_LLM_DEADLINE must be a number"),
        ("RESILIENT_LLM_MAX_CONCURRENCY", "8.5", "RESILIENT_LLM_MAX_CONCURRENCY must be an integer"),
        ("RESILIENT_LLM_BREAKER", "maybe", "RESILIENT_LLM_BREAKER must be 'on' or 'off'"),
    ],
)
def test_bad_environment_values_are_named(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        read_env({name: value})


def test_breaker_off_from_environment() -> None:
    assert read_env({"RESILIENT_LLM_BREAKER": "off"}) == {"breaker": None}
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1", breaker=None)
    assert c.stats().breaker_state == "disabled"
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1", breaker=BreakerConfig(failure_threshold=3))
    assert c.stats().breaker_state == "closed"


def test_rate_limit_forms() -> None:
    assert RateLimit(rate=10).effective_burst == 10
    assert RateLimit(rate=0.5).effective_burst == 1
    with pytest.raises(ConfigError, match="burst"):
        RateLimit(rate=1, burst=0)
