"""``client.chat`` and ``client.chat.completions``: openai's, with a fast ``create``."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from openai import AsyncStream
from openai.resources.chat import AsyncChat as _OpenAIChat
from openai.resources.chat import AsyncCompletions as _OpenAIChatCompletions
from openai.types.chat import ChatCompletion, ChatCompletionChunk

_CHUNKS = AsyncStream[ChatCompletionChunk]


class AsyncChatCompletions(_OpenAIChatCompletions):
    """``openai.resources.chat.AsyncCompletions`` whose ``create`` takes the fast path when it can."""

    if not TYPE_CHECKING:  # type checkers see openai's own signature and overloads

        async def create(self, **params: Any) -> Any:
            client = self._client
            if (
                "messages" not in params
                or "model" not in params
                or isinstance(params.get("response_format"), type)  # openai raises its TypeError
                or not client._hot_path_ok(params.get("extra_headers"))
            ):
                return await super().create(**params)
            return await client._hot_create("/chat/completions", params, ChatCompletion, _CHUNKS)

    if not hasattr(_OpenAIChatCompletions, "parse"):  # openai < 1.92 kept these helpers in beta

        def parse(self, *args: Any, **kwargs: Any) -> Any:
            """``client.beta.chat.completions.parse`` (where older openai versions have it)."""
            return self._client.beta.chat.completions.parse(*args, **kwargs)

        def stream(self, *args: Any, **kwargs: Any) -> Any:
            """``client.beta.chat.completions.stream`` (where older openai versions have it)."""
            return self._client.beta.chat.completions.stream(*args, **kwargs)


class AsyncChat(_OpenAIChat):
    """``openai.resources.chat.AsyncChat`` whose ``completions`` is :class:`AsyncChatCompletions`."""

    @cached_property
    def completions(self) -> AsyncChatCompletions:
        return AsyncChatCompletions(self._client)


__all__ = ["AsyncChat", "AsyncChatCompletions"]
