"""The limiter: cap, FIFO order, cancellation safety, ramp and breaker shaping (no real sleeps)."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_llm._limiter import BreakerWouldMissDeadline, Lane, Limiter
from resilient_llm._policies._ramp import Ramp
from resilient_llm.testing import FakeClock

pytestmark = pytest.mark.timeout(60)


def single(max_concurrency: int, **lane: Any) -> Limiter:
    """A limiter of one lane (a client of one server)."""
    return Limiter([Lane(max_concurrency=max_concurrency, **lane)])


# Each task: (arrival tick, hold ticks, fate) — fate: "ok", "error" or ("cancel", tick offset)
task_strategy = st.tuples(
    st.integers(0, 5),
    st.integers(0, 4),
    st.one_of(st.just("ok"), st.just("error"), st.tuples(st.just("cancel"), st.integers(0, 8))),
)


async def _scenario(cap: int, tasks: list[Any]) -> tuple[Limiter, list[int], list[int], int]:
    limiter = single(cap)
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
                limiter.release(limiter.lanes[0])

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
    limiter = single(cap)
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
        limiter.release(limiter.lanes[0])

    async with anyio.create_task_group() as tg:
        for i in range(len(arrivals)):
            tg.start_soon(worker, i)
        for _ in range(8):
            await anyio.lowlevel.checkpoint()
        for _ in range(cap):
            limiter.release(limiter.lanes[0])
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
    limiter = single(1)
    await limiter.acquire()
    with anyio.move_on_after(0.01):
        await limiter.acquire()
    assert limiter.queued == 0 and limiter.in_flight == 1
    limiter.release(limiter.lanes[0])
    assert limiter.in_flight == 0
    await limiter.acquire()
    assert limiter.in_flight == 1


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_release_hands_the_slot_to_the_head_of_the_queue(anyio_backend: str) -> None:
    limiter = single(1)
    await limiter.acquire()
    order: list[str] = []

    async def wait(name: str) -> None:
        await limiter.acquire()
        order.append(name)
        limiter.release(limiter.lanes[0])

    async with anyio.create_task_group() as tg:
        tg.start_soon(wait, "first")
        await anyio.sleep(0.001)
        tg.start_soon(wait, "second")
        await anyio.sleep(0.001)
        assert limiter.queued == 2
        limiter.release(limiter.lanes[0])
    assert order == ["first", "second"]


def test_capacity_follows_the_ramp() -> None:
    clock = FakeClock()
    ramp = Ramp(duration=10.0, start_fraction=0.1, clock=clock)
    limiter = Limiter([Lane(max_concurrency=100, ramp=ramp)], clock=clock)
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
    limiter = single(10, ramp=ramp)
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
    limiter = single(4, breaker=breaker)
    with anyio.fail_after(1), pytest.raises(BreakerWouldMissDeadline):
        await limiter.acquire(deadline=anyio.current_time() + 5)
    assert limiter.queued == 0 and limiter.in_flight == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_holding_breaker_holds_until_woken(anyio_backend: str) -> None:
    breaker: Any = StubBreaker("holding", 0, retry_in=None)
    limiter = single(4, breaker=breaker)
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


# --- several lanes (one per replica) ------------------------------------------------------------------

MODELS = (None, "a", "b")
lane_strategy = st.tuples(
    st.integers(1, 3), st.sampled_from([None, frozenset("a"), frozenset("b"), frozenset("ab")])
)
# (arrival tick, hold ticks, fate, model asked for, index of the lane to avoid or None)
call_strategy = st.tuples(
    st.integers(0, 5),
    st.integers(0, 4),
    st.one_of(st.just("ok"), st.just("error"), st.tuples(st.just("cancel"), st.integers(0, 8))),
    st.sampled_from(MODELS),
    st.one_of(st.none(), st.integers(0, 2)),
)


class CheckedLane(Lane):
    """A lane that checks, at the moment of each grant, that it had room and serves what was asked."""

    def _take(self) -> None:
        assert self.in_flight < self.capacity(), (self.in_flight, self.capacity())
        super()._take()


def lanes_of(specs: list[tuple[int, Any]]) -> list[Lane]:
    lanes: list[Lane] = []
    for i, (cap, models) in enumerate(specs):
        lane = CheckedLane(max_concurrency=cap, index=i)
        lane.models = models
        lanes.append(lane)
    return lanes


def serving(lanes: list[Lane], model: str | None) -> set[int]:
    """The lanes a call for ``model`` may get: those serving it, or all when none does."""
    ok = {lane.index for lane in lanes if lane.serves(model)}
    return ok or {lane.index for lane in lanes}


async def _lanes_scenario(
    specs: list[tuple[int, Any]], calls: list[Any], caps_change: list[int], seed: int
) -> tuple[Limiter, list[tuple[int, int]], int]:
    import random

    from resilient_llm._balance import PowerOfTwo

    lanes = lanes_of(specs)
    limiter = Limiter(lanes, choose=PowerOfTwo(random.Random(seed)))
    grants: list[tuple[int, int]] = []  # (call, lane)
    finished = 0

    async def worker(i: int, arrive: int, hold: int, fate: Any, model: str | None, avoid: int | None) -> None:
        nonlocal finished
        for _ in range(arrive):
            await anyio.lowlevel.checkpoint()
        avoid_lane = lanes[avoid] if avoid is not None and avoid < len(lanes) else None
        with anyio.CancelScope() as scope:
            if isinstance(fate, tuple):

                async def canceller() -> None:
                    for _ in range(fate[1]):
                        await anyio.lowlevel.checkpoint()
                    scope.cancel()

                tg.start_soon(canceller)
            lane = await limiter.acquire(model=model, avoid=avoid_lane)
            try:
                grants.append((i, lane.index))
                assert lane.index in serving(lanes, model)
                for _ in range(hold):
                    await anyio.lowlevel.checkpoint()
                if fate == "error":
                    raise ValueError("boom")
            except ValueError:
                pass
            finally:
                limiter.release(lane)
        finished += 1

    async def chaos() -> None:
        # the server's cap moves (as a scrape would move it) and the limiter is told
        for step, cap in enumerate(caps_change):
            await anyio.lowlevel.checkpoint()
            lane = lanes[step % len(lanes)]
            lane.server_cap = cap or None
            limiter.wake()
        for lane in lanes:
            lane.server_cap = None
        limiter.wake()

    async with anyio.create_task_group() as tg:
        tg.start_soon(chaos)
        for i, call in enumerate(calls):
            tg.start_soon(worker, i, *call)
    return limiter, grants, finished


@settings(max_examples=150, deadline=None)
@given(
    specs=st.lists(lane_strategy, min_size=1, max_size=3),
    calls=st.lists(call_strategy, min_size=1, max_size=14),
    caps_change=st.lists(st.integers(0, 3), max_size=6),
    seed=st.integers(0, 2**16),
)
def test_every_lane_keeps_its_cap_and_every_slot_returns_after_any_mix(
    specs: list[tuple[int, Any]], calls: list[Any], caps_change: list[int], seed: int
) -> None:
    limiter, grants, _finished = anyio.run(_lanes_scenario, specs, calls, caps_change, seed)
    # CheckedLane asserted room at each grant; served models are asserted by the workers
    assert all(lane.in_flight == 0 for lane in limiter.lanes)
    assert limiter.queued == 0
    assert len({call for call, _ in grants}) == len(grants)


class RecordingLimiter(Limiter):
    """Records each grant as it happens: (the waiter's id, carried in its deadline, the lane's index)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.granted: list[tuple[int, int]] = []

    def _hand(self, w: Any, lane: Lane) -> None:
        self.granted.append((int(w.deadline - ID_BASE), lane.index))
        super()._hand(w, lane)


ID_BASE = 1e9  # far-future deadlines that name the waiters (no breaker reads them here)


def accepts(lanes: list[Lane], model: str | None, avoid: int | None, lane: int) -> bool:
    """Whether a waiter for ``model`` that avoids lane ``avoid`` may use ``lane`` (no breakers: all open)."""
    eligible = serving(lanes, model)
    return lane in eligible and (lane != avoid or eligible == {lane})


async def _lanes_queued_order(
    specs: list[tuple[int, Any]], wants: list[tuple[str | None, int | None]], holds: list[int], seed: int
) -> tuple[RecordingLimiter, list[int]]:
    import random

    from resilient_llm._balance import PowerOfTwo

    lanes = lanes_of(specs)
    limiter = RecordingLimiter(lanes, choose=PowerOfTwo(random.Random(seed)))
    taken = [await limiter.acquire() for _ in range(sum(cap for cap, _ in specs))]  # every slot
    limiter.granted.clear()
    requested: list[int] = []

    async def worker(i: int) -> None:
        model, avoid = wants[i]
        requested.append(i)
        avoid_lane = lanes[avoid] if avoid is not None and avoid < len(lanes) else None
        lane = await limiter.acquire(deadline=ID_BASE + i, model=model, avoid=avoid_lane)
        for _ in range(holds[i]):
            await anyio.lowlevel.checkpoint()
        limiter.release(lane)

    async with anyio.create_task_group() as tg:
        for i in range(len(wants)):
            tg.start_soon(worker, i)
            await anyio.lowlevel.checkpoint()
        for _ in range(4):
            await anyio.lowlevel.checkpoint()
        for lane in taken:
            limiter.release(lane)
    return limiter, requested


@settings(max_examples=120, deadline=None)
@given(
    specs=st.lists(lane_strategy, min_size=2, max_size=3),
    data=st.lists(
        st.tuples(st.sampled_from(MODELS), st.one_of(st.none(), st.integers(0, 2)), st.integers(0, 4)),
        min_size=1,
        max_size=10,
    ),
    seed=st.integers(0, 2**16),
)
def test_a_slot_goes_to_the_oldest_waiter_that_may_use_it(
    specs: list[tuple[int, Any]], data: list[tuple[str | None, int | None, int]], seed: int
) -> None:
    wants = [(m, a) for m, a, _ in data]
    limiter, requested = anyio.run(_lanes_queued_order, specs, wants, [h for *_, h in data], seed)
    lanes = list(limiter.lanes)
    assert sorted(i for i, _ in limiter.granted) == sorted(requested)  # everyone served once
    waiting = list(requested)  # queue order (everyone queued before the first release)
    for i, lane in limiter.granted:
        assert accepts(lanes, *wants[i], lane)
        ahead = waiting[: waiting.index(i)]
        passed_over = [j for j in ahead if accepts(lanes, *wants[j], lane)]
        assert not passed_over, (i, lane, passed_over)  # nobody older could have had it
        waiting.remove(i)
    plain = [i for i, _ in limiter.granted if wants[i] == (None, None)]
    assert plain == [i for i in requested if wants[i] == (None, None)]  # FIFO among the unconstrained


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_retry_waits_for_another_lane_rather_than_go_back_while_one_lets_calls_in(
    anyio_backend: str,
) -> None:
    lanes = [Lane(max_concurrency=2, index=i) for i in range(2)]
    limiter = Limiter(lanes)
    for _ in range(10):
        lane = await limiter.acquire(avoid=lanes[0])
        assert lane is lanes[1]
        limiter.release(lane)
    held = [await limiter.acquire(avoid=lanes[0]) for _ in range(2)]
    assert held == [lanes[1], lanes[1]]
    got: list[Lane] = []

    async def retry() -> None:
        got.append(await limiter.acquire(avoid=lanes[0], front=True))

    async with anyio.create_task_group() as tg:
        tg.start_soon(retry)
        await anyio.sleep(0.01)
        assert not got and limiter.queued == 1  # lane 0 has room, but lane 1 lets calls in: it waits
        assert await limiter.acquire() is lanes[0]  # a call that may use lane 0 is not held behind it
        limiter.release(held.pop())
        with anyio.fail_after(1):
            while not got:
                await anyio.sleep(0.001)
    assert got == [lanes[1]]
    shut: Any = StubBreaker("open", 0, retry_in=30.0)
    one_left = Limiter([Lane(max_concurrency=2, index=0), Lane(max_concurrency=2, breaker=shut, index=1)])
    lane0 = one_left.lanes[0]
    assert await one_left.acquire(avoid=lane0) is lane0  # no other lane lets calls in: back it goes


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_lane_without_room_is_passed_over_and_open_breakers_everywhere_fail_fast(
    anyio_backend: str,
) -> None:
    shut: Any = StubBreaker("open", 0, retry_in=30.0)
    lanes = [Lane(max_concurrency=4, breaker=shut, index=0), Lane(max_concurrency=1, index=1)]
    limiter = Limiter(lanes)
    assert await limiter.acquire(deadline=anyio.current_time() + 5) is lanes[1]
    assert limiter.capacity() == 1
    with anyio.move_on_after(0.05) as waited:  # lane 1 may free up: this one waits
        await limiter.acquire(deadline=anyio.current_time() + 5)
    assert waited.cancelled_caught and limiter.queued == 0
    both = Limiter([Lane(max_concurrency=4, breaker=shut, index=i) for i in range(2)])
    with anyio.fail_after(1), pytest.raises(BreakerWouldMissDeadline):  # every lane shut past the deadline
        await both.acquire(deadline=anyio.current_time() + 5)
    assert both.queued == 0 and both.in_flight == 0


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_model_only_one_lane_serves_goes_there_and_an_unknown_one_anywhere(
    anyio_backend: str,
) -> None:
    lanes = [Lane(max_concurrency=4, index=i) for i in range(3)]
    lanes[0].models, lanes[1].models = frozenset({"big"}), frozenset({"small"})  # lane 2: unknown
    limiter = Limiter(lanes)
    got = {(await limiter.acquire(model="big")).index for _ in range(6)}
    assert got <= {0, 2} and 0 in got
    assert (await limiter.acquire(model="nobody-serves-it")).index in {0, 1, 2}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_breaker_that_changes_state_while_its_capacity_is_read_leaves_the_queue_sound(
    anyio_backend: str,
) -> None:
    # Reading the capacity ends the cooldown (open -> half_open); the breaker's listener wakes the
    # limiter again in the middle of a grant, as the engine's does.
    from resilient_llm._policies._breaker import Breaker, BreakerConfig

    clock = FakeClock()
    breaker = Breaker(BreakerConfig(failure_threshold=1, open_cooldown=1.0, half_open_probes=2), clock=clock)
    lanes = [Lane(max_concurrency=2, breaker=breaker, index=0), Lane(max_concurrency=1, index=1)]
    limiter = Limiter(lanes, clock=clock)
    breaker.add_listener(lambda old, new, reason: limiter.wake(everyone=True))
    first = await limiter.acquire()
    assert first is lanes[0]
    breaker.on_failure("connect")  # open: lane 0 takes nothing new
    got: list[int] = []

    async def call() -> None:
        lane = await limiter.acquire()
        got.append(lane.index)

    async with anyio.create_task_group() as tg:
        for _ in range(3):
            tg.start_soon(call)
            await anyio.sleep(0.001)
        assert got == [1] and limiter.queued == 2
        clock.now += 1.5  # the cooldown is over: noticed when the next release reads the capacity
        limiter.release(first)
        with anyio.fail_after(2):
            while len(got) < 3:
                await anyio.sleep(0.001)
    assert sorted(got) == [0, 0, 1] and limiter.queued == 0
    assert lanes[0].in_flight == 2 and lanes[1].in_flight == 1
