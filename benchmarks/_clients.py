"""The HTTP clients the overhead benchmark compares, each behind the same tiny interface.

A client kind opens (an async context manager) into a ``Call``: one non-streaming chat
completion that returns the answer's text. Every kind sends the same request and reads the same
field, so the differences measured are the clients' own costs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Call = Callable[[], Awaitable[str]]
Opener = Callable[[str], contextlib.AbstractAsyncContextManager[Call]]

API_KEY = "bench-not-a-secret"
MODEL = "openai/gpt-oss-20b"
MESSAGES: list[dict[str, str]] = [{"role": "user", "content": "Describe the transformation as JSON."}]
MAX_TOKENS = 64
# The official SDK's pool size, given to the raw clients too so pools are not what differs.
MAX_CONNECTIONS = 1000
MAX_KEEPALIVE = 100
TIMEOUT = 600.0


def request_body() -> dict[str, Any]:
    return {"model": MODEL, "messages": MESSAGES, "max_tokens": MAX_TOKENS, "temperature": 0.0}


def content_of(body: bytes) -> str:
    """``choices[0].message.content`` of a chat completion body."""
    reply = json.loads(body)
    content = reply["choices"][0]["message"]["content"]
    if not isinstance(content, str):
        raise ValueError("the answer has no text content")
    return content


def resilient_client_class() -> Any | None:
    """``resilient_llm.AsyncOpenAI``, or None while the package does not provide it."""
    try:
        module = importlib.import_module("resilient_llm")
    except ImportError:
        return None
    return getattr(module, "AsyncOpenAI", None)


@dataclass(frozen=True)
class ClientKind:
    name: str
    label: str
    requires: tuple[str, ...]
    open: Opener

    def unavailable_reason(self) -> str | None:
        """Why this client cannot run here, or None when it can."""
        for module in self.requires:
            try:
                found = importlib.util.find_spec(module) is not None
            except ModuleNotFoundError:
                found = False
            if not found:
                return f"not available ({module} is not installed)"
        if self.name == "resilient_llm" and resilient_client_class() is None:
            return "not available (resilient_llm.AsyncOpenAI is not there yet)"
        return None

    def settle_seconds(self) -> float:
        """How long after its first call the client reaches its steady state (a slow-start ramp)."""
        if self.name != "resilient_llm":
            return 0.0
        module = importlib.import_module("resilient_llm")
        ramp = getattr(module, "DEFAULT_RAMP_UP", 0.0)
        return float(ramp)


@contextlib.asynccontextmanager
async def open_resilient_llm(base_url: str) -> AsyncIterator[Call]:
    client_class = resilient_client_class()
    if client_class is None:
        raise RuntimeError("resilient_llm.AsyncOpenAI is not available")
    client = client_class(api_key=API_KEY, base_url=base_url)

    async def call() -> str:
        completion = await client.chat.completions.create(**request_body())
        content: str = completion.choices[0].message.content
        return content

    try:
        yield call
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def open_openai(base_url: str) -> AsyncIterator[Call]:
    import openai

    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=base_url)

    async def call() -> str:
        completion = await client.chat.completions.create(**request_body())
        return completion.choices[0].message.content or ""

    try:
        yield call
    finally:
        await client.close()


@contextlib.asynccontextmanager
async def open_openai_aiohttp(base_url: str) -> AsyncIterator[Call]:
    import openai

    client = openai.AsyncOpenAI(api_key=API_KEY, base_url=base_url, http_client=openai.DefaultAioHttpClient())

    async def call() -> str:
        completion = await client.chat.completions.create(**request_body())
        return completion.choices[0].message.content or ""

    try:
        yield call
    finally:
        await client.close()


def _headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


@contextlib.asynccontextmanager
async def _open_httpx_like(client_class: Any, base_url: str) -> AsyncIterator[Call]:
    """A plain ``httpx.AsyncClient`` API over whichever transport ``client_class`` brings."""
    import httpx

    limits = httpx.Limits(max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE)
    async with client_class(base_url=base_url, limits=limits, timeout=TIMEOUT, headers=_headers()) as client:

        async def call() -> str:
            response = await client.post("/chat/completions", json=request_body())
            response.raise_for_status()
            return content_of(response.content)

        yield call


def open_httpx(base_url: str) -> contextlib.AbstractAsyncContextManager[Call]:
    import httpx

    return _open_httpx_like(httpx.AsyncClient, base_url)


def open_httpx_aiohttp(base_url: str) -> contextlib.AbstractAsyncContextManager[Call]:
    from httpx_aiohttp import HttpxAiohttpClient

    return _open_httpx_like(HttpxAiohttpClient, base_url)


@contextlib.asynccontextmanager
async def open_aiohttp(base_url: str) -> AsyncIterator[Call]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=MAX_CONNECTIONS)
    timeout = aiohttp.ClientTimeout(total=TIMEOUT)
    url = f"{base_url}/chat/completions"
    async with aiohttp.ClientSession(connector=connector, timeout=timeout, headers=_headers()) as session:

        async def call() -> str:
            async with session.post(url, json=request_body()) as response:
                response.raise_for_status()
                return content_of(await response.read())

        yield call


CLIENTS: dict[str, ClientKind] = {
    kind.name: kind
    for kind in (
        ClientKind("resilient_llm", "resilient_llm (defaults)", ("resilient_llm",), open_resilient_llm),
        ClientKind("openai", "openai SDK (defaults)", ("openai",), open_openai),
        ClientKind(
            "openai_aiohttp", "openai SDK + DefaultAioHttpClient", ("openai", "aiohttp"), open_openai_aiohttp
        ),
        ClientKind("httpx", "httpx.AsyncClient", ("httpx",), open_httpx),
        ClientKind(
            "httpx_aiohttp", "httpx + aiohttp transport", ("httpx", "httpx_aiohttp"), open_httpx_aiohttp
        ),
        ClientKind("aiohttp", "aiohttp (practical limit)", ("aiohttp",), open_aiohttp),
    )
}
DEFAULT_CLIENTS = ("resilient_llm", "openai", "httpx", "httpx_aiohttp", "aiohttp")
