"""Response bodies and SSE chunks shaped like vLLM 0.32's OpenAI-compatible server.

Field names and order follow captures of a real server (``tests/fixtures/vllm-0.32/``). JSON is
compact, as vLLM writes it. Chunks are built from a per-response prefix so a streamed token costs
one ``json.dumps`` of its text.
"""

from __future__ import annotations

import json
import secrets
import zlib
from typing import Any

__all__ = [
    "DONE",
    "ChatStreamWriter",
    "CompletionStreamWriter",
    "chat_body",
    "completion_body",
    "dumps",
    "embeddings_body",
    "error_body",
    "fingerprint",
    "models_body",
]

DONE = b"data: [DONE]\n\n"
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def fingerprint(version: str) -> str:
    """A fresh ``system_fingerprint``: vLLM draws one per server start."""
    return f"vllm-{version}-{secrets.token_hex(4)}"


def error_body(message: str, type_: str, code: int, param: str | None = None) -> bytes:
    """``{"error": {"message", "type", "param", "code"}}``, as vLLM sends with an error status."""
    return _dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "total_tokens": prompt + completion, "completion_tokens": completion}


def _reasoning_keys(field: str) -> tuple[str, ...]:
    return ("reasoning_content", "reasoning") if field == "both" else (field,)


class _StreamWriter:
    """The ``data:`` lines of one streamed response; ``finish`` chunks can carry the fingerprint.

    :meth:`tokens` turns the next piece of the answer into chunks as vLLM 0.32 sends them:
    ``length`` rides on the last token's chunk, ``stop`` (end of sequence) and ``tool_calls`` on
    an extra empty chunk; the finish chunk has the fingerprint unless a usage chunk follows.
    """

    def __init__(
        self, *, id_: str, object_: str, created: int, model: str, fingerprint: str, include_usage: bool
    ) -> None:
        self._head = f'data: {{"id":"{id_}","object":"{object_}","created":{created},"model":{_dumps(model)},"choices":'
        self._fingerprint = fingerprint
        self._include_usage = include_usage
        self._started = False

    def _end(self, finish: str | None, fingerprint: bool) -> str:
        if finish is None:
            return '"finish_reason":null,"token_ids":null}]}\n\n'
        tail = f',"system_fingerprint":"{self._fingerprint}"' if fingerprint else ""
        return f'"finish_reason":"{finish}","stop_reason":null,"token_ids":null}}]{tail}}}\n\n'

    def usage(self, prompt: int, completion: int) -> bytes:
        """The usage chunk (``stream_options.include_usage``): no choices, the fingerprint."""
        return (
            self._head
            + "[],"
            + f'"usage":{_dumps(_usage(prompt, completion))},"system_fingerprint":"{self._fingerprint}"}}\n\n'
        ).encode()

    def tail(self, prompt: int, completion: int, reasoning: int) -> bytes:
        """The usage chunk (when asked for) and ``[DONE]``."""
        return (self.usage(prompt, completion) if self._include_usage else b"") + DONE


class ChatStreamWriter(_StreamWriter):
    """Chunks of a streamed chat completion; with ``tool`` (call id, name) the content is its arguments."""

    def __init__(
        self,
        *,
        id_: str,
        created: int,
        model: str,
        reasoning_field: str,
        fingerprint: str,
        include_usage: bool = False,
        tool: tuple[str, str] | None = None,
    ) -> None:
        super().__init__(
            id_=id_, object_="chat.completion.chunk", created=created, model=model, fingerprint=fingerprint,
            include_usage=include_usage,
        )  # fmt: skip
        self._reasoning_keys = _reasoning_keys(reasoning_field)
        self._tool = tool
        self._tool_opened = False

    def role(self) -> bytes:
        """The first chunk, sent with the first token: role and empty content."""
        return (
            self._head + '[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,'
            '"finish_reason":null}],"prompt_token_ids":null,"prompt_text":null}\n\n'
        ).encode()

    def delta(
        self,
        *,
        content: str | None = None,
        reasoning: str | None = None,
        finish: str | None = None,
        fingerprint: bool = False,
    ) -> bytes:
        delta: dict[str, str] = {}
        if reasoning is not None:
            for key in self._reasoning_keys:
                delta[key] = reasoning
        if content is not None:
            delta["content"] = content
        return self._chunk(delta, finish, fingerprint)

    def _chunk(self, delta: dict[str, Any], finish: str | None, fingerprint: bool) -> bytes:
        return (
            self._head
            + '[{"index":0,"delta":'
            + _dumps(delta)
            + ',"logprobs":null,'
            + self._end(finish, fingerprint)
        ).encode()

    def arguments(self, arguments: str, finish: str | None = None, fingerprint: bool = False) -> bytes:
        """A piece of the tool call's arguments; the call's id, type and name come first, on their own."""
        assert self._tool is not None
        head = b""
        if not self._tool_opened:
            self._tool_opened = True
            call_id, name = self._tool
            opening = {
                "id": call_id,
                "type": "function",
                "index": 0,
                "function": {"name": name, "arguments": ""},
            }
            head = self._chunk({"tool_calls": [opening]}, None, False)
        piece = {"tool_calls": [{"index": 0, "function": {"arguments": arguments}}]}
        return head + self._chunk(piece, finish, fingerprint)

    def tokens(self, reasoning: str | None, content: str | None, finish: str | None) -> bytes:
        on_tokens = finish if finish not in ("stop", "tool_calls") else None
        stamp = finish is not None and not self._include_usage
        parts = [] if self._started else [self.role()]
        self._started = True
        if reasoning is not None:
            last = on_tokens if content is None else None
            parts.append(self.delta(reasoning=reasoning, finish=last, fingerprint=stamp and last is not None))
        if content is not None:
            ends = stamp and on_tokens is not None
            if self._tool is not None:
                parts.append(self.arguments(content, on_tokens, ends))
            else:
                parts.append(self.delta(content=content, finish=on_tokens, fingerprint=ends))
        if finish in ("stop", "tool_calls"):
            parts.append(self.delta(content="", finish=finish, fingerprint=stamp))
        return b"".join(parts)


class CompletionStreamWriter(_StreamWriter):
    """Chunks of a streamed text completion (``/v1/completions``)."""

    def __init__(
        self, *, id_: str, created: int, model: str, fingerprint: str, include_usage: bool = False
    ) -> None:
        super().__init__(
            id_=id_, object_="text_completion", created=created, model=model, fingerprint=fingerprint,
            include_usage=include_usage,
        )  # fmt: skip

    def text(self, text: str, finish: str | None = None, fingerprint: bool = False) -> bytes:
        body = '[{"index":0,"text":' + _dumps(text) + ',"logprobs":null,'
        if finish is None:
            return (
                self._head + body + '"finish_reason":null,"stop_reason":null,"token_ids":null}]}\n\n'
            ).encode()
        return (self._head + body + self._end(finish, fingerprint)).encode()

    def tokens(self, reasoning: str | None, content: str | None, finish: str | None) -> bytes:
        on_tokens = finish if finish != "stop" else None
        stamp = finish is not None and not self._include_usage
        text = self.text((reasoning or "") + (content or ""), on_tokens, stamp)
        return text + self.text("", finish, stamp) if finish == "stop" else text


def chat_body(
    *,
    id_: str,
    created: int,
    model: str,
    content: str | None,
    reasoning: str | None,
    reasoning_field: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    fingerprint: str,
    tool_call: tuple[str, str, str] | None = None,
) -> dict[str, Any]:
    """A chat completion; with ``tool_call`` (id, name, arguments) the message calls that tool."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": content if tool_call is None else None,
        "refusal": None,
        "annotations": None,
        "audio": None,
        "function_call": None,
    }
    if tool_call is not None:
        call_id, name, arguments = tool_call
        message["tool_calls"] = [
            {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ]
    for key in _reasoning_keys(reasoning_field):
        message[key] = reasoning
    return {
        "id": id_,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
                "token_ids": None,
                "routed_experts": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": fingerprint,
        "usage": {
            **_usage(prompt_tokens, completion_tokens),
            "prompt_tokens_details": None,
            "completion_tokens_details": None,
        },
        "prompt_logprobs": None,
        "prompt_token_ids": None,
        "prompt_text": None,
        "kv_transfer_params": None,
        "ec_transfer_params": None,
        "metrics": None,
    }


def completion_body(
    *,
    id_: str,
    created: int,
    model: str,
    text: str,
    finish_reason: str,
    prompt_tokens: int,
    completion_tokens: int,
    fingerprint: str,
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "text_completion",
        "created": created,
        "model": model,
        "choices": [
            {
                "index": 0,
                "text": text,
                "logprobs": None,
                "finish_reason": finish_reason,
                "stop_reason": None,
                "token_ids": None,
                "prompt_logprobs": None,
                "prompt_token_ids": None,
            }
        ],
        "service_tier": None,
        "system_fingerprint": fingerprint,
        "usage": {**_usage(prompt_tokens, completion_tokens), "prompt_tokens_details": None},
        "kv_transfer_params": None,
    }


def embeddings_body(
    *, id_: str, created: int, model: str, vectors: list[list[float]], prompt_tokens: int
) -> dict[str, Any]:
    return {
        "id": id_,
        "object": "list",
        "created": created,
        "model": model,
        "data": [{"index": i, "object": "embedding", "embedding": v} for i, v in enumerate(vectors)],
        "usage": {**_usage(prompt_tokens, 0), "prompt_tokens_details": None},
    }


def models_body(*, model: str, created: int, max_model_len: int) -> dict[str, Any]:
    permission = {
        "id": f"modelperm-{zlib.crc32(model.encode()):08x}",
        "object": "model_permission",
        "created": created,
        "allow_create_engine": False,
        "allow_sampling": True,
        "allow_logprobs": True,
        "allow_search_indices": False,
        "allow_view": True,
        "allow_fine_tuning": False,
        "organization": "*",
        "group": None,
        "is_blocking": False,
    }
    card = {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
        "permission": [permission],
    }
    return {"object": "list", "data": [card]}


def dumps(obj: object) -> bytes:
    """Compact JSON bytes."""
    return _dumps(obj).encode()
