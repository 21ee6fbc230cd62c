"""The testing switch (``resilient_llm.testing.set_testing``): users' own test suites should not sleep.

While it is on, a client retries at once (no backoff sleep, ``Retry-After`` included), starts without
the slow-start ramp, and does not poll the server's ``/metrics`` (test doubles have none); everything
else — the deadline, retries, their count and budget, stall detection, the limiter — behaves as in
production, so tests still see what production would do, only faster. Off by default.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True)
class _Mode:
    enabled: bool = False


MODE = _Mode()


def set_testing(enabled: bool = True) -> None:
    """Switch testing mode on (or off again): retries without sleeping, no ramp, no ``/metrics`` polls.

    It applies to every client, also those already made (the ramp: to clients made while it is on).
    Typically in a test suite's ``conftest.py``::

        import resilient_llm.testing

        resilient_llm.testing.set_testing(True)
    """
    MODE.enabled = bool(enabled)


def is_testing() -> bool:
    return MODE.enabled


__all__ = ["is_testing", "set_testing"]
