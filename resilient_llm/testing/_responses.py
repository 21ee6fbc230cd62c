"""The Responses API (``POST /v1/responses``) on the wire: the response object and its typed stream events.

Shapes follow openai-python's ``openai.types.responses`` (``Response``, ``ResponseStreamEvent``)
and vLLM 0.32's server: a ``reasoning`` output item (its text as ``reasoning_text`` content) when
the model reasoned, then either a ``message`` with one ``output_text`` part or a ``function_call``.
A stream sends ``event:`` and ``data:`` lines with increasing ``sequence_number`` s: ``response.created``,
``response.in_progress``, per item ``response.output_item.added``, its part and deltas, their
``.done`` events and ``response.output_item.done``, and last ``response.completed`` (or
``response.incomplete`` when ``max_output_tokens`` cut the answer). No ``[DONE]`` follows.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["ResponseIds", "ResponsesStreamWriter", "responses_body"]

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


@dataclass(frozen=True, slots=True)
class ResponseIds:
    """The ids of one response and its items, all drawn from the attempt's id."""

    response: str
    reasoning: str
    message: str
    call_item: str
    call: str

    @classmethod
    def of(cls, ident: str) -> ResponseIds:
        return cls(f"resp_{ident}", f"rs_{ident}", f"msg_{ident}", f"fc_{ident}", f"call_{ident}")


def _usage(prompt: int, completion: int, reasoning: int) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def _shell(request: Mapping[str, Any], *, id_: str, created: int, model: str, status: str) -> dict[str, Any]:
    """The response object without output or usage, repeating the request's settings as vLLM does."""
    text = request.get("text")
    return {
        "id": id_,
        "created_at": created,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "metadata": request.get("metadata"),
        "model": model,
        "object": "response",
        "output": [],
        "parallel_tool_calls": request.get("parallel_tool_calls", True),
        "temperature": request.get("temperature", 1.0),
        "tool_choice": request.get("tool_choice", "auto"),
        "tools": request.get("tools") or [],
        "top_p": request.get("top_p", 1.0),
        "background": False,
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": None,
        "previous_response_id": request.get("previous_response_id"),
        "prompt": None,
        "reasoning": request.get("reasoning"),
        "service_tier": "auto",
        "status": status,
        "text": text if isinstance(text, Mapping) else {"format": {"type": "text"}},
        "top_logprobs": None,
        "truncation": "disabled",
        "usage": None,
        "user": None,
    }


def _finished(
    shell: dict[str, Any], output: list[dict[str, Any]], finish: str, usage: dict[str, Any]
) -> None:
    cut = finish == "length"
    shell["status"] = "incomplete" if cut else "completed"
    shell["incomplete_details"] = {"reason": "max_output_tokens"} if cut else None
    shell["output"] = output
    shell["usage"] = usage


def _reasoning_item(ids: ResponseIds, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [{"text": text, "type": "reasoning_text"}]
    return {"id": ids.reasoning, "summary": [], "type": "reasoning", "content": content, "status": status}


def _text_part(text: str) -> dict[str, Any]:
    return {"annotations": [], "text": text, "type": "output_text", "logprobs": []}


def _message_item(ids: ResponseIds, text: str | None, status: str) -> dict[str, Any]:
    content = [] if text is None else [_text_part(text)]
    return {"id": ids.message, "content": content, "role": "assistant", "status": status, "type": "message"}


def _call_item(ids: ResponseIds, name: str, arguments: str, status: str) -> dict[str, Any]:
    return {
        "arguments": arguments, "call_id": ids.call, "name": name, "type": "function_call",
        "id": ids.call_item, "status": status,
    }  # fmt: skip


def responses_body(
    request: Mapping[str, Any],
    *,
    ids: ResponseIds,
    created: int,
    model: str,
    reasoning: str | None,
    content: str | None,
    tool: str | None,
    finish: str,
    prompt_tokens: int,
    completion_tokens: int,
    reasoning_tokens: int,
) -> dict[str, Any]:
    """The whole response of a non-streaming request."""
    item_status = "incomplete" if finish == "length" else "completed"
    output = [] if reasoning is None else [_reasoning_item(ids, reasoning, "completed")]
    if tool is not None:
        output.append(_call_item(ids, tool, content or "", item_status))
    elif content is not None or not output:
        output.append(_message_item(ids, content or "", item_status))
    body = _shell(request, id_=ids.response, created=created, model=model, status="in_progress")
    _finished(body, output, finish, _usage(prompt_tokens, completion_tokens, reasoning_tokens))
    return body


class ResponsesStreamWriter:
    """The events of one streamed response, fed piece by piece as the answer's tokens exist."""

    def __init__(
        self, request: Mapping[str, Any], *, ids: ResponseIds, created: int, model: str, tool: str | None
    ) -> None:
        self._ids = ids
        self._tool = tool
        self._shell = _shell(request, id_=ids.response, created=created, model=model, status="in_progress")
        self._sequence = 0
        self._started = False
        self._open: str | None = None  # "reasoning" | "content": the item being written
        self._text = ""
        self._output: list[dict[str, Any]] = []
        self._finish = "stop"

    def _event(self, type_: str, **fields: Any) -> bytes:
        payload = {"type": type_, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return b"event: " + type_.encode() + b"\ndata: " + _dumps(payload).encode() + b"\n\n"

    def _where(self) -> dict[str, Any]:
        return {"output_index": len(self._output)}

    def _item_id(self) -> str:
        if self._open == "reasoning":
            return self._ids.reasoning
        return self._ids.call_item if self._tool is not None else self._ids.message

    def _open_item(self, kind: str) -> bytes:
        self._open, self._text = kind, ""
        ids, where = self._ids, self._where()
        if kind == "reasoning":
            added = self._event(
                "response.output_item.added", item=_reasoning_item(ids, None, "in_progress"), **where
            )
            part = {"text": "", "type": "reasoning_text"}
        elif self._tool is not None:
            return self._event(
                "response.output_item.added", item=_call_item(ids, self._tool, "", "in_progress"), **where
            )
        else:
            added = self._event(
                "response.output_item.added", item=_message_item(ids, None, "in_progress"), **where
            )
            part = _text_part("")
        return added + self._event(
            "response.content_part.added", item_id=self._item_id(), content_index=0, part=part, **where
        )

    def _delta(self, piece: str) -> bytes:
        self._text += piece
        common = {"item_id": self._item_id(), **self._where()}
        if self._open == "reasoning":
            return self._event("response.reasoning_text.delta", content_index=0, delta=piece, **common)
        if self._tool is not None:
            return self._event("response.function_call_arguments.delta", delta=piece, **common)
        return self._event("response.output_text.delta", content_index=0, delta=piece, logprobs=[], **common)

    def _close_item(self) -> bytes:
        ids, text, where = self._ids, self._text, self._where()
        common = {"item_id": self._item_id(), **where}
        status = "incomplete" if self._finish == "length" and self._open == "content" else "completed"
        if self._open == "reasoning":
            item = _reasoning_item(ids, text, "completed")
            parts = self._event("response.reasoning_text.done", content_index=0, text=text, **common)
            parts += self._event(
                "response.content_part.done",
                content_index=0,
                part={"text": text, "type": "reasoning_text"},
                **common,
            )
        elif self._tool is not None:
            item = _call_item(ids, self._tool, text, status)
            parts = self._event(
                "response.function_call_arguments.done", arguments=text, name=self._tool, **common
            )
        else:
            item = _message_item(ids, text, status)
            parts = self._event(
                "response.output_text.done", content_index=0, text=text, logprobs=[], **common
            )
            parts += self._event(
                "response.content_part.done", content_index=0, part=_text_part(text), **common
            )
        parts += self._event("response.output_item.done", item=item, **where)
        self._output.append(item)
        self._open = None
        return parts

    def tokens(self, reasoning: str | None, content: str | None, finish: str | None) -> bytes:
        """The events for the next pieces of reasoning and content; ``finish`` closes the open item."""
        parts: list[bytes] = []
        if not self._started:
            self._started = True
            parts.append(self._event("response.created", response=self._shell))
            parts.append(self._event("response.in_progress", response=self._shell))
        if reasoning:
            if self._open != "reasoning":
                parts.append(self._open_item("reasoning"))
            parts.append(self._delta(reasoning))
        if content is not None:
            if self._open == "reasoning":
                parts.append(self._close_item())
            if self._open is None:
                parts.append(self._open_item("content"))
            if content:
                parts.append(self._delta(content))
        if finish is not None:
            self._finish = finish
            if self._open == "reasoning" or (not self._output and self._open is None):
                if self._open == "reasoning":
                    parts.append(self._close_item())
                parts.append(self._open_item("content"))  # an answer without content still has a message
            parts.append(self._close_item())
        return b"".join(parts)

    def tail(self, prompt: int, completion: int, reasoning: int) -> bytes:
        """``response.completed`` (``response.incomplete`` when cut) with the output and usage."""
        _finished(self._shell, self._output, self._finish, _usage(prompt, completion, reasoning))
        kind = "response.incomplete" if self._finish == "length" else "response.completed"
        return self._event(kind, response=self._shell)
