"""Deadline scopes: the asyncio.timeout-based one behaves like an anyio cancel scope."""

from __future__ import annotations

import sys

import anyio
import anyio.lowlevel
import pytest

from resilient_llm._scope import AnyioDeadline, AsyncioDeadline, deadline_scope

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(10)]


async def test_the_cheap_scope_is_used_on_asyncio_311(anyio_backend: str) -> None:
    scope = deadline_scope(anyio.current_time() + 1)
    expected = (
        AsyncioDeadline if anyio_backend == "asyncio" and sys.version_info >= (3, 11) else AnyioDeadline
    )
    assert isinstance(scope, expected)


async def test_expiry_is_swallowed_and_reported(anyio_backend: str) -> None:
    async with deadline_scope(anyio.current_time() + 0.02) as scope:
        await anyio.sleep(5)
    assert scope.cancelled_caught


async def test_moving_the_deadline_keeps_the_block_alive(anyio_backend: str) -> None:
    start = anyio.current_time()
    async with deadline_scope(start + 0.05) as scope:
        for _ in range(5):
            await anyio.sleep(0.03)
            scope.deadline = anyio.current_time() + 0.05
    assert not scope.cancelled_caught
    assert anyio.current_time() - start >= 0.15


async def test_cancel_from_outside(anyio_backend: str) -> None:
    async with anyio.create_task_group() as tg:
        scope_box: list[object] = []

        async def victim() -> None:
            async with deadline_scope(anyio.current_time() + 60) as scope:
                scope_box.append(scope)
                await anyio.sleep(60)
            scope_box.append(scope.cancelled_caught)

        tg.start_soon(victim)
        await anyio.sleep(0.01)
        scope_box[0].cancel()  # type: ignore[attr-defined]
    assert scope_box[1] is True


async def test_an_outer_cancellation_passes_through(anyio_backend: str) -> None:
    inner_caught = None
    with anyio.move_on_after(0.02) as outer:
        async with deadline_scope(anyio.current_time() + 60) as inner:
            await anyio.sleep(5)
        inner_caught = inner.cancelled_caught  # not reached: the outer cancellation propagates
    assert outer.cancelled_caught
    assert inner_caught is None


async def test_other_exceptions_propagate(anyio_backend: str) -> None:
    with pytest.raises(KeyError):
        async with deadline_scope(anyio.current_time() + 60):
            raise KeyError("x")


# --- the asyncio scopes' shared timers ------------------------------------------------------------
asyncio_only = pytest.mark.skipif(sys.version_info < (3, 11), reason="the asyncio scope needs 3.11")


@asyncio_only
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_many_scopes_expire_in_deadline_order_and_only_theirs(anyio_backend: str) -> None:
    """Scopes entered in any order expire at their own deadlines; ones that left their block never fire."""
    fired: list[int] = []
    now = anyio.current_time()
    delays = [0.05, 0.01, 0.04, 0.02, 0.03]

    async def one(i: int, delay: float) -> None:
        async with deadline_scope(now + delay) as scope:
            await anyio.sleep(5)
        assert scope.cancelled_caught
        fired.append(i)

    async def leaves_early() -> None:
        async with deadline_scope(now + 0.015) as scope:
            await anyio.lowlevel.checkpoint()
        await anyio.sleep(0.1)  # past its deadline: nothing may cancel this task now
        assert not scope.cancelled_caught

    with anyio.fail_after(3):
        async with anyio.create_task_group() as tg:
            tg.start_soon(leaves_early)
            for i, delay in enumerate(delays):
                tg.start_soon(one, i, delay)
    assert fired == sorted(range(len(delays)), key=lambda i: delays[i])


@asyncio_only
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_earlier_deadline_after_a_later_one_fires_on_time(anyio_backend: str) -> None:
    async with deadline_scope(anyio.current_time() + 60):
        start = anyio.current_time()
        async with deadline_scope(start + 0.02) as inner:
            await anyio.sleep(5)
        assert inner.cancelled_caught
        assert anyio.current_time() - start < 2


@asyncio_only
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_nested_scopes_each_catch_only_their_own_expiry(anyio_backend: str) -> None:
    now = anyio.current_time()
    async with deadline_scope(now + 0.02) as outer:
        async with deadline_scope(now + 60) as inner:
            await anyio.sleep(5)
        pytest.fail("the outer expiry must pass through the inner scope")  # pragma: no cover
    assert outer.cancelled_caught and not inner.cancelled_caught


@asyncio_only
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_past_deadline_or_a_cancel_before_entry_expires_at_once(anyio_backend: str) -> None:
    async with deadline_scope(anyio.current_time() - 1) as past:
        await anyio.sleep(5)
    assert past.cancelled_caught
    scope = deadline_scope(anyio.current_time() + 60)
    scope.cancel()
    async with scope:
        await anyio.sleep(5)
    assert scope.cancelled_caught


@asyncio_only
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_scopes_that_left_are_dropped_from_the_heap(anyio_backend: str) -> None:
    """Thousands of calls each leaving a scope minutes away do not pile up in the loop's timers."""
    from resilient_llm import _scope

    for _ in range(5000):
        async with deadline_scope(anyio.current_time() + 600):
            pass
    timers = _scope._timers()
    assert len(timers._heap) <= 2 * _scope._COMPACT_AT + 2


@asyncio_only
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_an_anyio_scope_inside_expires_as_anyio_says(anyio_backend: str) -> None:
    """Native cancellations are counted: an anyio scope inside sees its own expiry, ours is untouched."""
    async with deadline_scope(anyio.current_time() + 60) as ours:
        with anyio.move_on_after(0.01) as theirs:
            await anyio.sleep(5)
        await anyio.lowlevel.checkpoint()
    assert theirs.cancelled_caught and not ours.cancelled_caught
    with anyio.move_on_after(0.01) as theirs:
        async with deadline_scope(anyio.current_time() + 60) as ours:
            await anyio.sleep(5)
    assert theirs.cancelled_caught and not ours.cancelled_caught


@asyncio_only
@pytest.mark.timeout(30)
def test_a_loop_that_ran_scopes_is_freed_after_it_ends() -> None:
    """The loop's deadlines live on the loop: nothing the library keeps holds a finished loop alive
    (a registry keyed by loops would, through the timer handle and the entries that reference it)."""
    import asyncio
    import gc
    import weakref

    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        async with deadline_scope(anyio.current_time() + 600):  # leaves an entry minutes away
            await anyio.lowlevel.checkpoint()

    for _ in range(3):
        asyncio.run(main())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]
