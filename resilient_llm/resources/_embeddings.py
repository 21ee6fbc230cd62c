"""``client.embeddings``."""

from __future__ import annotations

from typing import Any

from .._config import NOT_GIVEN
from ..types import CreateEmbeddingResponse
from ._base import Body, Headers, Query, Resource, Timeout, body_of


class AsyncEmbeddings(Resource):
    __slots__ = ()

    async def create(
        self,
        *,
        input: Any,
        model: str,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        extra_body: Body | None = None,
        timeout: Timeout = NOT_GIVEN,
        **params: Any,
    ) -> CreateEmbeddingResponse:
        """Create embeddings. A plain JSON request: its silence limit covers the whole computation."""
        body = body_of(params, None)
        body["input"] = input
        body["model"] = model
        if extra_body:
            body.update(extra_body)
        result: CreateEmbeddingResponse = await self._client._json(
            "POST",
            "/embeddings",
            body,
            parse=CreateEmbeddingResponse.model_validate,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
        )
        return result
