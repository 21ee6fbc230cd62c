"""``client.responses``: ``create`` (streaming or not) and ``parse`` (``output_parsed``).

A non-streaming call is streamed under the hood like chat: the ``response.completed`` (or
``.incomplete`` / ``.failed``) event carries the whole response object, which is returned.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel as PydanticModel
from pydantic import ConfigDict

from .._config import NOT_GIVEN, is_given
from .._parsing import parse_response, text_format_to_param
from .._streaming import AsyncStream
from ..types import ParsedResponse, Response
from ._base import Body, Headers, Query, Resource, Timeout, body_of

_FINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponseStreamEvent(PydanticModel):
    """One event of a streamed response (``type`` plus whatever fields that event carries)."""

    model_config = ConfigDict(extra="allow")
    type: str


class ResponseAssembler:
    __slots__ = ("_final",)

    def __init__(self) -> None:
        self._final: dict[str, Any] | None = None

    def feed(self, chunk: dict[str, Any]) -> None:
        if chunk.get("type") in _FINAL_EVENTS and isinstance(chunk.get("response"), dict):
            self._final = chunk["response"]

    @property
    def finished(self) -> bool:
        return self._final is not None

    def result(self) -> dict[str, Any]:
        if self._final is None:
            raise ValueError("the response stream ended before its final event")
        return self._final


class AsyncResponses(Resource):
    __slots__ = ()

    async def create(
        self,
        *,
        stream: bool | None = False,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: Timeout = NOT_GIVEN,
        **params: Any,
    ) -> Response | AsyncStream[ResponseStreamEvent]:
        body = body_of(params, extra_body)
        result: Any = await self._client._create(
            "/responses",
            body,
            stream=bool(stream) and is_given(stream),
            parse=Response.model_validate,
            chunk=ResponseStreamEvent.model_validate,
            assembler=ResponseAssembler,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
            usage_option=False,
        )
        return result  # type: ignore[no-any-return]

    async def parse(
        self,
        *,
        text_format: type[PydanticModel] | Any = NOT_GIVEN,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: Timeout = NOT_GIVEN,
        **params: Any,
    ) -> ParsedResponse[Any]:
        if params.pop("stream", False):
            raise TypeError("parse() does not support stream=True; use create(stream=True)")
        if is_given(text_format):
            text = dict(params.get("text") or {})
            text["format"] = text_format_to_param(text_format)
            params["text"] = text
        response = await self.create(
            extra_headers=extra_headers,
            extra_query=extra_query,
            extra_body=extra_body,
            timeout=timeout,
            **params,
        )
        assert isinstance(response, Response)
        return parse_response(response, text_format if is_given(text_format) else None)
