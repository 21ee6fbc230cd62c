"""What an error response says about retrying it: status classes and retry headers.

All time values are in seconds. Header names are matched case-insensitively for any ``Mapping``
(a plain ``dict`` as well as ``httpx.Headers`` or aiohttp's ``CIMultiDictProxy``).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import timezone
from typing import Final

__all__ = ["MIN_ATTEMPT_TIME", "is_retryable_status", "retry_after", "retry_delay", "should_retry_header"]

#: Statuses worth retrying below 500: request timeout, conflict (openai-python retries it as a
#: lock timeout), and rate limited. Every other 4xx is the caller's mistake and fails the same again.
_RETRYABLE_4XX: Final = frozenset({408, 409, 429})


def is_retryable_status(status: int) -> bool:
    """True for 408, 409, 429 and every status >= 500; never for other 4xx (400, 401, 403, 404, 422...)."""
    return status >= 500 or status in _RETRYABLE_4XX


def retry_after(headers: Mapping[str, str], *, now_wall: float) -> float | None:
    """Seconds the server asks the client to wait, or ``None`` when it does not say (or not legibly).

    ``retry-after-ms`` (milliseconds, may be fractional) wins; otherwise ``retry-after`` as seconds
    (may be fractional) or as an HTTP date, taken relative to ``now_wall`` (a Unix timestamp, seconds).
    A time in the past gives 0. The result is not capped: whether to honour a long wait is the caller's
    decision.
    """
    millis = _parse_seconds(_header(headers, "retry-after-ms"))
    if millis is not None:
        return millis / 1000
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _parse_seconds(value)
    if seconds is not None:
        return seconds
    return _parse_http_date(value, now_wall)


def should_retry_header(headers: Mapping[str, str]) -> bool | None:
    """The server's ``x-should-retry: true|false`` override, or ``None`` when absent or neither."""
    value = _header(headers, "x-should-retry")
    if value is None:
        return None
    value = value.strip().lower()
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """``headers[name]`` for a lower-case ``name``, whatever the case of the stored key."""
    value = headers.get(name)
    if value is not None:
        return value
    # A plain dict with mixed-case keys: one pass over a handful of headers.
    for key, item in headers.items():
        if key.lower() == name:
            return item
    return None


def _parse_seconds(value: str | None) -> float | None:
    """A finite decimal number, negative clamped to 0; ``None`` if absent or not a number."""
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    return max(0.0, number)


def _parse_http_date(value: str, now_wall: float) -> float | None:
    """Seconds from ``now_wall`` until an HTTP date (RFC 9110 IMF-fixdate and obsolete forms)."""
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:  # Python 3.10 returns None for some malformed dates
        return None
    if when.tzinfo is None:  # "-0000" means UTC with no claim about the local zone
        when = when.replace(tzinfo=timezone.utc)
    try:
        timestamp = when.timestamp()
    except (OverflowError, ValueError, OSError):
        return None
    return max(0.0, timestamp - now_wall)


#: An attempt that could not get this much time before the deadline is not started (seconds).
MIN_ATTEMPT_TIME = 0.05


def retry_delay(backoff: float, *, retry_after: float | None, remaining: float) -> float | None:
    """The sleep before the next attempt: the backoff, or the server's ``Retry-After`` if longer.

    ``None`` when that sleep would leave less than :data:`MIN_ATTEMPT_TIME` of the deadline: the call
    then fails at once (``DeadlineExceeded``) rather than start a sleep or an attempt it cannot finish.
    """
    delay = backoff if retry_after is None or retry_after < backoff else retry_after
    if delay + MIN_ATTEMPT_TIME > remaining:
        return None
    return delay
