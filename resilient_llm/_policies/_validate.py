"""Argument checks shared by the policy configurations.

Each check raises :class:`~resilient_llm._exceptions.ConfigError` with a message naming the argument
and the value it got, e.g. ``Backoff: base must be a finite number >= 0, got -1``.
"""

from __future__ import annotations

import math
from typing import NoReturn

from .._exceptions import ConfigError


def reject(owner: str, name: str, value: object, expected: str) -> NoReturn:
    """Raise the standard :class:`ConfigError` for ``owner``'s argument ``name``."""
    raise ConfigError(f"{owner}: {name} must be {expected}, got {value!r}")


def check_number(
    owner: str,
    name: str,
    value: object,
    *,
    at_least: float | None = None,
    above: float | None = None,
    at_most: float | None = None,
) -> float:
    """A finite real number (``bool`` excluded) within the given bounds; returned as ``float``."""
    bounds = []
    if at_least is not None:
        bounds.append(f">= {at_least:g}")
    if above is not None:
        bounds.append(f"> {above:g}")
    if at_most is not None:
        bounds.append(f"<= {at_most:g}")
    expected = "a finite number" + (" " + " and ".join(bounds) if bounds else "")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        reject(owner, name, value, expected)
    number = float(value)
    if (
        not math.isfinite(number)
        or (at_least is not None and number < at_least)
        or (above is not None and number <= above)
        or (at_most is not None and number > at_most)
    ):
        reject(owner, name, value, expected)
    return number


def check_int(owner: str, name: str, value: object, *, at_least: int) -> int:
    """An ``int`` (``bool`` excluded) no smaller than ``at_least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < at_least:
        reject(owner, name, value, f"an integer >= {at_least}")
    return value
