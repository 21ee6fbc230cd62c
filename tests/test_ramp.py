from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_llm._exceptions import ConfigError
from resilient_llm._policies._ramp import Ramp
from resilient_llm.testing import FakeClock


def started_ramp(clock: FakeClock, **kwargs: Any) -> Ramp:
    ramp = Ramp(clock=clock, **kwargs)
    ramp.start()
    return ramp


@pytest.mark.parametrize(
    ("aggression", "elapsed", "expected"),
    [
        (1.0, 0.0, 0.1),
        (1.0, 0.5, 0.1),  # the curve is below start_fraction
        (1.0, 2.5, 0.25),
        (1.0, 5.0, 0.5),
        (1.0, 9.99, 0.999),
        (1.0, 10.0, 1.0),
        (1.0, 1e6, 1.0),
        (2.0, 2.5, 0.5),  # sqrt(0.25): fast early
        (2.0, 0.4, 0.2),
        (0.5, 5.0, 0.25),  # 0.5 ** 2: slow early
        (0.5, 9.0, 0.81),
        (1.0, -3.0, 0.1),  # a clock stepping back
    ],
)
def test_level_table(aggression: float, elapsed: float, expected: float) -> None:
    clock = FakeClock()
    ramp = started_ramp(clock, duration=10.0, aggression=aggression)
    clock.now += elapsed
    assert ramp.level() == pytest.approx(expected)


@pytest.mark.parametrize(
    ("elapsed", "maximum", "expected"),
    [
        (0.0, 64, 7),  # ceil(6.4)
        (0.0, 5, 1),  # ceil(0.5)
        (0.0, 1, 1),
        (2.5, 64, 16),
        (5.0, 64, 32),
        (5.0, 3, 2),
        (9.0, 64, 58),  # ceil(57.6)
        (10.0, 64, 64),
        (99.0, 64, 64),
    ],
)
def test_limit_table(elapsed: float, maximum: int, expected: int) -> None:
    clock = FakeClock()
    ramp = started_ramp(clock, duration=10.0)
    clock.now += elapsed
    assert ramp.limit(maximum) == expected


def test_before_start_the_level_is_the_start_fraction() -> None:
    clock = FakeClock()
    ramp = Ramp(duration=10.0, start_fraction=0.25, clock=clock)
    clock.now += 100
    assert not ramp.started
    assert ramp.level() == 0.25
    assert ramp.limit(8) == 2
    assert ramp.next_increase(8) is None
    assert not ramp.done


def test_zero_duration_is_always_full() -> None:
    ramp = Ramp(duration=0.0, clock=FakeClock())
    assert ramp.level() == 1.0
    assert ramp.limit(64) == 64
    assert ramp.done
    assert ramp.next_increase(64) is None
    ramp.restart()
    assert ramp.level() == 1.0


def test_start_is_idempotent_and_restart_starts_over() -> None:
    clock = FakeClock()
    ramp = started_ramp(clock, duration=10.0)
    clock.now += 5
    ramp.start()  # no effect: already started
    assert ramp.level() == pytest.approx(0.5)
    clock.now += 5
    assert ramp.done
    ramp.restart()
    assert not ramp.done
    assert ramp.level() == pytest.approx(0.1)
    clock.now += 2.5
    assert ramp.level() == pytest.approx(0.25)


def test_zero_start_fraction_still_admits_one() -> None:
    ramp = started_ramp(FakeClock(), duration=10.0, start_fraction=0.0)
    assert ramp.level() == 0.0
    assert ramp.limit(100) == 1


@pytest.mark.parametrize(
    ("maximum", "elapsed", "expected_at"),
    [
        (10, 0.0, 1.0),  # limit 1 until the curve passes 0.1
        (10, 1.0, 1.0),  # ceil(10 * 0.1) is still 1: it grows just after
        (10, 4.2, 5.0),  # limit 5 → 6 once the curve passes 0.5
        (4, 0.0, 2.5),
        (64, 9.8, 9.84375),  # 63 → 64 once the curve passes 63/64
    ],
)
def test_next_increase_table(maximum: int, elapsed: float, expected_at: float) -> None:
    clock = FakeClock(1000.0)  # a start far from 0: times are compared as offsets
    ramp = started_ramp(clock, duration=10.0)
    clock.now += elapsed
    current = ramp.limit(maximum)
    at = ramp.next_increase(maximum)
    assert at is not None
    assert at - 1000.0 == pytest.approx(expected_at, abs=1e-9)
    clock.now = at
    assert ramp.limit(maximum) > current
    clock.now = math.nextafter(math.nextafter(at, 0), 0)
    assert ramp.limit(maximum) == current


def test_next_increase_is_none_at_maximum() -> None:
    clock = FakeClock()
    ramp = started_ramp(clock, duration=10.0)
    clock.now += 10
    assert ramp.next_increase(8) is None


@pytest.mark.parametrize("maximum", [0, -1, True, 2.0])
def test_maximum_must_be_a_positive_int(maximum: Any) -> None:
    ramp = started_ramp(FakeClock(), duration=10.0)
    with pytest.raises(ValueError, match="maximum"):
        ramp.limit(maximum)
    with pytest.raises(ValueError, match="maximum"):
        ramp.next_increase(maximum)


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"duration": -1.0}, "duration must be a finite number >= 0, got -1.0"),
        ({"duration": math.inf}, "duration"),
        (
            {"duration": 10.0, "start_fraction": 1.5},
            "start_fraction must be a finite number >= 0 and <= 1, got 1.5",
        ),
        ({"duration": 10.0, "start_fraction": -0.1}, "start_fraction"),
        ({"duration": 10.0, "aggression": 0}, "aggression must be a finite number > 0, got 0"),
        ({"duration": 10.0, "aggression": math.nan}, "aggression"),
    ],
)
def test_bad_config_is_rejected(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match="Ramp") as info:
        Ramp(**kwargs)
    assert needle in str(info.value)


def test_repr() -> None:
    assert repr(Ramp(duration=10.0, clock=FakeClock())).startswith("Ramp(duration=10, start_fraction=0.1")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_default_clock_is_the_event_loop_clock() -> None:
    ramp = Ramp(duration=3600.0)
    ramp.start()
    assert ramp.limit(100) == 10
    at = ramp.next_increase(100)
    assert at is not None
    assert at > ramp._started_at  # type: ignore[operator]


# --- properties -----------------------------------------------------------------------------------

durations = st.floats(min_value=0.001, max_value=1e4)
fractions = st.floats(min_value=0, max_value=1)
aggressions = st.floats(min_value=0.05, max_value=20)
maximums = st.integers(min_value=1, max_value=10_000)


@given(
    duration=durations,
    start_fraction=fractions,
    aggression=aggressions,
    maximum=maximums,
    steps=st.lists(st.floats(min_value=0, max_value=1e3), max_size=50),
)
def test_limit_is_monotone_and_bounded(
    duration: float, start_fraction: float, aggression: float, maximum: int, steps: list[float]
) -> None:
    clock = FakeClock(5e5)
    ramp = started_ramp(clock, duration=duration, start_fraction=start_fraction, aggression=aggression)
    previous = ramp.limit(maximum)
    assert previous >= max(1, math.floor(maximum * start_fraction))
    for dt in steps:
        clock.now += dt
        limit = ramp.limit(maximum)
        assert 1 <= previous <= limit <= maximum
        assert start_fraction <= ramp.level() <= 1
        previous = limit
    clock.now += duration
    assert ramp.limit(maximum) == maximum
    assert ramp.done


@given(duration=durations, start_fraction=fractions, aggression=aggressions, maximum=maximums)
def test_reaches_maximum_exactly_at_duration(
    duration: float, start_fraction: float, aggression: float, maximum: int
) -> None:
    clock = FakeClock(0.0)
    ramp = started_ramp(clock, duration=duration, start_fraction=start_fraction, aggression=aggression)
    clock.now = duration
    assert ramp.limit(maximum) == maximum
    assert ramp.next_increase(maximum) is None


@given(
    duration=durations,
    start_fraction=fractions,
    aggression=aggressions,
    maximum=st.integers(min_value=1, max_value=300),
    origin=st.sampled_from([0.0, 12.5, 3e5, 1e9]),
)
def test_sleeping_until_next_increase_steps_through_every_limit(
    duration: float, start_fraction: float, aggression: float, maximum: int, origin: float
) -> None:
    """A limiter that sleeps until ``next_increase`` sees the limit grow every time, and never spins."""
    clock = FakeClock(origin)
    ramp = started_ramp(clock, duration=duration, start_fraction=start_fraction, aggression=aggression)
    wakeups = 0
    while (at := ramp.next_increase(maximum)) is not None:
        before = ramp.limit(maximum)
        assert clock.now < at <= origin + duration
        clock.now = at
        assert ramp.limit(maximum) > before
        wakeups += 1
        assert wakeups <= maximum
    assert ramp.limit(maximum) == maximum
    assert clock.now <= origin + duration


@given(
    duration=durations,
    aggression=aggressions,
    maximum=st.integers(min_value=2, max_value=300),
    at_fraction=st.floats(min_value=0, max_value=0.999),
)
def test_next_increase_is_not_late(
    duration: float, aggression: float, maximum: int, at_fraction: float
) -> None:
    """Just before the returned time the limit has not grown yet (the limiter does not oversleep)."""
    clock = FakeClock(100.0)
    ramp = started_ramp(clock, duration=duration, start_fraction=0.0, aggression=aggression)
    clock.now += duration * at_fraction
    current = ramp.limit(maximum)
    at = ramp.next_increase(maximum)
    if at is None:
        assert current == maximum
        return
    clock.now = at - max(1e-9 * duration, 4 * math.ulp(at))
    assert ramp.limit(maximum) <= current
