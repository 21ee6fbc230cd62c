"""``client.completions``: the legacy text-completion endpoint (``/v1/completions``)."""

from __future__ import annotations

from typing import Any

from .._assemble import CompletionAssembler
from .._config import NOT_GIVEN, is_given
from .._streaming import AsyncStream
from ..types import Completion
from ._base import Body, Headers, Query, Resource, Timeout, body_of


class AsyncCompletions(Resource):
    __slots__ = ()

    async def create(
        self,
        *,
        model: str,
        prompt: Any,
        stream: bool | None = False,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: Timeout = NOT_GIVEN,
        **params: Any,
    ) -> Completion | AsyncStream[Completion]:
        """Create a text completion (streamed and reassembled under the hood, like chat)."""
        body = body_of(params, None)
        body["model"] = model
        body["prompt"] = prompt
        if extra_body:
            body.update(extra_body)
        result: Any = await self._client._create(
            "/completions",
            body,
            stream=bool(stream) and is_given(stream),
            parse=Completion.model_validate,
            chunk=Completion.model_validate,
            assembler=CompletionAssembler,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
        )
        return result  # type: ignore[no-any-return]
