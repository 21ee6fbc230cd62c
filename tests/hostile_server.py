"""A hostile HTTP/1.1 server on loopback: raw asyncio sockets, every byte of every answer scripted.

It runs on its own event loop in a thread, so a client test on asyncio or trio sees it as a separate
process would be seen, and a client loop that froze could not slow the server down. Each route is a
behaviour ``async def (request, writer)`` that writes what it likes (status line, headers, body, or
nothing at all); the connection is closed after it. Every connection is cut after ``time_limit``
seconds, and stopping the server cancels whatever is still running.

Helpers build the usual hostile answers: fixed bodies, gzip bombs (multi-member gzip of zeros or of
any repeated block, cheap to make), endless identity bodies, trickling healthy streams, redirects.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gzip
import json
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

MiB = 1024 * 1024


@dataclass
class Seen:
    """A request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


Behaviour = Callable[[Seen, asyncio.StreamWriter], Awaitable[None]]


def head(status: int, headers: Mapping[str, str] | None = None, *, reason: str = "X") -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def fixed(status: int, body: bytes, headers: Mapping[str, str] | None = None) -> Behaviour:
    """One answer with Content-Length."""
    all_headers = {"content-type": "application/json", "content-length": str(len(body)), **(headers or {})}

    async def behaviour(request: Seen, w: asyncio.StreamWriter) -> None:
        w.write(head(status, all_headers) + body)
        await w.drain()

    return behaviour


def streamed(
    status: int,
    headers: Mapping[str, str],
    chunks: Callable[[], AsyncIterator[bytes]],
) -> Behaviour:
    """An answer without Content-Length whose body is ``chunks()``, ended by closing the connection."""

    async def behaviour(request: Seen, w: asyncio.StreamWriter) -> None:
        w.write(head(status, headers))
        async for piece in chunks():
            w.write(piece)
            await w.drain()

    return behaviour


@functools.cache
def gzip_member(block: bytes, size: int) -> bytes:
    """One gzip member holding ``block`` repeated up to ``size`` bytes (cached: made once per run)."""
    return gzip.compress((block * (size // len(block) + 1))[:size], compresslevel=9)


def gzip_bomb(
    total: int,
    *,
    content_type: str = "application/json",
    block: bytes = b"\0",
    status: int = 200,
    member_size: int = 16 * MiB,
) -> Behaviour:
    """``total`` bytes of ``block`` repeated, sent as multi-member gzip (about 1 KB per MiB of zeros)."""
    member = gzip_member(block, member_size)
    headers = {"content-type": content_type, "content-encoding": "gzip"}

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(max(1, total // member_size)):
            yield member

    return streamed(status, headers, chunks)


def endless_identity(total: int, *, content_type: str = "application/json", length: bool = True) -> Behaviour:
    """``total`` bytes of ``x`` in 1 MiB writes (with Content-Length unless ``length=False``)."""
    headers = {"content-type": content_type}
    if length:
        headers["content-length"] = str(total)
    piece = b"x" * MiB

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(total // MiB):
            yield piece

    return streamed(200, headers, chunks)


def chat_chunk(content: str | None = None, finish_reason: str | None = None) -> bytes:
    delta = {} if content is None else {"content": content}
    body = {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def trickle(count: int, interval: float) -> Behaviour:
    """A healthy chat stream: ``count`` one-token chunks ``interval`` seconds apart, then [DONE]."""

    async def chunks() -> AsyncIterator[bytes]:
        yield chat_chunk("")
        for i in range(count):
            await asyncio.sleep(interval)
            yield chat_chunk(f"t{i} ")
        yield chat_chunk(finish_reason="stop") + b"data: [DONE]\n\n"

    return streamed(200, {"content-type": "text/event-stream"}, chunks)


def sse_bytes(body: bytes, *, content_encoding: str | None = None) -> Behaviour:
    headers = {"content-type": "text/event-stream"}
    if content_encoding:
        headers["content-encoding"] = content_encoding

    async def chunks() -> AsyncIterator[bytes]:
        yield body

    return streamed(200, headers, chunks)


def redirect(status: int, location: str | None) -> Behaviour:
    headers = {"content-length": "0"}
    if location is not None:
        headers["location"] = location

    async def behaviour(request: Seen, w: asyncio.StreamWriter) -> None:
        w.write(head(status, headers))
        await w.drain()

    return behaviour


async def _read_request(r: asyncio.StreamReader) -> Seen | None:
    line = await r.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (h := await r.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = h.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    size = int(headers.get("content-length", "0"))
    body = await r.readexactly(size) if size else b""
    return Seen(method, path.split("?", 1)[0], headers, body)


@dataclass
class HostileServer:
    routes: Mapping[str, Behaviour]
    ssl_context: ssl.SSLContext | None = None
    time_limit: float = 20.0
    requests: list[Seen] = field(default_factory=list)
    port: int = 0

    @property
    def base_url(self) -> str:
        return self.url("/v1")

    def url(self, path: str, *, userinfo: str = "") -> str:
        scheme = "https" if self.ssl_context else "http"
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{path}"

    async def _serve_one(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        request = await _read_request(r)
        if request is None:
            return
        self.requests.append(request)
        behaviour = self.routes.get(request.path)
        if behaviour is None:
            behaviour = fixed(404, b'{"error": {"message": "no route"}}')
        await behaviour(request, w)

    async def _handle(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            await asyncio.wait_for(self._serve_one(r, w), self.time_limit)
        except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError):
            pass  # the client hung up, or the time limit struck: both expected here
        finally:
            w.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await w.wait_closed()

    @contextlib.contextmanager
    def running(self) -> Iterator[HostileServer]:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        async def serve() -> None:
            server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.ssl_context)
            self.port = server.sockets[0].getsockname()[1]
            ready.set()
            async with server:
                await asyncio.Event().wait()

        def main() -> None:
            asyncio.set_event_loop(loop)
            task = loop.create_task(serve())
            with contextlib.suppress(asyncio.CancelledError):
                loop.run_until_complete(task)
            pending = asyncio.all_tasks(loop)
            for t in pending:
                t.cancel()
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

        thread = threading.Thread(target=main, daemon=True)
        thread.start()
        assert ready.wait(10), "hostile server did not start"
        try:
            yield self
        finally:

            def stop() -> None:
                for t in asyncio.all_tasks(loop):
                    t.cancel()

            loop.call_soon_threadsafe(stop)
            thread.join(10)


@contextlib.contextmanager
def hostile(routes: Mapping[str, Behaviour], **kw: Any) -> Iterator[HostileServer]:
    with HostileServer(routes, **kw).running() as server:
        yield server
