"""``responses.create`` (the Responses API): :class:`Response`, its output items and usage.

Output items and message content parts are tagged by ``type``. The kinds users read have their own
classes (``message``, ``function_call``, ``reasoning``; ``output_text``, ``refusal``); any other
kind validates as :class:`ResponseOutputItemOther` / :class:`ResponseContentOther` with its fields
kept, so a server that adds a new item type does not break the call.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag

from ._base import BaseModel

__all__ = [
    "InputTokensDetails",
    "OutputTokensDetails",
    "Response",
    "ResponseContent",
    "ResponseContentOther",
    "ResponseError",
    "ResponseFunctionToolCall",
    "ResponseIncompleteDetails",
    "ResponseOutputItem",
    "ResponseOutputItemOther",
    "ResponseOutputMessage",
    "ResponseOutputRefusal",
    "ResponseOutputText",
    "ResponseReasoningContent",
    "ResponseReasoningItem",
    "ResponseReasoningSummary",
    "ResponseUsage",
    "tag_by_type",
]


def tag_by_type(known: frozenset[str]) -> Any:
    """A pydantic discriminator: the item's ``type`` when it is one of ``known``, else ``"other"``."""

    def tag(value: Any) -> str:
        kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
        return kind if kind in known else "other"

    return Discriminator(tag)


class ResponseOutputText(BaseModel):
    text: str
    annotations: list[Any] = Field(default_factory=list)
    logprobs: list[Any] | None = None
    type: Literal["output_text"] = "output_text"


class ResponseOutputRefusal(BaseModel):
    refusal: str
    type: Literal["refusal"] = "refusal"


class ResponseContentOther(BaseModel):
    """A content part of a kind this library has no class for; its fields are kept as extras."""

    type: str


ResponseContent = Annotated[
    (
        Annotated[ResponseOutputText, Tag("output_text")]
        | Annotated[ResponseOutputRefusal, Tag("refusal")]
        | Annotated[ResponseContentOther, Tag("other")]
    ),
    tag_by_type(frozenset({"output_text", "refusal"})),
]


class ResponseOutputMessage(BaseModel):
    id: str
    content: list[ResponseContent]
    role: str = "assistant"
    status: str | None = None
    phase: str | None = None
    type: Literal["message"] = "message"


class ResponseFunctionToolCall(BaseModel):
    arguments: str
    call_id: str
    name: str
    id: str | None = None
    async_: bool | None = Field(default=None, alias="async")
    caller: Any = None
    namespace: str | None = None
    status: str | None = None
    type: Literal["function_call"] = "function_call"


class ResponseReasoningSummary(BaseModel):
    text: str
    type: str = "summary_text"


class ResponseReasoningContent(BaseModel):
    text: str
    type: str = "reasoning_text"


class ResponseReasoningItem(BaseModel):
    id: str
    summary: list[ResponseReasoningSummary] = Field(default_factory=list)
    content: list[ResponseReasoningContent] | None = None
    encrypted_content: str | None = None
    status: str | None = None
    type: Literal["reasoning"] = "reasoning"


class ResponseOutputItemOther(BaseModel):
    """An output item of a kind this library has no class for; its fields are kept as extras."""

    type: str


ResponseOutputItem = Annotated[
    (
        Annotated[ResponseOutputMessage, Tag("message")]
        | Annotated[ResponseFunctionToolCall, Tag("function_call")]
        | Annotated[ResponseReasoningItem, Tag("reasoning")]
        | Annotated[ResponseOutputItemOther, Tag("other")]
    ),
    tag_by_type(frozenset({"message", "function_call", "reasoning"})),
]


class InputTokensDetails(BaseModel):
    cached_tokens: int | None = None


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int | None = None


class ResponseUsage(BaseModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails | None = None
    output_tokens_details: OutputTokensDetails | None = None


class ResponseError(BaseModel):
    code: str
    message: str


class ResponseIncompleteDetails(BaseModel):
    """Why a response stopped early: ``reason`` is ``"max_output_tokens"``, ``"content_filter"``..."""

    reason: str | None = None


class Response(BaseModel):
    """A Responses API result. ``output_text`` joins the text of every message's ``output_text`` parts."""

    id: str
    created_at: float
    model: str
    output: list[ResponseOutputItem]
    object: str = "response"
    status: str | None = None
    error: ResponseError | None = None
    incomplete_details: ResponseIncompleteDetails | None = None
    instructions: Any = None
    metadata: dict[str, str] | None = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_logprobs: int | None = None
    tool_choice: Any = None
    tools: list[Any] | None = None
    max_output_tokens: int | None = None
    max_tool_calls: int | None = None
    previous_response_id: str | None = None
    reasoning: Any = None
    text: Any = None
    truncation: str | None = None
    service_tier: str | None = None
    background: bool | None = None
    completed_at: float | None = None
    conversation: Any = None
    prompt: Any = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    usage: ResponseUsage | None = None
    user: str | None = None
    # Less common fields openai-python declares, kept untyped.
    access_programs: Any = None
    image: Any = None
    input_transformations: Any = None
    moderation: Any = None
    prompt_cache_diagnostics: Any = None
    prompt_cache_options: Any = None
    tool_usage: Any = None

    @property
    def output_text(self) -> str:
        """All ``output_text`` parts of all ``message`` items, joined; ``""`` when there are none."""
        texts: list[str] = []
        for item in self.output:
            if isinstance(item, ResponseOutputMessage):
                texts.extend(part.text for part in item.content if isinstance(part, ResponseOutputText))
        return "".join(texts)
