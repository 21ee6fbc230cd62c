"""The retry sleep decision: Retry-After honoured, backoff kept, never past the deadline."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_llm import Backoff
from resilient_llm._policies._retry_after import MIN_ATTEMPT_TIME, retry_delay

pytestmark = pytest.mark.timeout(30)


@pytest.mark.parametrize(
    ("backoff", "retry_after", "remaining", "expected"),
    [
        (0.3, None, 10.0, 0.3),
        (0.3, 1.0, 10.0, 1.0),  # Retry-After wins when longer
        (2.0, 1.0, 10.0, 2.0),  # ... and never shortens the backoff
        (0.3, 30.0, 2.0, None),  # would sleep past the deadline: fail now
        (1.99, None, 2.0, None),  # would leave no time for the attempt
        (0.0, 0.0, MIN_ATTEMPT_TIME, 0.0),
    ],
)
def test_retry_delay_table(
    backoff: float, retry_after: float | None, remaining: float, expected: float | None
) -> None:
    assert retry_delay(backoff, retry_after=retry_after, remaining=remaining) == expected


@given(
    attempt=st.integers(1, 10_000),
    base=st.floats(0.001, 5),
    cap=st.floats(0.001, 60),
    jitter=st.sampled_from(["full", "decorrelated", "equal", "none"]),
    retry_after=st.one_of(st.none(), st.floats(0, 3600)),
    remaining=st.floats(0, 7200),
    u=st.floats(0, 1, exclude_max=True),
)
def test_every_planned_sleep_fits_the_backoff_bounds_and_the_deadline(
    attempt: int, base: float, cap: float, jitter: str, retry_after: float | None, remaining: float, u: float
) -> None:
    if cap < base:
        base, cap = cap, base
    policy = Backoff(base=base, cap=cap, jitter=jitter)  # type: ignore[arg-type]
    backoff = policy.delay(attempt, None, rand=lambda: u)
    assert 0 <= backoff <= cap
    delay = retry_delay(backoff, retry_after=retry_after, remaining=remaining)
    if delay is not None:
        assert delay + MIN_ATTEMPT_TIME <= remaining  # never a sleep that ends past the deadline
        assert delay >= backoff
        if retry_after is not None:
            assert delay >= retry_after  # Retry-After honoured
