"""``client.models``: ``list`` (awaitable, or iterate it directly) and ``retrieve``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any
from urllib.parse import quote

from .._config import NOT_GIVEN
from ..types import Model
from ._base import Headers, Query, Resource, Timeout


class AsyncPage:
    """One page of models: ``.data``, iterable; what ``await client.models.list()`` returns."""

    __slots__ = ("data", "object")

    def __init__(self, body: dict[str, Any]) -> None:
        self.object = body.get("object", "list")
        self.data: list[Model] = [Model.model_validate(m) for m in body.get("data") or []]

    def __iter__(self) -> Iterator[Model]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        return f"AsyncPage(data={self.data!r})"


class AsyncPaginator:
    """``await`` it for the page, or ``async for model in client.models.list()``, as in openai-python."""

    __slots__ = ("_fetch",)

    def __init__(self, fetch: Any) -> None:
        self._fetch = fetch

    def __await__(self) -> Generator[Any, None, AsyncPage]:
        return self._fetch().__await__()  # type: ignore[no-any-return]

    async def __aiter__(self) -> AsyncIterator[Model]:
        page = await self._fetch()
        for model in page.data:
            yield model


class AsyncModels(Resource):
    __slots__ = ()

    def list(
        self,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> AsyncPaginator:
        async def fetch() -> AsyncPage:
            page: AsyncPage = await self._client._json(
                "GET",
                "/models",
                None,
                parse=AsyncPage,
                extra_headers=extra_headers,
                extra_query=extra_query,
                timeout=timeout,
            )
            return page

        return AsyncPaginator(fetch)

    async def retrieve(
        self,
        model: str,
        *,
        extra_headers: Headers | None = None,
        extra_query: Query | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> Model:
        if not model:
            raise ValueError(f"Expected a non-empty value for `model` but received {model!r}")
        result: Model = await self._client._json(
            "GET",
            f"/models/{quote(model, safe='')}",
            None,
            parse=Model.model_validate,
            extra_headers=extra_headers,
            extra_query=extra_query,
            timeout=timeout,
        )
        return result
