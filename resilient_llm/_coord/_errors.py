"""The two errors of coordination: Redis is not there, or the wait cannot end before the deadline.

Neither reaches a caller of the OpenAI surface as it is: :class:`CoordinationUnavailable` is caught
inside this package (the local fallback takes over), and :class:`GlobalWaitTimeout` is a
``TimeoutError`` for the client to turn into its deadline error.
"""

from __future__ import annotations

__all__ = ["CoordinationUnavailable", "GlobalWaitTimeout"]


class CoordinationUnavailable(Exception):
    """Redis did not answer in time, or at all: the caller uses its local fallback."""


class GlobalWaitTimeout(TimeoutError):
    """A global slot or token cannot be had before the caller's deadline."""
