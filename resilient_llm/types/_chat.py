"""``chat.completions.create`` without streaming: :class:`ChatCompletion` and what it holds."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from ._base import BaseModel, ReasoningModel
from ._usage import CompletionUsage

__all__ = [
    "Annotation",
    "AnnotationURLCitation",
    "ChatCompletion",
    "ChatCompletionAudio",
    "ChatCompletionMessage",
    "ChatCompletionMessageToolCall",
    "ChatCompletionTokenLogprob",
    "Choice",
    "ChoiceLogprobs",
    "Function",
    "FunctionCall",
    "TopLogprob",
]


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class ChatCompletionTokenLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None
    top_logprobs: list[TopLogprob] = Field(default_factory=list)


class ChoiceLogprobs(BaseModel):
    content: list[ChatCompletionTokenLogprob] | None = None
    refusal: list[ChatCompletionTokenLogprob] | None = None


class Function(BaseModel):
    """The function a tool call invokes; ``arguments`` is JSON text as the model wrote it (validate it)."""

    name: str
    arguments: str


class ChatCompletionMessageToolCall(BaseModel):
    id: str
    function: Function
    type: str = "function"


class FunctionCall(BaseModel):
    """The deprecated single ``function_call`` of older servers."""

    name: str
    arguments: str


class AnnotationURLCitation(BaseModel):
    end_index: int
    start_index: int
    title: str
    url: str


class Annotation(BaseModel):
    url_citation: AnnotationURLCitation
    type: str = "url_citation"


class ChatCompletionAudio(BaseModel):
    id: str
    data: str
    expires_at: int
    transcript: str


class ChatCompletionMessage(ReasoningModel):
    """The assistant's answer. ``reasoning`` / ``reasoning_content`` read vLLM's reasoning text."""

    content: str | None = None
    refusal: str | None = None
    role: str = "assistant"
    annotations: list[Annotation] | None = None
    audio: ChatCompletionAudio | None = None
    function_call: FunctionCall | None = None
    tool_calls: list[ChatCompletionMessageToolCall] | None = None


class Choice(BaseModel):
    """One answer. ``finish_reason`` is ``"stop"``, ``"length"``, ``"tool_calls"``, ``"content_filter"``...

    vLLM adds ``stop_reason``: the stop string or token id that ended generation, or ``None``.
    """

    index: int
    message: ChatCompletionMessage
    finish_reason: str | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletion(BaseModel):
    id: str
    choices: list[Choice]
    created: int
    model: str
    object: str = "chat.completion"
    metadata: dict[str, str] | None = None
    moderation: Any = None
    service_tier: str | None = None
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None
