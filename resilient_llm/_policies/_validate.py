"""Argument checks for every configuration: the client's arguments, its environment variables, the configs.

Each check raises :class:`~resilient_llm._exceptions.ConfigError` with one message shape, naming the
owner, the argument and the value it got: ``{owner}: {name} must be {expected}, got {value!r}``, e.g.
``Backoff: base must be a finite number >= 0, got -1`` or ``environment: RESILIENT_LLM_DEADLINE must
be a finite number > 0, got 'soon'``.
"""

from __future__ import annotations

import math
from typing import NoReturn
from urllib.parse import urlsplit

from .._exceptions import ConfigError
from .._secrets import mask_url

__all__ = [
    "check_int",
    "check_number",
    "check_url",
    "expected_int",
    "expected_number",
    "reject",
    "rejection",
]


def rejection(owner: str, name: str, value: object, expected: str) -> ConfigError:
    """The standard :class:`ConfigError` for ``owner``'s argument ``name`` (for a ``raise`` statement)."""
    return ConfigError(f"{owner}: {name} must be {expected}, got {value!r}")


def reject(owner: str, name: str, value: object, expected: str) -> NoReturn:
    """Raise the standard :class:`ConfigError` for ``owner``'s argument ``name``."""
    raise rejection(owner, name, value, expected)


def expected_number(
    *, at_least: float | None = None, above: float | None = None, at_most: float | None = None
) -> str:
    """What :func:`check_number` asks for, in words: ``a finite number > 0``."""
    bounds = []
    if at_least is not None:
        bounds.append(f">= {at_least:g}")
    if above is not None:
        bounds.append(f"> {above:g}")
    if at_most is not None:
        bounds.append(f"<= {at_most:g}")
    return "a finite number" + (" " + " and ".join(bounds) if bounds else "")


def expected_int(*, at_least: int) -> str:
    """What :func:`check_int` asks for, in words: ``an integer >= 1``."""
    return f"an integer >= {at_least}"


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
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        reject(owner, name, value, expected_number(at_least=at_least, above=above, at_most=at_most))
    number = float(value)
    if (
        not math.isfinite(number)
        or (at_least is not None and number < at_least)
        or (above is not None and number <= above)
        or (at_most is not None and number > at_most)
    ):
        reject(owner, name, value, expected_number(at_least=at_least, above=above, at_most=at_most))
    return number


def check_int(owner: str, name: str, value: object, *, at_least: int) -> int:
    """An ``int`` (``bool`` excluded) no smaller than ``at_least``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < at_least:
        reject(owner, name, value, expected_int(at_least=at_least))
    return value


def check_url(owner: str, name: str, value: object, *, schemes: tuple[str, ...], expected: str) -> str:
    """A URL with one of ``schemes``, a host (``unix://`` needs none) and a valid port, if any.

    The value in the message is masked (:func:`~resilient_llm._secrets.mask_url`): a URL may carry a
    password.
    """
    if not isinstance(value, str):
        reject(owner, name, value, expected)
    try:
        parts = urlsplit(value)
        valid = parts.scheme in schemes and (bool(parts.hostname) or parts.scheme == "unix")
        if valid and parts.scheme != "unix":
            _ = parts.port  # raises ValueError on a bad port
    except ValueError:
        valid = False
    if not valid:
        reject(owner, name, mask_url(value), expected)
    return value
