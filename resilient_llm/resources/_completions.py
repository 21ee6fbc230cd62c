"""``client.completions`` (the text-completion endpoint): openai's, with a fast ``create``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from openai import AsyncStream
from openai.resources.completions import AsyncCompletions as _OpenAICompletions
from openai.types import Completion

_STREAM = AsyncStream[Completion]


class AsyncCompletions(_OpenAICompletions):
    """``openai.resources.AsyncCompletions`` whose ``create`` takes the fast path when it can."""

    if not TYPE_CHECKING:  # type checkers see openai's own signature and overloads

        async def create(self, **params: Any) -> Any:
            client = self._client
            if (
                "model" not in params
                or "prompt" not in params
                or not client._hot_path_ok(params.get("extra_headers"))
            ):
                return await super().create(**params)
            return await client._hot_create("/completions", params, Completion, _STREAM)


__all__ = ["AsyncCompletions"]
