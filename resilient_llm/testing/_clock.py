"""``FakeClock``: time that moves only when told, for tests of code that reads or sleeps on a clock.

Every policy takes ``clock=`` (a callable returning seconds), and the call pipeline a clock with
``wall()`` and ``sleep()`` too; a ``FakeClock`` is both::

    clock = FakeClock()
    breaker = Breaker(BreakerConfig(), clock=clock)
    clock.advance(30)          # or: clock.now = 30.0
    await clock.sleep(5)       # moves the clock 5 s at once, then yields to the event loop once
"""

from __future__ import annotations

import anyio
import anyio.lowlevel

__all__ = ["FakeClock"]

#: ``wall()`` is this many seconds after the epoch when ``now`` is 0 (a fixed, recent date).
DEFAULT_EPOCH = 1_767_225_600.0  # 2026-01-01T00:00:00Z


class FakeClock:
    """A clock for tests: ``clock()`` is :attr:`now`, which changes only by :meth:`advance`,
    :meth:`sleep` or assignment."""

    __slots__ = ("epoch", "now")

    def __init__(self, now: float = 0.0, *, epoch: float = DEFAULT_EPOCH) -> None:
        self.now = float(now)
        self.epoch = epoch

    def __call__(self) -> float:
        return self.now

    def wall(self) -> float:
        """Seconds since the epoch: ``epoch + now``."""
        return self.epoch + self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock does not go back: advance({seconds!r})")
        self.now += seconds

    async def sleep(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward at once, then let other tasks run once."""
        self.advance(max(0.0, seconds))
        await anyio.lowlevel.checkpoint()

    def __repr__(self) -> str:
        return f"FakeClock(now={self.now!r})"
