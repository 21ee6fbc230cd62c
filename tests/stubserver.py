"""A tiny scriptable OpenAI-compatible server on loopback, for client tests that need exact control.

Each test gives a handler ``async def handler(request, hits) -> web.StreamResponse``; helpers build the
usual answers (a chat completion body, an SSE stream that trickles tokens, an error status, silence).
The server runs on its own event loop in a thread so it serves asyncio and trio tests alike.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request, int], Awaitable[web.StreamResponse]]


def completion_body(
    content: str = "hello", *, finish_reason: str = "stop", model: str = "m"
) -> dict[str, Any]:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, "reasoning_content": "because"},
                "finish_reason": finish_reason,
                "stop_reason": None,
            }
        ],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
    }


def chunk(
    content: str | None = None, *, finish_reason: str | None = None, role: bool = False
) -> dict[str, Any]:
    delta: dict[str, Any] = {}
    if role:
        delta["role"] = "assistant"
        delta["content"] = ""
    if content is not None:
        delta["content"] = content
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


async def sse(
    request: web.Request,
    tokens: list[str],
    *,
    gap: float = 0.0,
    first_delay: float = 0.0,
    done: bool = True,
    stop_after: int | None = None,
) -> web.StreamResponse:
    """Stream ``tokens`` as chat chunks, ``gap`` seconds apart; ``stop_after`` goes silent after N tokens."""
    resp = web.StreamResponse(headers={"content-type": "text/event-stream"})
    await resp.prepare(request)
    if first_delay:
        await asyncio.sleep(first_delay)
    await resp.write(b"data: " + json.dumps(chunk(role=True)).encode() + b"\n\n")
    for i, tok in enumerate(tokens):
        if stop_after is not None and i >= stop_after:
            await asyncio.sleep(3600)
        if gap:
            await asyncio.sleep(gap)
        await resp.write(b"data: " + json.dumps(chunk(tok)).encode() + b"\n\n")
    await resp.write(b"data: " + json.dumps(chunk(finish_reason="stop")).encode() + b"\n\n")
    usage = {
        **chunk(),
        "choices": [],
        "usage": {"prompt_tokens": 3, "completion_tokens": len(tokens), "total_tokens": 3 + len(tokens)},
    }
    await resp.write(b"data: " + json.dumps(usage).encode() + b"\n\n")
    if done:
        await resp.write(b"data: [DONE]\n\n")
    return resp


async def silence(request: web.Request) -> web.StreamResponse:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


class StubServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.hits = 0
        self.requests: list[dict[str, Any]] = []
        self.disconnects = 0
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.hits += 1
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw else None
        self.requests.append(
            {
                "path": request.path,
                "body": body,
                "headers": request.headers.copy(),
                "query": dict(request.query),
                "t": time.monotonic(),
            }
        )
        try:
            return await self.handler(request, self.hits)
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects += 1
            raise

    @contextmanager
    def running(self) -> Iterator[StubServer]:
        ready = threading.Event()
        stop: list[Callable[[], None]] = []

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            app = web.Application()
            app.router.add_route("*", "/{tail:.*}", self._dispatch)
            runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=0.1)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            stop.append(lambda: loop.call_soon_threadsafe(loop.stop))
            ready.set()
            loop.run_forever()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(runner.cleanup())
            pending = asyncio.all_tasks(loop)
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        assert ready.wait(10), "stub server did not start"
        try:
            yield self
        finally:
            stop[0]()
            thread.join(10)


@contextmanager
def serve(handler: Handler) -> Iterator[StubServer]:
    with StubServer(handler).running() as server:
        yield server
