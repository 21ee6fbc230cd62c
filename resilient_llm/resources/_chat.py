"""``client.chat.completions``: ``create`` (streaming or not) and ``parse`` (structured outputs)."""

from __future__ import annotations

from typing import Any, Literal, overload

from pydantic import BaseModel as PydanticModel

from .._assemble import ChatAssembler
from .._config import NOT_GIVEN, is_given
from .._parsing import parse_chat_completion, type_to_response_format
from .._streaming import AsyncStream
from ..types import ChatCompletion, ChatCompletionChunk, ParsedChatCompletion
from ._base import Body, Headers, Query, Resource, Timeout, body_of


class AsyncCompletions(Resource):
    __slots__ = ()

    @overload
    async def create(
        self,
        *,
        messages: Any,
        model: str,
        stream: Literal[False] = False,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: Timeout = NOT_GIVEN,
        **params: Any,
    ) -> ChatCompletion: ...

    @overload
    async def create(
        self,
        *,
        messages: Any,
        model: str,
        stream: Literal[True],
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: Timeout = NOT_GIVEN,
        **params: Any,
    ) -> AsyncStream[ChatCompletionChunk]: ...

    async def create(
        self,
        *,
        messages: Any,
        model: str,
        stream: bool | None = False,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: Timeout = NOT_GIVEN,
        **params: Any,
    ) -> ChatCompletion | AsyncStream[ChatCompletionChunk]:
        """Create a chat completion; every OpenAI parameter passes through to the server.

        Not streaming: unless ``stall_timeout`` is off, the answer is streamed under the hood and
        reassembled into the same ``ChatCompletion``, so a silent server is caught while a long
        generation is not cut. Streaming: returns an :class:`AsyncStream` of chunks once the first
        one arrived (retries happen before that, never after).
        """
        body = body_of(params, None)
        body["messages"] = messages
        body["model"] = model
        if extra_body:
            body.update(extra_body)
        result: Any = await self._client._create(
            "/chat/completions",
            body,
            stream=bool(stream) and is_given(stream),
            parse=ChatCompletion.model_validate,
            chunk=ChatCompletionChunk.model_validate,
            assembler=ChatAssembler,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
        )
        return result  # type: ignore[no-any-return]

    async def parse(
        self,
        *,
        messages: Any,
        model: str,
        response_format: type[PydanticModel] | dict[str, Any] | Any = NOT_GIVEN,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: Timeout = NOT_GIVEN,
        **params: Any,
    ) -> ParsedChatCompletion[Any]:
        """``create`` with ``response_format=Model``: ``choices[0].message.parsed`` is a ``Model``.

        Raises ``LengthFinishReasonError`` when the answer stopped at ``max_tokens``.
        """
        if params.get("stream"):
            raise TypeError("parse() does not support stream=True; use create(stream=True)")
        params.pop("stream", None)
        if is_given(response_format):
            params["response_format"] = type_to_response_format(response_format)
        completion = await self.create(
            messages=messages,
            model=model,
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
            **params,
        )
        return parse_chat_completion(completion, response_format if is_given(response_format) else None)


class AsyncChat(Resource):
    __slots__ = ("completions",)

    def __init__(self, client: Any) -> None:
        super().__init__(client)
        self.completions = AsyncCompletions(client)


__all__ = ["AsyncChat", "AsyncCompletions"]
