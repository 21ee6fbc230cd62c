"""How long to sleep before a retry: capped exponential backoff with jitter.

All time values are in seconds. The delay is a pure function of the retry number, the previous
delay and a source of uniform random numbers, so tests pass their own ``rand``.

Jitter modes (``ceiling = min(cap, base * 2 ** (attempt - 1))``):

* ``"full"``: ``U(0, ceiling)`` — the least total work under contention (AWS backoff study).
* ``"decorrelated"``: ``min(cap, U(base, 3 * prev))``, ``prev`` being the previous delay.
* ``"equal"``: ``ceiling / 2 + U(0, ceiling / 2)`` — never less than half the ceiling.
* ``"none"``: ``ceiling`` itself.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, get_args

from ._validate import check_number, reject

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_BASE",
    "DEFAULT_CAP",
    "DEFAULT_JITTER",
    "Backoff",
    "BackoffPolicy",
    "Jitter",
]

Jitter = Literal["full", "decorrelated", "equal", "none"]

DEFAULT_BASE: Final = 0.5
DEFAULT_CAP: Final = 8.0
DEFAULT_JITTER: Final[Jitter] = "full"


class BackoffPolicy(Protocol):
    """What the engine asks of a backoff: :class:`Backoff`, or a tenacity strategy (``_tenacity.py``)."""

    def delay(self, attempt: int, prev: float | None) -> float:
        """Seconds to sleep before retry number ``attempt``; ``prev`` is the previous delay or ``None``."""
        ...


#: Enough doublings to take the smallest positive float past the largest: the ceiling is ``cap`` by then.
_MAX_DOUBLINGS: Final = 2200


@dataclass(frozen=True, kw_only=True, slots=True)
class Backoff:
    """Capped exponential backoff.

    ``base`` is the first retry's ceiling (seconds), ``cap`` the longest delay ever returned
    (seconds, ``cap >= base``), ``jitter`` one of ``"full"``, ``"decorrelated"``, ``"equal"``,
    ``"none"``.
    """

    base: float = DEFAULT_BASE
    cap: float = DEFAULT_CAP
    jitter: Jitter = DEFAULT_JITTER

    def __post_init__(self) -> None:
        check_number("Backoff", "base", self.base, at_least=0)
        check_number("Backoff", "cap", self.cap, at_least=self.base)
        if self.jitter not in get_args(Jitter):
            reject("Backoff", "jitter", self.jitter, "one of " + ", ".join(map(repr, get_args(Jitter))))

    def ceiling(self, attempt: int) -> float:
        """``min(cap, base * 2 ** (attempt - 1))`` in seconds, without overflow for any ``attempt >= 1``."""
        _check_attempt(attempt)
        try:
            exponential = math.ldexp(self.base, min(attempt - 1, _MAX_DOUBLINGS))  # exact
        except OverflowError:
            return self.cap
        return min(self.cap, exponential)

    def delay(self, attempt: int, prev: float | None, rand: Callable[[], float] = random.random) -> float:
        """Seconds to sleep before retry number ``attempt`` (1 = the first retry).

        ``prev`` is the previous delay in seconds (``None`` before the first retry); only the
        ``"decorrelated"`` mode reads it, clamped to ``[base, cap]``. ``rand`` returns uniform numbers
        in ``[0, 1)``. The result is always within ``[0, cap]``, finite, for any ``attempt >= 1``.
        """
        ceiling = self.ceiling(attempt)
        if self.jitter == "full":
            value = rand() * ceiling
        elif self.jitter == "equal":
            value = ceiling / 2 + rand() * ceiling / 2
        elif self.jitter == "none":
            value = ceiling
        else:
            last = self.base if prev is None or math.isnan(prev) else min(max(prev, self.base), self.cap)
            value = self.base + rand() * (3 * last - self.base)
        # A ``rand`` outside [0, 1) must not break the documented bounds.
        return min(self.cap, max(0.0, value))


#: The client's backoff when none is given: full jitter between 0 and 0.5 s, 1 s, 2 s... up to 8 s.
DEFAULT_BACKOFF: Final = Backoff()


def _check_attempt(attempt: int) -> None:
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"attempt must be an integer >= 1 (1 = the first retry), got {attempt!r}")
