"""tenacity wait strategies as a backoff, for users who already write them.

``backoff=tenacity.wait_random_exponential(multiplier=0.5, max=8)`` is taken where a :class:`Backoff`
is: :class:`TenacityBackoff` asks the strategy for each delay with a minimal ``RetryCallState`` whose
``attempt_number`` is the attempt that just failed (1 before the first retry), as tenacity itself
would. Strategies that read more than that (``wait_exception`` reads the outcome) are refused when the
client is created.

tenacity is not a dependency of this library: whoever passes one of its strategies has it imported,
so this module looks it up in ``sys.modules`` and never imports it.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any

__all__ = ["TenacityBackoff", "is_tenacity_wait"]


def is_tenacity_wait(value: object) -> bool:
    """Whether ``value`` is a tenacity wait strategy (``wait_*``, also combined with ``+``)."""
    tenacity = sys.modules.get("tenacity")
    return tenacity is not None and isinstance(value, tenacity.wait.wait_base)


@dataclass(frozen=True, slots=True)
class TenacityBackoff:
    """A backoff whose delays come from the tenacity wait strategy ``wait``."""

    wait: Any

    def delay(self, attempt: int, prev: float | None) -> float:
        """Seconds to sleep before retry number ``attempt`` (1 = the first retry); never negative.

        ``prev`` (the previous delay) is not asked for: tenacity strategies keep no such state.
        """
        tenacity = sys.modules["tenacity"]
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
        state.attempt_number = attempt
        value = float(self.wait(state))
        return value if value >= 0 else 0.0  # NaN too
