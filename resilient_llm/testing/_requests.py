"""Reading a generation request the way vLLM validates it, plus the ``simulator`` extension field.

Chat and Responses API requests also get their :class:`~._answers.Reply` here: what the model
will say (words, JSON for a format, or a tool call), decided from the tools, the format and the
conversation.

Clients steer the simulator per request through ``extra_body={"simulator": {...}}``:
``output_tokens`` (answer length before ``max_tokens``), ``fault`` (one of the request faults, or
``"none"``) and ``prefill_ms`` (prefill time in simulated milliseconds).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

from resilient_llm.testing._answers import WORDS, Reply, ReplyError, chat_reply, message_text, responses_reply
from resilient_llm.testing._config import NO_FAULT, REQUEST_FAULTS, SimulatorConfig
from resilient_llm.testing._text import estimate_tokens

__all__ = ["GenerationRequest", "Kind", "RequestRejected", "parse_body", "parse_request"]

Kind = Literal["chat", "text", "embedding", "responses"]


class RequestRejected(Exception):
    """The request is invalid; carries the status and the fields of vLLM's error body."""

    def __init__(
        self, status: int, message: str, *, param: str | None = None, type_: str | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.type = type_ or ("NotFoundError" if status == 404 else "BadRequestError")


def _invalid(field: str, problem: str) -> RequestRejected:
    """A body that fails schema validation: vLLM 0.32 answers 400 "Bad Request", param ``body.<field>``."""
    detail = {"type": "value_error", "loc": ("body", field), "msg": problem}
    return RequestRejected(
        400, f"1 validation error:\n  {detail}", param=f"body.{field}", type_="Bad Request"
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class GenerationRequest:
    kind: Kind
    stream: bool
    include_usage: bool
    prompt_tokens: int
    max_tokens: int | None
    reply: Reply
    output_tokens: int | None
    fault: str | None
    prefill_ms: float | None
    inputs: tuple[str, ...]
    #: The Responses API request itself, whose settings its response repeats.
    body: dict[str, Any] | None = None


def parse_body(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError as exc:
        raise _invalid("body", f"JSON decode error: {exc}") from None
    if not isinstance(body, dict):
        raise _invalid("body", "Input should be a valid dictionary")
    return body


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
        raise _invalid("messages", "Input should be a non-empty list of messages")
    return messages


def _items(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A Responses API ``input`` as a list of items (a string is one user message)."""
    value = body.get("input")
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise _invalid("input", "Input should be a string or a list of input items")
    return value


def _item_text(item: dict[str, Any]) -> str:
    return (
        message_text(item.get("content")) + str(item.get("arguments") or "") + str(item.get("output") or "")
    )


def _prompt(body: dict[str, Any], kind: Kind) -> tuple[int, tuple[str, ...]]:
    """(prompt tokens, texts) of the request's input."""
    if kind == "chat":
        text = "".join(message_text(m.get("content")) for m in _messages(body))
        return estimate_tokens(len(text)), ()
    if kind == "responses":
        text = message_text(body.get("instructions")) + "".join(_item_text(i) for i in _items(body))
        return estimate_tokens(len(text)), ()
    field = "prompt" if kind == "text" else "input"
    value = body.get(field)
    if isinstance(value, str):
        return estimate_tokens(len(value)), (value,)
    if isinstance(value, list) and value and all(_is_int(v) for v in value):
        return len(value), (json.dumps(value),)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        if kind == "text" and len(value) > 1:
            raise RequestRejected(400, "The simulator serves one prompt per request.", param="prompt")
        return sum(estimate_tokens(len(v)) for v in value), tuple(value)
    raise RequestRejected(
        400, f"{field} must be a string, a list of strings or a list of token ids.", param=field
    )


def _simulator_field(body: dict[str, Any]) -> tuple[int | None, str | None, float | None]:
    extension = body.get("simulator")
    if extension is None:
        return None, None, None
    if not isinstance(extension, dict):
        raise _invalid("simulator", "Input should be a valid dictionary")
    output_tokens = extension.get("output_tokens")
    if output_tokens is not None and not (_is_int(output_tokens) and output_tokens >= 1):
        raise _invalid("simulator", f"simulator.output_tokens={output_tokens!r} must be an int >= 1")
    fault = extension.get("fault")
    if fault is not None and not (isinstance(fault, str) and (fault in REQUEST_FAULTS or fault in NO_FAULT)):
        known = ", ".join(sorted(REQUEST_FAULTS))
        raise _invalid("simulator", f"simulator.fault={fault!r} is not one of: none, {known}")
    prefill_ms = extension.get("prefill_ms")
    if prefill_ms is not None:
        ok = isinstance(prefill_ms, (int, float)) and not isinstance(prefill_ms, bool)
        if not (ok and math.isfinite(prefill_ms) and prefill_ms >= 0):
            raise _invalid("simulator", f"simulator.prefill_ms={prefill_ms!r} must be a number >= 0")
        prefill_ms = float(prefill_ms)
    return output_tokens, fault, prefill_ms


def parse_request(body: dict[str, Any], kind: Kind, config: SimulatorConfig) -> GenerationRequest:
    """Validate ``body`` for endpoint ``kind``; raises :class:`RequestRejected` as vLLM would."""
    model = body.get("model")
    if model is not None and model != config.model:
        raise RequestRejected(
            404, f"The model `{model}` does not exist. Valid aliases: {config.model}.", param="model"
        )
    prompt_tokens, inputs = _prompt(body, kind)
    n = body.get("n")
    if n is not None and n != 1:
        raise RequestRejected(400, "The simulator only serves n=1.", param="n")
    if kind == "responses":
        max_tokens = body.get("max_output_tokens")
    else:
        max_tokens = body.get("max_completion_tokens")
        if max_tokens is None:
            max_tokens = body.get("max_tokens")
    limit = config.max_model_len
    if max_tokens is not None:
        if not _is_int(max_tokens) or max_tokens < 1:
            raise _invalid("max_tokens", f"Input should be an integer >= 1, got {max_tokens!r}")
        if max_tokens > limit:
            raise RequestRejected(
                400,
                f"max_tokens={max_tokens} cannot be greater than max_model_len={limit}. Please request "
                f"fewer output tokens. (parameter=max_tokens, value={max_tokens})",
                param="max_tokens",
            )
    if prompt_tokens + (max_tokens or 1) > limit and kind != "embedding":
        raise RequestRejected(
            400,
            f"This model's maximum context length is {limit} tokens. However, your request has "
            f"{prompt_tokens} input tokens and requests {max_tokens or 1} output tokens. Please reduce "
            "the length of the input messages or the number of output tokens.",
        )
    stream = bool(body.get("stream", False))
    if stream and kind == "embedding":
        raise RequestRejected(400, "Embeddings cannot be streamed.", param="stream")
    options = body.get("stream_options")
    include_usage = bool(stream and isinstance(options, dict) and options.get("include_usage"))
    try:
        if kind == "chat":
            reply = chat_reply(body, _messages(body))
        elif kind == "responses":
            reply = responses_reply(body, _items(body))
        else:
            reply = WORDS
    except ReplyError as exc:
        raise RequestRejected(400, str(exc), param=exc.param) from None
    output_tokens, fault, prefill_ms = _simulator_field(body)
    return GenerationRequest(
        kind=kind,
        stream=stream,
        include_usage=include_usage,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        reply=reply,
        output_tokens=output_tokens,
        fault=fault,
        prefill_ms=prefill_ms,
        inputs=inputs,
        body=body if kind == "responses" else None,
    )
