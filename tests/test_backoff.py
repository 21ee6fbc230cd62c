from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_llm._exceptions import ConfigError
from resilient_llm._policies._backoff import Backoff

JITTERS = ["full", "decorrelated", "equal", "none"]


def fixed(value: float) -> Any:
    return lambda: value


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 8.0), (60, 8.0), (10**6, 8.0), (10**100, 8.0)],
)
def test_no_jitter_is_capped_exponential(attempt: int, expected: float) -> None:
    assert Backoff(jitter="none").delay(attempt, None) == expected


@pytest.mark.parametrize(
    ("jitter", "attempt", "prev", "rand", "expected"),
    [
        ("full", 1, None, 0.0, 0.0),
        ("full", 1, None, 0.5, 0.25),
        ("full", 3, None, 0.5, 1.0),
        ("full", 7, None, 0.25, 2.0),  # ceiling capped at 8
        ("equal", 1, None, 0.0, 0.25),
        ("equal", 3, None, 0.0, 1.0),
        ("equal", 3, None, 0.5, 1.5),
        ("equal", 9, None, 1.0, 8.0),
        ("decorrelated", 1, None, 0.0, 0.5),  # no previous delay: prev = base
        ("decorrelated", 1, None, 0.5, 1.0),  # U(0.5, 1.5)
        ("decorrelated", 2, 2.0, 0.5, 3.25),  # U(0.5, 6)
        ("decorrelated", 2, 2.0, 1.0, 6.0),
        ("decorrelated", 5, 6.0, 0.9, 8.0),  # min(cap, ...)
        ("decorrelated", 2, 0.1, 0.0, 0.5),  # prev below base counts as base
        ("decorrelated", 2, math.inf, 0.5, 8.0),
        ("decorrelated", 2, math.nan, 0.0, 0.5),
        ("none", 2, 100.0, 0.7, 1.0),  # prev and rand are ignored
    ],
)
def test_delay_table(jitter: Any, attempt: int, prev: float | None, rand: float, expected: float) -> None:
    assert Backoff(jitter=jitter).delay(attempt, prev, fixed(rand)) == pytest.approx(expected)


def test_tiny_base_still_reaches_the_cap_exactly() -> None:
    backoff = Backoff(base=5e-324, cap=1.0, jitter="none")  # 2 ** -1074
    assert backoff.delay(1074, None) == 0.5
    assert backoff.delay(1075, None) == 1.0


def test_openai_like_defaults() -> None:
    backoff = Backoff()
    assert (backoff.base, backoff.cap, backoff.jitter) == (0.5, 8.0, "full")


def test_rand_outside_unit_interval_is_clamped() -> None:
    backoff = Backoff(jitter="full")
    assert backoff.delay(3, None, fixed(-5.0)) == 0.0
    assert backoff.delay(3, None, fixed(100.0)) == 8.0
    assert backoff.delay(3, None, fixed(math.nan)) == 0.0


def test_zero_base_never_waits() -> None:
    for jitter in JITTERS:
        assert Backoff(base=0, cap=0, jitter=jitter).delay(5, 3.0, fixed(0.9)) == 0.0  # type: ignore[arg-type]


@pytest.mark.parametrize("attempt", [0, -1, True, 1.0])
def test_attempt_must_be_a_positive_int(attempt: Any) -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff().delay(attempt, None)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"base": -1}, "base must be a finite number >= 0, got -1"),
        ({"base": math.nan}, "base"),
        ({"base": math.inf, "cap": math.inf}, "base"),
        ({"base": "0.5"}, "base"),
        ({"base": True}, "base"),
        ({"cap": math.inf}, "cap"),
        ({"base": 2.0, "cap": 1.0}, "cap must be a finite number >= 2, got 1.0"),
        ({"jitter": "random"}, "jitter must be one of 'full', 'decorrelated', 'equal', 'none', got 'random'"),
    ],
)
def test_bad_config_is_rejected(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match="Backoff") as info:
        Backoff(**kwargs)
    assert needle in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_is_frozen_and_keyword_only() -> None:
    backoff = Backoff()
    with pytest.raises(dataclasses.FrozenInstanceError):
        backoff.base = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        Backoff(0.5)  # type: ignore[call-arg]


def test_default_rand_is_used() -> None:
    delays = {Backoff(jitter="full").delay(5, None) for _ in range(50)}
    assert len(delays) > 1
    assert all(0 <= d <= 8.0 for d in delays)


@st.composite
def configs(draw: st.DrawFn) -> Backoff:
    base = draw(st.floats(min_value=0, max_value=100))
    cap = draw(st.floats(min_value=base, max_value=1e6))
    return Backoff(base=base, cap=cap, jitter=draw(st.sampled_from(JITTERS)))


attempts = st.one_of(st.integers(min_value=1, max_value=2000), st.integers(min_value=1, max_value=10**400))
prevs = st.one_of(st.none(), st.floats(allow_nan=True, allow_infinity=True))
rands = st.floats(min_value=0, max_value=1, exclude_max=True)


@given(backoff=configs(), attempt=attempts, prev=prevs, rand=rands)
def test_delay_is_always_within_zero_and_cap(
    backoff: Backoff, attempt: int, prev: float | None, rand: float
) -> None:
    delay = backoff.delay(attempt, prev, fixed(rand))
    assert math.isfinite(delay)
    assert 0 <= delay <= backoff.cap


@given(backoff=configs(), attempt=st.integers(min_value=1, max_value=1100), rand=rands)
def test_full_jitter_upper_bound_follows_the_exponential(backoff: Backoff, attempt: int, rand: float) -> None:
    full = dataclasses.replace(backoff, jitter="full")
    exponential = Fraction(backoff.base) * 2 ** (attempt - 1)  # exact, no overflow
    bound = float(min(Fraction(backoff.cap), exponential))
    assert full.delay(attempt, None, fixed(rand)) <= bound
    # the supremum of the distribution is the bound itself
    assert full.delay(attempt, None, fixed(math.nextafter(1.0, 0.0))) == pytest.approx(bound)


@given(backoff=configs(), attempt=attempts)
def test_ceiling_is_monotone_in_attempt(backoff: Backoff, attempt: int) -> None:
    assert backoff.ceiling(attempt) <= backoff.ceiling(attempt + 1) <= backoff.cap


@given(backoff=configs(), attempt=attempts, prev=st.floats(min_value=0, max_value=1e9), rand=rands)
def test_decorrelated_stays_between_base_and_three_times_prev(
    backoff: Backoff, attempt: int, prev: float, rand: float
) -> None:
    decorrelated = dataclasses.replace(backoff, jitter="decorrelated")
    delay = decorrelated.delay(attempt, prev, fixed(rand))
    assert backoff.base <= delay <= min(backoff.cap, 3 * max(prev, backoff.base))


@given(backoff=configs(), attempt=attempts, rand=rands)
def test_equal_jitter_keeps_at_least_half_the_ceiling(backoff: Backoff, attempt: int, rand: float) -> None:
    equal = dataclasses.replace(backoff, jitter="equal")
    ceiling = backoff.ceiling(attempt)
    assert ceiling / 2 <= equal.delay(attempt, None, fixed(rand)) <= ceiling
