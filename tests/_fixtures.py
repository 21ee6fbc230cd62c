"""Recorded server answers (``tests/fixtures``) and the chunks vLLM would stream for a body."""

from __future__ import annotations

import json
import pathlib
from typing import Any

FIXTURES = pathlib.Path(__file__).parent / "fixtures"

#: Older openai versions (1.72 among them) assign the client's resources (``chat``, ``completions``,
#: ``responses``...) in ``__init__``; those instance attributes hide the library's own resources, which are
#: ``cached_property``s of its subclass: calls still go through the resilient pipeline (``request()``), but
#: not on the fast path, and ``chat.completions.parse``/``stream`` (in ``beta`` on those versions) are
#: missing. The fix belongs in ``_client.py``; the tests that depend on it are strict xfails until then.


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def sse_chunks(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: {")]


def completions_helpers(client: Any) -> Any:
    """Where ``parse`` and ``stream`` live: ``chat.completions`` (newer openai) or ``beta.chat.completions``."""
    chat = client.chat.completions
    return chat if hasattr(chat, "parse") else client.beta.chat.completions


def sse_bytes(chunks: list[dict[str, Any]], *, done: bool = True) -> bytes:
    """An event-stream body: one ``data:`` event per chunk, then ``[DONE]``."""
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def vllm_chunks(
    body: dict[str, Any], cuts: int = 3, reasoning_key: str = "reasoning"
) -> list[dict[str, Any]]:
    """Chunks as vLLM streams them for a non-streaming body (text cut into ``cuts`` pieces)."""
    head = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }

    def pieces(text: str) -> list[str]:
        step = max(1, len(text) // cuts)
        return [text[i : i + step] for i in range(0, len(text), step)]

    chunks = [
        {
            **head,
            "choices": [
                {"index": c["index"], "delta": {"role": "assistant", "content": ""}, "finish_reason": None}
            ],
            "prompt_token_ids": None,
        }
        for c in body["choices"]
    ]
    for c in body["choices"]:
        message = c["message"]
        reasoning = message.get("reasoning") or message.get("reasoning_content")
        deltas: list[dict[str, Any]] = [{reasoning_key: p} for p in pieces(reasoning or "")]
        deltas += [{"content": p} for p in pieces(message.get("content") or "")]
        for i, call in enumerate(message.get("tool_calls") or []):
            fn = call["function"]
            deltas.append(
                {
                    "tool_calls": [
                        {"index": i, "id": call["id"], "type": "function", "function": {"name": fn["name"]}}
                    ]
                }
            )
            deltas += [
                {"tool_calls": [{"index": i, "function": {"arguments": p}}]} for p in pieces(fn["arguments"])
            ]
        for delta in deltas:
            chunks.append({**head, "choices": [{"index": c["index"], "delta": delta, "finish_reason": None}]})
        final = {"index": c["index"], "delta": {"content": ""}, "finish_reason": c["finish_reason"]}
        final["stop_reason"] = c.get("stop_reason")
        chunks.append({**head, "choices": [final]})
    chunks.append(
        {**head, "choices": [], "usage": body["usage"], "system_fingerprint": body.get("system_fingerprint")}
    )
    return chunks
