"""What this library takes from openai-python, in one place, for every supported openai version.

openai 1.x and 2.x are built on ``httpx``; openai 3.x on its fork ``httpx2`` (same API, other classes).
The requests, responses and timeouts the library hands to openai's machinery, and attaches to
exceptions, must be of the flavour the installed openai uses: :data:`httpx_flavour` is that module.

Only a few of openai's internals are used, all of them stable across the supported range (1.72 to
3.x) and covered by the test suite at both ends: the result-type constructor ``construct_type`` (how
openai builds every result, leniently), ``add_request_id`` (``result._request_id``), the raw-response
header name, and ``FinalRequestOptions``.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

import openai
from openai import _base_client
from openai._constants import OVERRIDE_CAST_TO_HEADER, RAW_RESPONSE_HEADER
from openai._models import FinalRequestOptions, construct_type
from openai._models import add_request_id as _add_request_id

#: The httpx flavour openai's client is built on: ``httpx2`` (openai 3.x) or ``httpx``.
httpx_flavour: ModuleType = getattr(_base_client, "httpx2", None) or getattr(_base_client, "httpx")  # noqa: B009

OPENAI_VERSION: tuple[int, ...] = tuple(int(p) for p in openai.__version__.split(".")[:2] if p.isdigit())


def add_request_id(obj: Any, request_id: str | None) -> None:
    """``result._request_id`` from the ``x-request-id`` header, as openai-python sets it."""
    _add_request_id(obj, request_id)


def httpx_module_of(client: object) -> ModuleType:
    """The httpx flavour an ``AsyncClient`` (user-given or openai's) belongs to."""
    for cls in type(client).__mro__:
        root = cls.__module__.partition(".")[0]
        if root in ("httpx", "httpx2"):
            return sys.modules[root]
    return httpx_flavour


def timeout_parts(timeout: object) -> tuple[float | None, float | None]:
    """``(connect, read)`` of a float, ``None`` or any flavour's ``Timeout`` (duck-typed)."""
    if timeout is None:
        return None, None
    if isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        return float(timeout), float(timeout)
    connect = getattr(timeout, "connect", None)
    read = getattr(timeout, "read", None)
    return connect, read


__all__ = [
    "OPENAI_VERSION",
    "OVERRIDE_CAST_TO_HEADER",
    "RAW_RESPONSE_HEADER",
    "FinalRequestOptions",
    "add_request_id",
    "construct_type",
    "httpx_flavour",
    "httpx_module_of",
    "timeout_parts",
]
