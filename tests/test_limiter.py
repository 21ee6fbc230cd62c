"""The limiter: cap, FIFO order, cancellation safety, ramp and breaker shaping (no real sleeps)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_llm._limiter import BreakerWouldMissDeadline, Limiter
from resilient_llm._policies._ramp import Ramp
from resilient_llm.testing import FakeClock

pytestmark = pytest.mark.timeout(60)


# Each task: (arrival tick, hold ticks, fate) — fate: "ok", "error" or ("cancel", tick offset)
task_strategy = st.tuples(
    st.integers(0, 5),
    st.integers(0, 4),
    st.one_of(st.just("ok"), st.just("error"), st.tuples(st.just("cancel"), st.integers(0, 8))),
)


async def _scenario(cap: int, tasks: list[Any]) -> tuple[Limiter, list[int], list[int], int]:
    limiter = Limiter(max_concurrency=cap)
    grants: list[int] = []
    requested: list[int] = []
    peak = 0

    async def worker(i: int, arrive: int, hold: int, fate: Any) -> None:
        nonlocal peak
        for _ in range(arrive):
            await anyio.lowlevel.checkpoint()
        requested.append(i)
        with anyio.CancelScope() as scope:
            if isinstance(fate, tuple):

                async def canceller() -> None:
                    for _ in range(fate[1]):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                tg.start_soon(canceller)
            await limiter.acquire()
            try:
                grants.append(i)
                peak = max(peak, limiter.in_flight)
                assert limiter.in_flight <= cap
                for _ in range(hold):
                    await anyio.lowlevel.checkpoint()
                if fate == "error":
                    raise ValueError("boom")
            except ValueError:
                pass
            finally:
                limiter.release()

    async with anyio.create_task_group() as tg:
        for i, (arrive, hold, fate) in enumerate(tasks):
            tg.start_soon(worker, i, arrive, hold, fate)
    return limiter, grants, requested, peak


@settings(max_examples=150, deadline=None)
@given(cap=st.integers(1, 4), tasks=st.lists(task_strategy, min_size=1, max_size=12))
def test_cap_holds_and_every_slot_returns_after_any_mix(cap: int, tasks: list[Any]) -> None:
    limiter, grants, _requested, peak = anyio.run(_scenario, cap, tasks)
    assert peak <= cap
    assert limiter.in_flight == 0
    assert limiter.queued == 0
    assert len(set(grants)) == len(grants)


async def _queued_order(cap: int, arrivals: list[int], holds: list[int]) -> tuple[list[int], list[int]]:
    """Every slot is taken first, so each task queues; grants must follow queue order."""
    limiter = Limiter(max_concurrency=cap)
    for _ in range(cap):
        await limiter.acquire()
    requested: list[int] = []
    grants: list[int] = []

    async def worker(i: int) -> None:
        for _ in range(arrivals[i]):
            await anyio.lowlevel.checkpoint()
        requested.append(i)
        await limiter.acquire()
        grants.append(i)
        for _ in range(holds[i]):
            await anyio.lowlevel.checkpoint()
        limiter.release()

    async with anyio.create_task_group() as tg:
        for i in range(len(arrivals)):
            tg.start_soon(worker, i)
        for _ in range(8):
            await anyio.lowlevel.checkpoint()
        for _ in range(cap):
            limiter.release()
    return requested, grants


@settings(max_examples=80, deadline=None)
@given(
    cap=st.integers(1, 3),
    data=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4)), min_size=1, max_size=10),
)
def test_queued_calls_are_granted_in_arrival_order(cap: int, data: list[tuple[int, int]]) -> None:
    requested, grants = anyio.run(_queued_order, cap, [a for a, _ in data], [h for _, h in data])
    assert grants == requested


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_cancelled_waiter_leaves_no_trace(anyio_backend: str) -> None:
    limiter = Limiter(max_concurrency=1)
    await limiter.acquire()
    with anyio.move_on_after(0.01):
        await limiter.acquire()
    assert limiter.queued == 0 and limiter.in_flight == 1
    limiter.release()
    assert limiter.in_flight == 0
    await limiter.acquire()
    assert limiter.in_flight == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_release_hands_the_slot_to_the_head_of_the_queue(anyio_backend: str) -> None:
    limiter = Limiter(max_concurrency=1)
    await limiter.acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        await limiter.acquire()
        order.append(name)
        limiter.release()

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "first")
        await anyio.sleep(0.001)
        tg.start_soon(wait, "second")
        await anyio.sleep(0.001)
        assert limiter.queued == 2
        limiter.release()
    assert order == ["first", "second"]


def test_capacity_follows_the_ramp() -> None:
    clock = FakeClock()
    ramp = Ramp(duration=10.0, start_fraction=0.1, clock=clock)
    limiter = Limiter(max_concurrency=100, ramp=ramp, clock=clock)
    ramp.start()
    assert limiter.capacity() == 10
    clock.now = 5.0
    assert limiter.capacity() == 50
    clock.now = 10.0
    assert limiter.capacity() == 100


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_ramp_lets_waiters_in_as_it_rises(anyio_backend: str) -> None:
    # real trio clock but a tiny ramp: waiters beyond the initial 1 slot get in as the ramp steps up
    ramp = Ramp(duration=0.2, start_fraction=0.1)
    limiter = Limiter(max_concurrency=10, ramp=ramp)
    with anyio.fail_after(5):
        for _ in range(10):
            await limiter.acquire()
    assert limiter.in_flight == 10


class StubBreaker:
    def __init__(self, state: str, allowance: int | None, retry_in: float | None) -> None:
        self.state, self._allowance, self._retry_in, self.reason = state, allowance, retry_in, "test"

    def allowance(self) -> int | None:
        return self._allowance

    def retry_in(self) -> float | None:
        return self._retry_in


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_open_breaker_past_the_deadline_fails_fast(anyio_backend: str) -> None:
    breaker: Any = StubBreaker("open", 0, retry_in=30.0)
    limiter = Limiter(max_concurrency=4, breaker=breaker)
    with anyio.fail_after(1), pytest.raises(BreakerWouldMissDeadline):
        await limiter.acquire(deadline=anyio.current_time() + 5)
    assert limiter.queued == 0 and limiter.in_flight == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_holding_breaker_holds_until_woken(anyio_backend: str) -> None:
    breaker: Any = StubBreaker("holding", 0, retry_in=None)
    limiter = Limiter(max_concurrency=4, breaker=breaker)
    got = anyio.Event()

    async def call() -> None:
        await limiter.acquire(deadline=anyio.current_time() + 60)
        got.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        await anyio.sleep(0.01)
        assert limiter.held_by_breaker == 1 and not got.is_set()
        breaker.state, breaker._allowance = "closed", None
        limiter.wake()
        with anyio.fail_after(1):
            await got.wait()
    assert limiter.in_flight == 1
