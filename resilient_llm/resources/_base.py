"""What every resource shares: turning keyword arguments into a request for the engine."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import httpx

from .._config import NotGiven, is_given

if TYPE_CHECKING:
    from .._client import AsyncOpenAI

Headers = Mapping[str, str | None]
Query = Mapping[str, object]
Body = Mapping[str, object]
Timeout = float | httpx.Timeout | None | NotGiven


def body_of(params: Mapping[str, Any], extra_body: Body | None) -> dict[str, Any]:
    body = {k: v for k, v in params.items() if is_given(v)}
    if extra_body:
        body.update(extra_body)
    return body


class Resource:
    __slots__ = ("_client",)

    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client
