"""The Limits setting: documented defaults, validation naming the argument."""

from __future__ import annotations

import dataclasses

import pytest

from resilient_llm._exceptions import ConfigError
from resilient_llm._limits import DEFAULT_LIMITS, Limits

pytestmark = pytest.mark.timeout(10)


def test_defaults_are_the_documented_ones() -> None:
    assert (
        Limits(
            max_body_bytes=64 * 1024 * 1024,
            max_event_bytes=8 * 1024 * 1024,
            max_error_body_bytes=8 * 1024,
            max_redirects=5,
        )
        == DEFAULT_LIMITS
    )


def test_limits_are_frozen_and_keyword_only() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT_LIMITS.max_body_bytes = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        Limits(1)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"max_body_bytes": 0}, "Limits: max_body_bytes must be an integer >= 1, got 0"),
        ({"max_event_bytes": 1.5}, "Limits: max_event_bytes must be an integer >= 1, got 1.5"),
        ({"max_error_body_bytes": -1}, "Limits: max_error_body_bytes must be an integer >= 0, got -1"),
        ({"max_redirects": True}, "Limits: max_redirects must be an integer >= 0, got True"),
    ],
)
def test_bad_values_name_the_argument(kw: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Limits(**kw)  # type: ignore[arg-type]
    assert str(info.value) == message
