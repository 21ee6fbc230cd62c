from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_llm._exceptions import ConfigError
from resilient_llm._policies._budget import RetryBudget
from resilient_llm.testing import FakeClock


def drain(budget: RetryBudget, limit: int = 10_000) -> int:
    """Withdraw until refused; how many were granted."""
    granted = 0
    while granted < limit and budget.try_withdraw():
        granted += 1
    return granted


@pytest.mark.parametrize(
    ("ratio", "min_per_second", "ttl", "requests", "expected"),
    [
        (0.2, 2.0, 10.0, 0, 20),  # reserve only: min_per_second * ttl
        (0.2, 0.0, 10.0, 0, 0),
        (0.2, 0.0, 10.0, 4, 0),  # 0.8 of a retry is not a retry
        (0.2, 0.0, 10.0, 5, 1),
        (0.2, 0.0, 10.0, 10, 2),
        (0.2, 2.0, 10.0, 100, 40),
        (0.29, 0.0, 10.0, 100, 29),  # 0.29 * 100 rounds to 28.999999999999996
        (0.1, 0.5, 1.0, 30, 3),  # reserve 0.5 + 3.0
        (1.0, 0.0, 5.0, 7, 7),
        (0.0, 1.0, 3.0, 1000, 3),
    ],
)
def test_withdrawals_allowed(
    ratio: float, min_per_second: float, ttl: float, requests: int, expected: int
) -> None:
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, ttl=ttl, clock=FakeClock())
    for _ in range(requests):
        budget.record_request()
    assert budget.available() == pytest.approx(ratio * requests + min_per_second * ttl)
    assert drain(budget) == expected
    assert budget.available() < 1


def test_defaults_are_finagle_like() -> None:
    budget = RetryBudget(clock=FakeClock())
    assert (budget.ratio, budget.reserve, budget.ttl) == (0.2, 20.0, 10.0)


def test_available_is_fractional_and_never_negative() -> None:
    budget = RetryBudget(ratio=0.25, min_per_second=0.0, ttl=10.0, clock=FakeClock())
    budget.record_request()
    assert budget.available() == 0.25
    assert not budget.try_withdraw()
    assert budget.available() == 0.25  # a refused withdrawal costs nothing


def test_tokens_come_back_as_the_window_slides() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.0, min_per_second=1.0, ttl=10.0, clock=clock)
    assert drain(budget) == 10
    clock.now = 5.0
    assert budget.available() == 0
    clock.now = 10.0  # the bucket [0, 1) has left the window
    assert budget.available() == 10
    assert drain(budget) == 10


def test_withdrawals_return_bucket_by_bucket() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.0, min_per_second=1.0, ttl=10.0, clock=clock)
    for second in range(10):
        clock.now = second + 0.5
        assert budget.try_withdraw()
    assert not budget.try_withdraw()
    clock.now = 10.5  # second 0 slid out: one retry back
    assert budget.available() == 1
    clock.now = 13.5
    assert budget.available() == 4


def test_earned_retries_expire_with_their_requests() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.5, min_per_second=0.0, ttl=10.0, clock=clock)
    for _ in range(10):
        budget.record_request()
    assert budget.available() == 5
    clock.now = 9.9
    assert budget.available() == 5
    clock.now = 10.0
    assert budget.available() == 0


def test_a_long_idle_gap_resets_everything() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=0.2, min_per_second=2.0, ttl=10.0, clock=clock)
    for _ in range(50):
        budget.record_request()
    drain(budget)
    clock.now = 1e9
    assert budget.available() == 20


def test_a_clock_stepping_back_counts_in_the_newest_bucket() -> None:
    clock = FakeClock(100.0)
    budget = RetryBudget(ratio=0.0, min_per_second=0.5, ttl=10.0, clock=clock)
    assert drain(budget) == 5
    clock.now = 50.0
    assert budget.available() == 0
    assert not budget.try_withdraw()


def test_memory_is_bounded_by_the_bucket_count() -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ttl=10.0, clock=clock)
    for step in range(10_000):
        clock.now = step * 0.37
        budget.record_request()
        budget.try_withdraw()
    assert len(budget._buckets) <= 10


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"ratio": -0.1}, "ratio must be a finite number >= 0, got -0.1"),
        ({"ratio": float("nan")}, "ratio"),
        ({"min_per_second": -1}, "min_per_second must be a finite number >= 0, got -1"),
        ({"min_per_second": float("inf")}, "min_per_second"),
        ({"ttl": 0}, "ttl must be a finite number > 0, got 0"),
        ({"ttl": -5.0}, "ttl"),
        ({"ttl": "10"}, "ttl"),
    ],
)
def test_bad_config_is_rejected(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match="RetryBudget") as info:
        RetryBudget(**kwargs)
    assert needle in str(info.value)


def test_keyword_only() -> None:
    with pytest.raises(TypeError):
        RetryBudget(0.2)  # type: ignore[call-arg]


def test_repr_shows_the_counts() -> None:
    budget = RetryBudget(clock=FakeClock())
    budget.record_request()
    assert "requests=1" in repr(budget)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_default_clock_is_the_event_loop_clock() -> None:
    budget = RetryBudget()
    budget.record_request()
    assert budget.try_withdraw()


# --- properties -----------------------------------------------------------------------------------

events = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=3, allow_subnormal=False),  # time step
        st.sampled_from(["request", "withdraw", "available"]),
    ),
    max_size=300,
)


@given(
    ratio=st.sampled_from([0.0, 0.1, 0.2, 0.5, 1.0, 2.0]),
    min_per_second=st.sampled_from([0.0, 0.3, 1.0, 2.0]),
    ttl=st.sampled_from([1.0, 2.5, 10.0]),
    steps=events,
)
def test_withdrawals_never_exceed_the_budget_over_any_window(
    ratio: float, min_per_second: float, ttl: float, steps: list[tuple[float, str]]
) -> None:
    """Withdrawing at time t: withdrawals in [t - 0.9 ttl, t] <= ratio * requests in [t - ttl, t] + reserve.

    (With 10 buckets the window is between 0.9 * ttl and ttl long; the margins absorb float rounding.)
    """
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, ttl=ttl, clock=clock)
    requests: list[float] = []
    withdrawals: list[float] = []
    width = ttl / 10
    reserve = min_per_second * ttl
    for dt, op in steps:
        clock.now += dt
        t = clock.now
        if op == "request":
            budget.record_request()
            requests.append(t)
        elif op == "available":
            assert budget.available() >= 0
        elif budget.try_withdraw():
            withdrawals.append(t)
            spent = sum(1 for w in withdrawals if w > t - ttl + width + 1e-6)
            earned = sum(1 for r in requests if r >= t - ttl - 1e-6)
            assert spent <= ratio * earned + reserve + 1e-6


@given(
    ratio=st.sampled_from([0.0, 0.2, 1.0]),
    min_per_second=st.sampled_from([0.0, 2.0]),
    steps=events,
)
def test_after_a_quiet_window_the_full_reserve_is_back(
    ratio: float, min_per_second: float, steps: list[tuple[float, str]]
) -> None:
    clock = FakeClock(0.0)
    budget = RetryBudget(ratio=ratio, min_per_second=min_per_second, ttl=10.0, clock=clock)
    for dt, op in steps:
        clock.now += dt
        if op == "request":
            budget.record_request()
        else:
            budget.try_withdraw()
    clock.now += 10.0
    assert budget.available() == pytest.approx(min_per_second * 10.0)


@given(n=st.integers(min_value=0, max_value=500), ratio=st.floats(min_value=0, max_value=5))
def test_a_burst_gets_exactly_its_share(n: int, ratio: float) -> None:
    budget = RetryBudget(ratio=ratio, min_per_second=0.0, ttl=10.0, clock=FakeClock())
    for _ in range(n):
        budget.record_request()
    granted = drain(budget)
    assert granted == int(ratio * n + 1e-9)  # no retry lost to float rounding, none granted beyond
