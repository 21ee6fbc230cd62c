"""The one place the library reads the time and sleeps.

A clock is called for the time now — ``clock()``, monotonic seconds — and has ``wall()`` (seconds
since the epoch, for HTTP dates in ``Retry-After``) and ``sleep(seconds)``. Every policy (breaker,
budget, ramp, limiter) takes ``clock=`` and defaults to :data:`SYSTEM_CLOCK`; the call pipeline and the
server monitor use the one they are given. Tests give :class:`resilient_llm.testing.FakeClock`.

Inside an event loop the system clock is the loop's clock — the clock anyio's cancel scopes use — so
trio's ``MockClock`` drives everything in tests. On asyncio that is ``loop.time()``, read directly: this
runs several times per call on the hot path, and going through ``anyio.current_time()`` (backend
detection on every read) cost about a tenth of the library's time per call. Outside a loop
(``client.stats()`` after ``asyncio.run()`` returned, say) it falls back to ``time.monotonic()``, which
is what asyncio's loop clock is.
"""

from __future__ import annotations

import asyncio
import time
from typing import Final, Protocol

import anyio

_running_loop = asyncio._get_running_loop  # None outside an asyncio loop; a C function, no exception


_monotonic = time.monotonic
_ASYNCIO_TIME = asyncio.BaseEventLoop.time  # time.monotonic(); uvloop and others keep their own


def now() -> float:
    """The event loop's clock (monotonic seconds)."""
    loop = _running_loop()
    if loop is not None:
        return _monotonic() if type(loop).time is _ASYNCIO_TIME else loop.time()
    try:
        return anyio.current_time()  # trio (or another anyio backend)
    except RuntimeError:  # anyio.NoEventLoopError (older anyio: sniffio.AsyncLibraryNotFoundError)
        return time.monotonic()


class Clock(Protocol):
    def __call__(self) -> float:
        """Monotonic seconds now."""
        ...

    def wall(self) -> float:
        """Seconds since the epoch now (for HTTP dates)."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The event loop's clock, the system's wall clock, and ``anyio.sleep``."""

    __slots__ = ()

    # ``now`` itself (no frame of its own): the clock is read several times per call.
    __call__ = staticmethod(now)

    def wall(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await anyio.sleep(seconds)

    def __repr__(self) -> str:
        return "SYSTEM_CLOCK"


#: The clock everything uses unless a test gives another.
SYSTEM_CLOCK: Final = SystemClock()

__all__ = ["SYSTEM_CLOCK", "Clock", "SystemClock", "now"]
