"""The generation endpoints: one attempt from its request to its last byte, faults included.

Chat completions, text completions, embeddings and the Responses API share one path; what the
model says (words, JSON for a format, a tool call) was decided when the request was read, and a
per-endpoint writer turns the answer's tokens into that endpoint's chunks or events.

An attempt is planned (fault, answer length) in arrival order, then either answered at once
(status faults, a dead engine, a full queue), held forever (``lost``, ``restart``), or turned into
a :class:`Sequence` for the engines. Streaming responses send headers at once and the first chunk
with the first token; non-streaming ones send nothing until the answer is complete.

Faults at the midpoint (``ghost``, ``drop``, ``truncated``, ``error_chunk``) act once half of the
answer's tokens exist (streaming: once half were sent).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, NoReturn

from aiohttp import web

from resilient_llm.testing._engine import SeqState, Sequence
from resilient_llm.testing._requests import (
    GenerationRequest,
    Kind,
    RequestRejected,
    parse_body,
    parse_request,
)
from resilient_llm.testing._responses import ResponseIds, ResponsesStreamWriter, responses_body
from resilient_llm.testing._text import build_answer, embedding
from resilient_llm.testing._wire import (
    DONE,
    ChatStreamWriter,
    CompletionStreamWriter,
    chat_body,
    completion_body,
    dumps,
    embeddings_body,
    error_body,
)

if TYPE_CHECKING:
    from resilient_llm.testing._core import SimulatorCore
    from resilient_llm.testing._faults import AttemptPlan

__all__ = ["REQUEST_ID_KEY", "GenerationHandlers", "error_response", "stamp_request_id"]

#: Where a handler leaves the attempt's id for the ``x-request-id`` header (see ``_request_id``).
REQUEST_ID_KEY = web.RequestKey("resilient_llm.request_id", str)

logger = logging.getLogger("resilient_llm.testing")

_MIDPOINT_FAULTS = frozenset({"ghost", "drop", "truncated", "error_chunk"})
_BUSY = (
    "The engine is currently busy and cannot accept new requests. "
    "Please try again later or on a different instance."
)
_SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}

_Writer = ChatStreamWriter | CompletionStreamWriter | ResponsesStreamWriter


async def stamp_request_id(request: web.BaseRequest, response: web.StreamResponse) -> None:
    """``x-request-id`` on every response, as vLLM's ``--enable-request-id-headers`` sends it: the
    client's own ``X-Request-Id``, else the attempt's id, else a fresh one."""
    if "X-Request-Id" not in response.headers:
        ident = request.get(REQUEST_ID_KEY) or request.headers.get("X-Request-Id") or uuid.uuid4().hex
        response.headers["X-Request-Id"] = ident


def error_response(status: int, message: str, type_: str, *, param: str | None = None) -> web.Response:
    return web.Response(
        status=status, body=error_body(message, type_, status, param), content_type="application/json"
    )


async def _forever() -> NoReturn:
    """Hold the connection open and silent until the client leaves or the server goes away."""
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


def _drop(request: web.BaseRequest) -> web.Response:
    """Close the connection without a (further) response."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()


class _Job:
    """One sequence in the engine and what its client has received."""

    __slots__ = ("_settled", "delivered", "event", "reasoning", "seq", "tokens", "tool")

    def __init__(self, seq: Sequence, tokens: list[str], reasoning: int, tool: str | None = None) -> None:
        self.seq = seq
        self.tokens = tokens
        self.reasoning = reasoning
        self.tool = tool  # the tool the content calls (the content is its arguments), if any
        self.delivered = 0
        self.event = asyncio.Event()
        self._settled = False
        seq.notify = self.event.set

    async def reach(self, tokens: int) -> None:
        """Wait until the sequence has ``tokens`` tokens or has ended."""
        seq = self.seq
        seq.wake_at = tokens
        while not (seq.done or seq.generated >= tokens):
            self.event.clear()
            await self.event.wait()

    @property
    def killed(self) -> bool:
        """Ended without finishing: aborted, or forgotten by a server restart."""
        return self.seq.state is SeqState.ABORTED

    def text(self, start: int, stop: int) -> tuple[str | None, str | None]:
        """(reasoning, content) of tokens ``start:stop``; ``None`` where that part is empty."""
        split = self.reasoning
        reasoning = "".join(self.tokens[start : min(stop, split)]) if start < split else None
        content = "".join(self.tokens[max(start, split) : stop]) if stop > split else None
        return reasoning, content

    def settle(self, core: SimulatorCore) -> None:
        if not self._settled:
            self._settled = True
            core.stats.settle(self.seq.generated, self.delivered)


class GenerationHandlers:
    """``/v1/chat/completions``, ``/v1/completions``, ``/v1/embeddings`` and ``/v1/responses`` over one core."""

    def __init__(self, core: SimulatorCore) -> None:
        self._core = core

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._attempt(request, "chat")

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._attempt(request, "text")

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        return await self._attempt(request, "embedding")

    async def responses(self, request: web.Request) -> web.StreamResponse:
        return await self._attempt(request, "responses")

    async def _attempt(self, request: web.Request, kind: Kind) -> web.StreamResponse:
        core = self._core
        core.stats.requests_received += 1
        try:
            req = parse_request(parse_body(await request.read()), kind, core.config)
        except RequestRejected as exc:
            return error_response(exc.status, exc.message, exc.type, param=exc.param)
        plan = core.planner.next_attempt(req.fault)
        ident = request.headers.get("X-Request-Id") or plan.id_hex  # vLLM puts it in the body id
        request[REQUEST_ID_KEY] = ident
        fault = plan.fault
        if fault is not None:
            core.stats.faults[fault] += 1
            logger.debug("attempt %d: fault %s", plan.index, fault)
        early = self._early_answer(fault, req.stream)
        if early is not None:
            return early
        if fault in ("lost", "restart"):
            if fault == "restart":
                core.on_restart(core.config.restart_down_for)
            elif req.stream:
                await web.StreamResponse(headers=_SSE_HEADERS).prepare(request)
            await _forever()
        job = self._job(req, plan, fault)
        core.submit(job.seq)
        try:
            if req.stream:
                return await self._stream(request, req, ident, job, fault)
            return await self._respond(request, req, ident, job, fault)
        finally:
            if core.abort(job.seq):
                core.stats.requests_aborted += 1
            job.settle(core)

    def _early_answer(self, fault: str | None, stream: bool) -> web.Response | None:
        """Answers that never reach the engine."""
        core, config = self._core, self._core.config
        if core.dead:
            return error_response(
                500,
                "EngineCore encountered an issue. See stack trace (above) for the root cause.",
                "InternalServerError",
            )
        if fault == "429":
            delay = config.scaled(config.retry_after)
            response = error_response(429, "Too many requests; retry later.", "RateLimitError")
            response.headers["Retry-After"] = str(max(1, math.ceil(delay)))
            response.headers["retry-after-ms"] = str(round(delay * 1000))
            return response
        if fault == "500":
            return error_response(500, "Internal server error.", "InternalServerError")
        if fault == "503" or core.queue_full():
            # As vLLM 0.32 with --max-num-queued-reqs: 503 without Retry-After, or for a stream an
            # HTTP 200 whose only event is the error (written with spaces, unlike other chunks).
            if not stream:
                return error_response(503, _BUSY, "Service Unavailable")
            error = {"error": {"message": _BUSY, "type": "Service Unavailable", "param": None, "code": 503}}
            return web.Response(body=f"data: {json.dumps(error)}\n\n".encode() + DONE, headers=_SSE_HEADERS)
        return None

    def _job(self, req: GenerationRequest, plan: AttemptPlan, fault: str | None) -> _Job:
        config = self._core.config
        if req.kind == "embedding":
            tokens: list[str] = []
            reasoning = target = 0
            finish = "stop"
        else:
            wanted = req.output_tokens or plan.output_tokens
            reasons = req.kind in ("chat", "responses")
            reasoning = min(wanted - 1, round(wanted * config.reasoning_ratio)) if reasons else 0
            reply = req.reply
            answer = build_answer(
                wanted,
                reasoning_tokens=reasoning,
                json_mode=reply.kind == "arc_json",
                offset=plan.text_offset,
                fixed=reply.text if reply.kind in ("text", "tool_call") else None,
            )
            tokens = answer.reasoning + answer.content
            cap = req.max_tokens if req.max_tokens is not None else config.max_model_len - req.prompt_tokens
            target = min(len(tokens), cap)
            finish = "length" if len(tokens) > cap else "tool_calls" if reply.tool else "stop"
        prefill = (
            req.prefill_ms / 1000
            if req.prefill_ms is not None
            else req.prompt_tokens * config.prefill_time_per_token
        )
        seq = Sequence(
            prompt_tokens=req.prompt_tokens,
            target=target,
            finish_reason=finish,
            prefill_time=config.scaled(prefill),
            slowdown=config.slow_factor if fault == "slow" else 1.0,
            max_gap=config.scaled(config.slow_max_gap) if fault == "slow" else None,
        )
        return _Job(seq, tokens, reasoning, None if req.kind == "embedding" else req.reply.tool)

    # -- non-streaming -------------------------------------------------------------------------
    async def _respond(
        self, request: web.Request, req: GenerationRequest, ident: str, job: _Job, fault: str | None
    ) -> web.Response:
        core, seq = self._core, job.seq
        if fault in ("drop", "error_chunk"):
            await job.reach(seq.target // 2)
            killed = job.killed
            core.abort(seq)
            if fault == "drop" or killed:
                return _drop(request)
            return error_response(
                500, "The engine failed while generating this request.", "InternalServerError"
            )
        await job.reach(seq.target)
        if job.killed:
            return _drop(request)
        if fault == "ghost":
            job.settle(core)
            await _forever()
        body = dumps(self._body(req, ident, job))
        if fault == "truncated":
            body = body[: len(body) // 2]
        else:
            job.delivered = seq.generated
            core.stats.requests_completed += 1
        return web.Response(body=body, content_type="application/json")

    def _body(self, req: GenerationRequest, ident: str, job: _Job) -> dict[str, object]:
        config, created = self._core.config, int(time.time())
        if req.kind == "embedding":
            vectors = [embedding(text, config.embedding_dim) for text in req.inputs]
            return embeddings_body(
                id_=f"embd-{ident}", created=created, model=config.model, vectors=vectors,
                prompt_tokens=req.prompt_tokens,
            )  # fmt: skip
        reasoning, content = job.text(0, job.seq.target)
        if req.kind == "responses":
            return responses_body(
                req.body or {}, ids=ResponseIds.of(ident), created=created, model=config.model,
                reasoning=reasoning, content=content, tool=job.tool, finish=job.seq.finish_reason,
                prompt_tokens=req.prompt_tokens, completion_tokens=job.seq.target,
                reasoning_tokens=min(job.reasoning, job.seq.target),
            )  # fmt: skip
        if req.kind == "text":
            return completion_body(
                id_=f"cmpl-{ident}", created=created, model=config.model, text=content or "",
                finish_reason=job.seq.finish_reason, prompt_tokens=req.prompt_tokens,
                completion_tokens=job.seq.target, fingerprint=self._core.fingerprint,
            )  # fmt: skip
        return chat_body(
            id_=f"chatcmpl-{ident}", created=created, model=config.model, content=content,
            reasoning=reasoning, reasoning_field=config.reasoning_field, finish_reason=job.seq.finish_reason,
            prompt_tokens=req.prompt_tokens, completion_tokens=job.seq.target, fingerprint=self._core.fingerprint,
            tool_call=None if job.tool is None else (f"chatcmpl-tool-{ident}", job.tool, content or ""),
        )  # fmt: skip

    # -- streaming -----------------------------------------------------------------------------
    async def _stream(
        self, request: web.Request, req: GenerationRequest, ident: str, job: _Job, fault: str | None
    ) -> web.StreamResponse:
        core, seq = self._core, job.seq
        writer = self._writer(req, ident, job)
        stop = seq.target // 2 if fault in _MIDPOINT_FAULTS else seq.target
        if seq.done and stop == seq.target and not job.killed:
            # Already complete (instant mode): the whole stream in one write, as fast as it gets.
            body = self._chunks(writer, job, seq.target, seq.finish_reason)
            body += self._tail(writer, req, job)
            job.delivered = seq.target
            core.stats.requests_completed += 1
            return web.Response(body=body, headers=_SSE_HEADERS)
        response = web.StreamResponse(headers=_SSE_HEADERS)
        await response.prepare(request)
        # A client that closed its connection mid-answer: the request is aborted (below), as vLLM does.
        with contextlib.suppress(ConnectionResetError):
            await self._stream_events(request, req, writer, job, fault, stop, response)
        return response

    async def _stream_events(
        self,
        request: web.Request,
        req: GenerationRequest,
        writer: _Writer,
        job: _Job,
        fault: str | None,
        stop: int,
        response: web.StreamResponse,
    ) -> None:
        core, seq = self._core, job.seq
        while job.delivered < stop:
            await job.reach(job.delivered + 1)
            if job.killed:
                _drop(request)
                return
            upto = min(seq.generated, stop)
            finish = seq.finish_reason if upto == seq.target else None
            await response.write(self._chunks(writer, job, upto, finish))
            job.delivered = upto
        if fault == "ghost":
            await job.reach(seq.target)
            job.settle(core)
            await _forever()
        if fault == "drop":
            core.abort(seq)
            _drop(request)
        elif fault == "truncated":
            core.abort(seq)
            await response.write_eof()
        elif fault == "error_chunk":
            core.abort(seq)
            error = error_body("The engine failed while generating this request.", "InternalServerError", 500)
            await response.write(b"data: " + error + b"\n\n" + DONE)
        else:
            await response.write(self._tail(writer, req, job))
            core.stats.requests_completed += 1

    def _writer(self, req: GenerationRequest, ident: str, job: _Job) -> _Writer:
        core, config, created = self._core, self._core.config, int(time.time())
        if req.kind == "responses":
            return ResponsesStreamWriter(
                req.body or {}, ids=ResponseIds.of(ident), created=created, model=config.model, tool=job.tool
            )
        if req.kind == "chat":
            return ChatStreamWriter(
                id_=f"chatcmpl-{ident}", created=created, model=config.model,
                reasoning_field=config.reasoning_field, fingerprint=core.fingerprint,
                include_usage=req.include_usage,
                tool=None if job.tool is None else (f"chatcmpl-tool-{ident}", job.tool),
            )  # fmt: skip
        return CompletionStreamWriter(
            id_=f"cmpl-{ident}", created=created, model=config.model, fingerprint=core.fingerprint,
            include_usage=req.include_usage,
        )  # fmt: skip

    @staticmethod
    def _tail(writer: _Writer, req: GenerationRequest, job: _Job) -> bytes:
        """What follows the last token: usage (when asked for, always for the Responses API) and the end."""
        return writer.tail(req.prompt_tokens, job.seq.target, min(job.reasoning, job.seq.target))

    @staticmethod
    def _chunks(writer: _Writer, job: _Job, upto: int, finish: str | None) -> bytes:
        """The chunks (or events) carrying tokens ``job.delivered:upto``."""
        reasoning, content = job.text(job.delivered, upto)
        return writer.tokens(reasoning, content, finish)
