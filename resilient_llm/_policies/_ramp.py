"""Slow start: the concurrency limit grows from a fraction of its maximum to all of it.

Envoy's slow-start curve: ``level = max(start_fraction, (elapsed / duration) ** (1 / aggression))``,
capped at 1. ``aggression`` 1 is linear; above 1 the level rises fast early, below 1 it stays low
longer. A cold server (or one just back from an outage) then meets a few calls first instead of the
whole backlog at once.

All time values are in seconds, read from an injected ``clock``. Nothing here sleeps: the limiter
asks :meth:`Ramp.next_increase` when the limit will grow and sleeps until then itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

from .._clock import now
from ._validate import check_number

__all__ = ["DEFAULT_AGGRESSION", "DEFAULT_START_FRACTION", "Ramp"]

DEFAULT_START_FRACTION: Final = 0.1
DEFAULT_AGGRESSION: Final = 1.0


class Ramp:
    """A slow-start ramp of ``duration`` seconds (0 = no ramp: the level is always 1).

    ``start_fraction`` (0..1) is the level before and at the start; ``clock`` returns seconds
    (default: the event loop's clock).
    """

    __slots__ = ("_aggression", "_clock", "_duration", "_start_fraction", "_started_at")

    def __init__(
        self,
        *,
        duration: float,
        start_fraction: float = DEFAULT_START_FRACTION,
        aggression: float = DEFAULT_AGGRESSION,
        clock: Callable[[], float] = now,
    ) -> None:
        self._duration = check_number("Ramp", "duration", duration, at_least=0)
        self._start_fraction = check_number("Ramp", "start_fraction", start_fraction, at_least=0, at_most=1)
        self._aggression = check_number("Ramp", "aggression", aggression, above=0)
        self._clock = clock
        self._started_at: float | None = None

    @property
    def duration(self) -> float:
        """Seconds from start to full level."""
        return self._duration

    @property
    def started(self) -> bool:
        """Whether :meth:`start` or :meth:`restart` has been called."""
        return self._started_at is not None

    @property
    def done(self) -> bool:
        """True once the level is 1 for good (until :meth:`restart`)."""
        return self._level_at(self._clock()) >= 1.0

    def start(self) -> None:
        """Start the ramp now, unless it already started (idempotent: every call may call it)."""
        if self._started_at is None:
            self._started_at = self._clock()

    def restart(self) -> None:
        """Start over from ``start_fraction`` now, e.g. when the server has just recovered."""
        self._started_at = self._clock()

    def finish(self) -> None:
        """Go to full level now (until :meth:`restart`): something better than a timer now paces the
        calls, e.g. the server's ``/metrics``, read by the breaker."""
        self._started_at = self._clock() - self._duration

    def level(self) -> float:
        """The fraction of the maximum allowed now, in ``[start_fraction, 1]``."""
        return self._level_at(self._clock())

    def limit(self, maximum: int) -> int:
        """``max(1, ceil(maximum * level()))``: between 1 and ``maximum``."""
        _check_maximum(maximum)
        return self._limit_at(self._clock(), maximum)

    def next_increase(self, maximum: int) -> float | None:
        """The clock time (seconds) at which :meth:`limit` will next grow.

        ``None`` when it will not grow by itself: already at ``maximum``, or the ramp has not started.
        At the returned time the limit has grown (rounding is accounted for), so a caller that sleeps
        until then never spins.
        """
        _check_maximum(maximum)
        now = self._clock()
        current = self._limit_at(now, maximum)
        if current >= maximum or self._started_at is None:
            return None
        end = self._started_at + self._duration  # the limit is ``maximum`` from here on
        # The limit exceeds ``current`` once the curve exceeds current / maximum.
        when = self._started_at + self._duration * math.pow(current / maximum, self._aggression)
        step = math.ulp(max(abs(when), 1.0))
        while when < end and self._limit_at(when, maximum) <= current:
            when += step
            step *= 2
        return min(when, end)

    def _level_at(self, now: float) -> float:
        if self._duration == 0:
            return 1.0
        if self._started_at is None:
            return self._start_fraction
        if now >= self._started_at + self._duration:  # the same sum as ``end`` in next_increase
            return 1.0
        elapsed = max(0.0, now - self._started_at)
        curve = math.pow(elapsed / self._duration, 1 / self._aggression)
        return min(1.0, max(self._start_fraction, curve))

    def _limit_at(self, now: float, maximum: int) -> int:
        return max(1, math.ceil(maximum * self._level_at(now)))

    def __repr__(self) -> str:
        return (
            f"Ramp(duration={self._duration:g}, start_fraction={self._start_fraction:g}, "
            f"aggression={self._aggression:g}, started_at={self._started_at!r})"
        )


def _check_maximum(maximum: int) -> None:
    if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 1:
        raise ValueError(f"maximum must be an integer >= 1, got {maximum!r}")
