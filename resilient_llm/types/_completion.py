"""``completions.create`` (``/v1/completions``): :class:`Completion`, the same shape streamed or not."""

from __future__ import annotations

from ._base import BaseModel
from ._usage import CompletionUsage

__all__ = ["Completion", "CompletionChoice", "CompletionLogprobs"]


class CompletionLogprobs(BaseModel):
    """Per-token log probabilities (openai-python calls this ``completion_choice.Logprobs``)."""

    text_offset: list[int] | None = None
    token_logprobs: list[float | None] | None = None
    tokens: list[str] | None = None
    top_logprobs: list[dict[str, float] | None] | None = None


class CompletionChoice(BaseModel):
    index: int
    text: str
    finish_reason: str | None = None
    logprobs: CompletionLogprobs | None = None


class Completion(BaseModel):
    id: str
    choices: list[CompletionChoice]
    created: int
    model: str
    object: str = "text_completion"
    system_fingerprint: str | None = None
    usage: CompletionUsage | None = None
