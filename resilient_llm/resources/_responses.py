"""``client.responses``: openai's, with a fast ``create``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openai import AsyncStream
from openai.resources.responses import AsyncResponses as _OpenAIResponses
from openai.types.responses import Response, ResponseStreamEvent

_EVENTS = AsyncStream[ResponseStreamEvent]


class AsyncResponses(_OpenAIResponses):
    """``openai.resources.responses.AsyncResponses`` whose ``create`` takes the fast path when it can."""

    if not TYPE_CHECKING:  # type checkers see openai's own signature and overloads

        async def create(self, **params: Any) -> Any:
            client = self._client
            if not client._hot_path_ok(params.get("extra_headers")):
                return await super().create(**params)
            return await client._hot_create("/responses", params, Response, _EVENTS)


__all__ = ["AsyncResponses"]
