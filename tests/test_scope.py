"""Deadline scopes: the asyncio.timeout-based one behaves like an anyio cancel scope."""

from __future__ import annotations

import sys

import anyio
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
