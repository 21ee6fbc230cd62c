"""A retry budget: retries may add at most a fixed fraction to the traffic, so failures cannot snowball.

In the spirit of Finagle's ``RetryBudget``: over a sliding window of ``ttl`` seconds, the client may
send ``ratio`` retries per first attempt it made in that window, plus a reserve of
``min_per_second * ttl`` retries so that a client sending little traffic can still retry at all.
When a server goes down, every call fails and wants to retry; the budget lets through the reserve
and then about ``ratio`` extra load, instead of multiplying the load by the number of attempts.

All time values are in seconds. The window is kept in ``_BUCKETS`` buckets of ``ttl / _BUCKETS``
seconds each, so every method is O(1) amortised and memory is bounded whatever the request rate.
The window therefore spans between ``ttl - ttl / _BUCKETS`` and ``ttl`` seconds.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from typing import Final

from .._clock import now
from ._validate import check_number

__all__ = ["DEFAULT_MIN_PER_SECOND", "DEFAULT_RATIO", "DEFAULT_TTL", "RetryBudget"]

DEFAULT_RATIO: Final = 0.2
DEFAULT_MIN_PER_SECOND: Final = 2.0
DEFAULT_TTL: Final = 10.0

_BUCKETS: Final = 10
#: Absorbs float rounding in ``ratio * requests`` (0.29 * 100 is 28.999999999999996).
_EPSILON: Final = 1e-9


class _Bucket:
    __slots__ = ("index", "requests", "withdrawals")

    def __init__(self, index: int) -> None:
        self.index = index
        self.requests = 0
        self.withdrawals = 0


class RetryBudget:
    """Retries allowed in the last ``ttl`` seconds: ``ratio`` × first attempts + ``min_per_second × ttl``.

    ``clock`` returns the current time in seconds (default: the event loop's clock, which needs a
    running event loop); it is read once per method call.
    """

    __slots__ = ("_buckets", "_clock", "_ratio", "_requests", "_reserve", "_ttl", "_width", "_withdrawals")

    def __init__(
        self,
        *,
        ratio: float = DEFAULT_RATIO,
        min_per_second: float = DEFAULT_MIN_PER_SECOND,
        ttl: float = DEFAULT_TTL,
        clock: Callable[[], float] = now,
    ) -> None:
        self._ratio = check_number("RetryBudget", "ratio", ratio, at_least=0)
        min_per_second = check_number("RetryBudget", "min_per_second", min_per_second, at_least=0)
        self._ttl = check_number("RetryBudget", "ttl", ttl, above=0)
        self._reserve = min_per_second * self._ttl
        self._width = self._ttl / _BUCKETS
        self._clock = clock
        self._buckets: deque[_Bucket] = deque()
        self._requests = 0
        self._withdrawals = 0

    @property
    def ratio(self) -> float:
        """Retries earned per first attempt."""
        return self._ratio

    @property
    def reserve(self) -> float:
        """Retries allowed per window with no traffic at all: ``min_per_second * ttl``."""
        return self._reserve

    @property
    def ttl(self) -> float:
        """Length of the sliding window, in seconds."""
        return self._ttl

    def record_request(self) -> None:
        """Count one first attempt (not a retry): it earns ``ratio`` retries for the next ``ttl`` seconds."""
        bucket = self._current()
        bucket.requests += 1
        self._requests += 1

    def try_withdraw(self) -> bool:
        """Ask to send one retry: True (and one retry is spent) if the budget allows it, else False."""
        bucket = self._current()
        if self._balance() < 1 - _EPSILON:
            return False
        bucket.withdrawals += 1
        self._withdrawals += 1
        return True

    def available(self) -> float:
        """How many retries could be withdrawn now (fractional: ``ratio`` per request; never negative)."""
        self._current()
        return max(0.0, self._balance())

    def _balance(self) -> float:
        return self._ratio * self._requests + self._reserve - self._withdrawals

    def _current(self) -> _Bucket:
        """Drop buckets that slid out of the window and return the bucket for now."""
        now = self._clock()
        buckets = self._buckets
        index = math.floor(now / self._width)
        if buckets and index < buckets[-1].index:
            index = buckets[-1].index  # a clock that stepped back counts as the newest bucket
        oldest_kept = index - _BUCKETS + 1
        while buckets and buckets[0].index < oldest_kept:
            gone = buckets.popleft()
            self._requests -= gone.requests
            self._withdrawals -= gone.withdrawals
        if not buckets or buckets[-1].index != index:
            buckets.append(_Bucket(index))
        return buckets[-1]

    def __repr__(self) -> str:
        return (
            f"RetryBudget(ratio={self._ratio:g}, reserve={self._reserve:g}, ttl={self._ttl:g}, "
            f"requests={self._requests}, withdrawals={self._withdrawals})"
        )
