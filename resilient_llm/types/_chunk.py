"""``chat.completions.create(stream=True)``: one :class:`ChatCompletionChunk` per server-sent event."""

from __future__ import annotations

from typing import Any

from ._base import BaseModel, ReasoningModel
from ._chat import ChoiceLogprobs
from ._usage import CompletionUsage

__all__ = [
    "ChatCompletionChunk",
    "ChoiceDelta",
    "ChoiceDeltaAudio",
    "ChoiceDeltaFunctionCall",
    "ChoiceDeltaToolCall",
    "ChoiceDeltaToolCallFunction",
    "ChunkChoice",
]


class ChoiceDeltaAudio(BaseModel):
    id: str | None = None
    data: str | None = None
    expires_at: int | None = None
    transcript: str | None = None


class ChoiceDeltaFunctionCall(BaseModel):
    arguments: str | None = None
    name: str | None = None


class ChoiceDeltaToolCallFunction(BaseModel):
    arguments: str | None = None
    name: str | None = None


class ChoiceDeltaToolCall(BaseModel):
    """A fragment of a tool call; fragments with the same ``index`` make up one call."""

    index: int
    id: str | None = None
    function: ChoiceDeltaToolCallFunction | None = None
    type: str | None = None


class ChoiceDelta(ReasoningModel):
    """What one event adds to an answer. ``reasoning`` / ``reasoning_content`` read vLLM's reasoning text."""

    audio: ChoiceDeltaAudio | None = None
    content: str | None = None
    function_call: ChoiceDeltaFunctionCall | None = None
    refusal: str | None = None
    role: str | None = None
    tool_calls: list[ChoiceDeltaToolCall] | None = None


class ChunkChoice(BaseModel):
    """One answer's part of a chunk (openai-python calls this ``chat_completion_chunk.Choice``)."""

    delta: ChoiceDelta
    index: int
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(BaseModel):
    """One event. ``choices`` is empty on the final usage-only chunk."""

    id: str
    choices: list[ChunkChoice]
    created: int
    model: str
    object: str = "chat.completion.chunk"
    moderation: Any = None
    obfuscation: str | None = None
    service_tier: str | None = None
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None
