"""A minimal OpenAI-compatible server shaped like vLLM, for the benchmarks.

It answers ``POST /v1/chat/completions`` both ways vLLM does: one JSON body, or an SSE stream
(a role chunk, content chunks, a chunk carrying ``finish_reason``, a usage chunk when
``stream_options.include_usage`` is set, then ``data: [DONE]``). Field layout follows a capture of
a real vLLM 0.32 server (``tests/fixtures/vllm-0.32/``). The answer is a JSON object carrying every
key the ARC pipeline's structures ask for (``instructions``, ``grid``,
``reasoning_for_why_old_instructions_are_wrong``, ``revised_instructions``), so it satisfies both a
throughput benchmark and a ``response_format={"type": "json_object"}`` caller.

Also served: ``/health``, ``/version``, ``/v1/models``, a small ``/metrics`` (running and waiting
gauges, token and success counters) and ``/stats`` (the same counters as JSON, for the benchmarks).

``--delay`` holds every answer before its first token (headers of a stream go out at once, as vLLM
does); ``--token-interval`` spaces the content chunks of a stream. A client disconnect cancels the
handler, as vLLM aborts a request whose client went away.

Run as a separate process: ``python benchmarks/_stub_server.py --port 0`` prints
``listening on http://127.0.0.1:PORT`` once it accepts connections. This file imports only the
standard library and aiohttp, so it runs from a path without the package installed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import sys
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field

from aiohttp import web

MODEL = "openai/gpt-oss-20b"
ARC_ANSWER: dict[str, object] = {
    "instructions": "Copy the input grid, then recolour every 1 to 2.",
    "grid": [[0, 2], [2, 0]],
    "reasoning_for_why_old_instructions_are_wrong": "They ignored the recolouring step.",
    "revised_instructions": "Copy the input grid, then recolour every 1 to 2.",
}
PROMPT_TOKENS = 40


@dataclass(frozen=True, kw_only=True)
class StubConfig:
    """How the stub answers. Times are in seconds."""

    delay: float = 0.0
    token_interval: float = 0.0
    chunks: int = 4
    content: str = field(default_factory=lambda: json.dumps(ARC_ANSWER))

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay) and self.delay >= 0):
            raise ValueError(f"delay must be a finite number >= 0, got {self.delay!r}")
        if not (math.isfinite(self.token_interval) and self.token_interval >= 0):
            raise ValueError(f"token_interval must be a finite number >= 0, got {self.token_interval!r}")
        if self.chunks < 1:
            raise ValueError(f"chunks must be >= 1, got {self.chunks!r}")


@dataclass
class Counters:
    """What the stub has seen; exported on ``/metrics`` and ``/stats``."""

    requests: int = 0
    streamed: int = 0
    running: int = 0
    completed: int = 0
    aborted: int = 0
    generation_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "requests": self.requests,
            "streamed": self.streamed,
            "running": self.running,
            "completed": self.completed,
            "aborted": self.aborted,
            "generation_tokens": self.generation_tokens,
        }


CONFIG_KEY = web.AppKey("config", StubConfig)
COUNTERS_KEY = web.AppKey("counters", Counters)


def split_content(content: str, pieces: int) -> list[str]:
    """Cut ``content`` into ``pieces`` consecutive non-empty parts (fewer if it is shorter)."""
    if not content:
        return [""]
    pieces = max(1, min(pieces, len(content)))
    size, extra = divmod(len(content), pieces)
    parts: list[str] = []
    start = 0
    for index in range(pieces):
        end = start + size + (1 if index < extra else 0)
        parts.append(content[start:end])
        start = end
    return parts


def completion_body(*, request_id: str, created: int, content: str, tokens: int) -> dict[str, object]:
    """A non-streaming chat completion laid out like vLLM 0.32's."""
    return {
        "id": request_id,
        "object": "chat.completion",
        "created": created,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": content,
                    "refusal": None,
                    "annotations": None,
                    "audio": None,
                    "function_call": None,
                    "tool_calls": [],
                    "reasoning": None,
                },
                "logprobs": None,
                "finish_reason": "stop",
                "stop_reason": None,
                "token_ids": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": "stub",
        "usage": usage(tokens),
        "prompt_logprobs": None,
        "prompt_token_ids": None,
    }


def usage(tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "total_tokens": PROMPT_TOKENS + tokens,
        "completion_tokens": tokens,
    }


def stream_events(*, request_id: str, created: int, parts: Sequence[str], include_usage: bool) -> list[bytes]:
    """Every SSE event of one streamed answer, ``[DONE]`` included."""

    def chunk(choices: list[dict[str, object]], **extra: object) -> bytes:
        body = {
            "id": request_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL,
            "choices": choices,
            **extra,
        }
        return b"data: " + json.dumps(body, separators=(",", ":")).encode() + b"\n\n"

    def choice(delta: dict[str, str], finish: str | None) -> dict[str, object]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish, "token_ids": None}

    events = [chunk([choice({"role": "assistant", "content": ""}, None)], prompt_token_ids=None)]
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        events.append(chunk([choice({"content": part}, "stop" if last else None)]))
    if include_usage:
        events.append(chunk([], usage=usage(len(parts)), system_fingerprint="stub"))
    events.append(b"data: [DONE]\n\n")
    return events


async def chat_completions(request: web.Request) -> web.StreamResponse:
    config = request.app[CONFIG_KEY]
    counters = request.app[COUNTERS_KEY]
    try:
        body = await request.json()
    except ValueError:
        return error_response(400, "request body is not JSON", param=None)
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return error_response(400, "messages must be a list", param="messages")
    request_id = f"chatcmpl-{uuid.uuid4().hex[:16]}"
    created = int(time.time())
    parts = split_content(config.content, config.chunks)
    counters.requests += 1
    counters.running += 1
    try:
        if body.get("stream"):
            counters.streamed += 1
            options = body.get("stream_options")
            include_usage = isinstance(options, dict) and bool(options.get("include_usage"))
            response = await stream_answer(request, config, request_id, created, parts, include_usage)
        else:
            if config.delay:
                await asyncio.sleep(config.delay)
            response = web.json_response(
                completion_body(
                    request_id=request_id, created=created, content=config.content, tokens=len(parts)
                )
            )
        counters.completed += 1
        counters.generation_tokens += len(parts)
        return response
    except asyncio.CancelledError:
        counters.aborted += 1
        raise
    finally:
        counters.running -= 1


async def stream_answer(
    request: web.Request,
    config: StubConfig,
    request_id: str,
    created: int,
    parts: Sequence[str],
    include_usage: bool,
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(request)
    events = stream_events(request_id=request_id, created=created, parts=parts, include_usage=include_usage)
    if config.delay:
        await asyncio.sleep(config.delay)
    if config.token_interval:
        for event in events:
            await response.write(event)
            await asyncio.sleep(config.token_interval)
    else:
        await response.write(b"".join(events))
    await response.write_eof()
    return response


def error_response(status: int, message: str, *, param: str | None) -> web.Response:
    kind = {400: "BadRequestError", 404: "NotFoundError"}.get(status, "InternalServerError")
    body = {"error": {"message": message, "type": kind, "param": param, "code": status}}
    return web.json_response(body, status=status)


async def health(request: web.Request) -> web.Response:
    return web.Response(status=200)


async def version(request: web.Request) -> web.Response:
    return web.json_response({"version": "0.32.0"})


async def models(request: web.Request) -> web.Response:
    model = {"id": MODEL, "object": "model", "created": 0, "owned_by": "vllm", "max_model_len": 8192}
    return web.json_response({"object": "list", "data": [model]})


async def metrics(request: web.Request) -> web.Response:
    counters = request.app[COUNTERS_KEY]
    labels = f'engine="0",model_name="{MODEL}"'
    lines = [
        "# TYPE vllm:num_requests_running gauge",
        f"vllm:num_requests_running{{{labels}}} {float(counters.running)}",
        "# TYPE vllm:num_requests_waiting gauge",
        f"vllm:num_requests_waiting{{{labels}}} 0.0",
        "# TYPE vllm:kv_cache_usage_perc gauge",
        f"vllm:kv_cache_usage_perc{{{labels}}} 0.0",
        "# TYPE vllm:generation_tokens_total counter",
        f"vllm:generation_tokens_total{{{labels}}} {float(counters.generation_tokens)}",
        "# TYPE vllm:request_success_total counter",
        f'vllm:request_success_total{{{labels},finished_reason="stop"}} {float(counters.completed)}',
    ]
    return web.Response(text="\n".join(lines) + "\n", content_type="text/plain")


async def stats(request: web.Request) -> web.Response:
    return web.json_response(request.app[COUNTERS_KEY].as_dict())


def create_app(config: StubConfig | None = None) -> web.Application:
    """The stub as an aiohttp application (tests run it in-process on loopback)."""
    app = web.Application()
    app[CONFIG_KEY] = config or StubConfig()
    app[COUNTERS_KEY] = Counters()
    app.router.add_post("/v1/chat/completions", chat_completions)
    app.router.add_get("/health", health)
    app.router.add_get("/version", version)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/stats", stats)
    return app


async def serve(config: StubConfig, host: str, port: int) -> None:
    runner = web.AppRunner(create_app(config), access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening on http://{host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default: %(default)s)")
    parser.add_argument(
        "--delay", type=float, default=0.0, help="seconds before the first token (default: %(default)s)"
    )
    parser.add_argument(
        "--token-interval",
        type=float,
        default=0.0,
        help="seconds between the chunks of a stream (default: %(default)s)",
    )
    parser.add_argument(
        "--chunks", type=int, default=4, help="content chunks per streamed answer (default: %(default)s)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = StubConfig(delay=args.delay, token_interval=args.token_interval, chunks=args.chunks)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(config, args.host, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
