"""Settings: validation messages (owner, argument, value), defaults that always bound a call, environment variables."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

import resilient_llm
from resilient_llm import AsyncOpenAI, BreakerConfig, ConfigError, RateLimit, RetryBudgetConfig
from resilient_llm._compat import httpx_flavour as openai_httpx
from resilient_llm._config import ENV_VARS, Settings, read_env

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"deadline": 0}, "AsyncOpenAI: deadline must be a finite number > 0, got 0"),
        ({"deadline": -1}, "AsyncOpenAI: deadline must be a finite number > 0, got -1"),
        ({"deadline": math.inf}, "AsyncOpenAI: deadline must be a finite number > 0, got inf"),
        ({"deadline": "10"}, "AsyncOpenAI: deadline must be a finite number > 0, got '10'"),
        ({"stall_timeout": 0}, "AsyncOpenAI: stall_timeout must be a finite number > 0, got 0"),
        ({"max_retries": -1}, "AsyncOpenAI: max_retries must be an integer >= 0, got -1"),
        ({"max_retries": 1.5}, "AsyncOpenAI: max_retries must be an integer >= 0, got 1.5"),
        ({"max_concurrency": 0}, "AsyncOpenAI: max_concurrency must be an integer >= 1, got 0"),
        ({"ramp_up": -3}, "AsyncOpenAI: ramp_up must be a finite number >= 0, got -3"),
        ({"rate_limit": 0}, "AsyncOpenAI: rate_limit must be a finite number > 0, got 0"),
        (
            {"rate_limit": "fast"},
            "AsyncOpenAI: rate_limit must be requests per second (> 0), a RateLimit or None, got 'fast'",
        ),
        ({"timeout": -2}, "AsyncOpenAI: timeout must be a finite number > 0, got -2"),
        ({"breaker": "on"}, "AsyncOpenAI: breaker must be a BreakerConfig or None, got 'on'"),
        ({"backoff": 2.0}, "AsyncOpenAI: backoff must be a Backoff or a tenacity wait strategy, got 2.0"),
        ({"retry_budget": 0.2}, "AsyncOpenAI: retry_budget must be a RetryBudgetConfig, got 0.2"),
        ({"limits": {}}, "AsyncOpenAI: limits must be a Limits, got {}"),
    ],
)
def test_invalid_settings_name_the_owner_argument_and_value(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        AsyncOpenAI(base_url="http://127.0.0.1:1/v1", **kwargs)
    assert str(info.value) == message


def test_invalid_base_url_is_named() -> None:
    with pytest.raises(ConfigError, match="base_url") as info:
        AsyncOpenAI(base_url="localhost:8000")
    assert "localhost:8000" in str(info.value)


def test_with_options_checks_like_the_constructor() -> None:
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1")
    with pytest.raises(ConfigError) as info:
        c.with_options(deadline=-1)
    assert str(info.value) == "AsyncOpenAI: deadline must be a finite number > 0, got -1"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rate": 0}, "RateLimit: rate must be a finite number > 0, got 0"),
        ({"rate": 1, "burst": 0}, "RateLimit: burst must be an integer >= 1, got 0"),
    ],
)
def test_rate_limit_checks(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RateLimit(**kwargs)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": -0.1}, "RetryBudgetConfig: ratio must be a finite number >= 0, got -0.1"),
        (
            {"min_per_second": math.nan},
            "RetryBudgetConfig: min_per_second must be a finite number >= 0, got nan",
        ),
        ({"ttl": 0}, "RetryBudgetConfig: ttl must be a finite number > 0, got 0"),
    ],
)
def test_retry_budget_config_checks(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        RetryBudgetConfig(**kwargs)
    assert str(info.value) == message


def test_retry_budget_defaults_are_the_budgets_own() -> None:
    from resilient_llm._policies import _budget

    config = RetryBudgetConfig()
    assert (config.ratio, config.min_per_second, config.ttl) == (
        _budget.DEFAULT_RATIO,
        _budget.DEFAULT_MIN_PER_SECOND,
        _budget.DEFAULT_TTL,
    )
    budget = _budget.RetryBudget(clock=lambda: 0.0)
    assert (budget.ratio, budget.ttl) == (config.ratio, config.ttl)


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
    ("name", "value", "expected"),
    [
        ("RESILIENT_LLM_DEADLINE", "soon", "a finite number > 0"),
        ("RESILIENT_LLM_DEADLINE", "-1", "a finite number > 0"),
        ("RESILIENT_LLM_DEADLINE", "inf", "a finite number > 0"),
        ("RESILIENT_LLM_STALL_TIMEOUT", "-5", "a finite number > 0"),
        ("RESILIENT_LLM_TIMEOUT", "nan", "a finite number > 0"),
        ("RESILIENT_LLM_MAX_RETRIES", "x", "an integer >= 0"),
        ("RESILIENT_LLM_MAX_RETRIES", "-1", "an integer >= 0"),
        ("RESILIENT_LLM_MAX_CONCURRENCY", "8.5", "an integer >= 1"),
        ("RESILIENT_LLM_MAX_CONCURRENCY", "0", "an integer >= 1"),
        ("RESILIENT_LLM_RAMP_UP", "-3", "a finite number >= 0"),
        ("RESILIENT_LLM_RATE_LIMIT", "fast", "a finite number > 0"),
        ("RESILIENT_LLM_RATE_LIMIT", "-2", "a finite number > 0"),
        ("RESILIENT_LLM_RATE_LIMIT_BURST", "0", "an integer >= 1"),
        ("RESILIENT_LLM_BREAKER", "maybe", "'on' or 'off'"),
        ("RESILIENT_LLM_METRICS_URL", "gpu-1:8000/metrics", "an http(s) URL"),
        ("RESILIENT_LLM_METRICS_URL", "ftp://gpu-1/metrics", "an http(s) URL"),
    ],
)
def test_bad_environment_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    message = f"environment: {name} must be {expected}, got {value!r}"
    with pytest.raises(ConfigError) as info:
        read_env({name: value})
    assert str(info.value) == message
    monkeypatch.setenv(name, value)  # and as the constructor reads it
    with pytest.raises(ConfigError) as info:
        AsyncOpenAI(base_url="http://127.0.0.1:1/v1")
    assert str(info.value) == message


def test_a_bad_metrics_url_in_the_environment_is_masked() -> None:
    with pytest.raises(ConfigError) as info:
        read_env({"RESILIENT_LLM_METRICS_URL": "ftp://user:s3cret@gpu-1/metrics"})
    assert "s3cret" not in str(info.value) and "RESILIENT_LLM_METRICS_URL" in str(info.value)


def test_every_variable_is_documented_and_read() -> None:
    page = (Path(__file__).resolve().parent.parent / "docs" / "reference" / "environment.md").read_text()
    documented = set(re.findall(r"^\| `(RESILIENT_LLM_[A-Z_]+)`", page, re.M))
    assert documented == set(ENV_VARS)


def test_valid_environment_values_are_parsed() -> None:
    env = {
        "RESILIENT_LLM_DEADLINE": " 120 ",
        "RESILIENT_LLM_STALL_TIMEOUT": "OFF",
        "RESILIENT_LLM_TIMEOUT": "30.5",
        "RESILIENT_LLM_MAX_RETRIES": "0",
        "RESILIENT_LLM_MAX_CONCURRENCY": "8",
        "RESILIENT_LLM_RAMP_UP": "0",
        "RESILIENT_LLM_RATE_LIMIT": "5",
        "RESILIENT_LLM_RATE_LIMIT_BURST": "10",
        "RESILIENT_LLM_BREAKER": "on",
        "RESILIENT_LLM_METRICS_URL": "http://gpu-1:8000/metrics",
    }
    assert read_env(env) == {
        "deadline": 120.0,
        "stall_timeout": None,
        "timeout": 30.5,
        "max_retries": 0,
        "max_concurrency": 8,
        "ramp_up": 0.0,
        "rate_limit": 5.0,
        "rate_limit_burst": 10,
        "metrics_url": "http://gpu-1:8000/metrics",
    }


def test_breaker_off_from_environment() -> None:
    assert read_env({"RESILIENT_LLM_BREAKER": "off"}) == {"breaker": None}
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1", breaker=None)
    assert c.stats().breaker_state == "disabled"
    c = AsyncOpenAI(base_url="http://127.0.0.1:1/v1", breaker=BreakerConfig(failure_threshold=3))
    assert c.stats().breaker_state == "closed"


def test_rate_limit_forms() -> None:
    assert RateLimit(rate=10).effective_burst == 10
    assert RateLimit(rate=0.5).effective_burst == 1
