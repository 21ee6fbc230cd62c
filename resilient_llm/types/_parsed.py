"""What ``parse()`` returns: the response types with the structured answer attached.

``ParsedChatCompletion[T]`` is a :class:`ChatCompletion` whose ``choices[i].message.parsed`` holds the
answer validated as ``T``; ``ParsedResponse[T]`` is a :class:`Response` whose ``output_parsed`` does.
The type parameter is for type checkers: the library builds the unparametrized classes, so parsing
creates no new classes at run time.
"""

from __future__ import annotations

from typing import Annotated, Generic, TypeVar

from pydantic import Tag

from ._chat import ChatCompletion, ChatCompletionMessage, Choice
from ._responses import (
    Response,
    ResponseContentOther,
    ResponseFunctionToolCall,
    ResponseOutputItemOther,
    ResponseOutputMessage,
    ResponseOutputRefusal,
    ResponseOutputText,
    ResponseReasoningItem,
    tag_by_type,
)

__all__ = [
    "ParsedChatCompletion",
    "ParsedChatCompletionMessage",
    "ParsedChoice",
    "ParsedResponse",
    "ParsedResponseOutputMessage",
    "ParsedResponseOutputText",
]

ContentT = TypeVar("ContentT")


class ParsedChatCompletionMessage(ChatCompletionMessage, Generic[ContentT]):
    parsed: ContentT | None = None
    """The answer validated as the ``response_format`` model; ``None`` on a refusal or without one."""


class ParsedChoice(Choice, Generic[ContentT]):
    message: ParsedChatCompletionMessage[ContentT]


class ParsedChatCompletion(ChatCompletion, Generic[ContentT]):
    choices: list[ParsedChoice[ContentT]]  # type: ignore[assignment]


class ParsedResponseOutputText(ResponseOutputText, Generic[ContentT]):
    parsed: ContentT | None = None


class ParsedResponseOutputMessage(ResponseOutputMessage, Generic[ContentT]):
    content: list[  # type: ignore[assignment]
        Annotated[
            (
                Annotated[ParsedResponseOutputText[ContentT], Tag("output_text")]
                | Annotated[ResponseOutputRefusal, Tag("refusal")]
                | Annotated[ResponseContentOther, Tag("other")]
            ),
            tag_by_type(frozenset({"output_text", "refusal"})),
        ]
    ]


class ParsedResponse(Response, Generic[ContentT]):
    output: list[  # type: ignore[assignment]
        Annotated[
            (
                Annotated[ParsedResponseOutputMessage[ContentT], Tag("message")]
                | Annotated[ResponseFunctionToolCall, Tag("function_call")]
                | Annotated[ResponseReasoningItem, Tag("reasoning")]
                | Annotated[ResponseOutputItemOther, Tag("other")]
            ),
            tag_by_type(frozenset({"message", "function_call", "reasoning"})),
        ]
    ]

    @property
    def output_parsed(self) -> ContentT | None:
        """The first parsed ``output_text`` of the output's messages, or ``None``."""
        for item in self.output:
            if isinstance(item, ParsedResponseOutputMessage):
                for part in item.content:
                    if isinstance(part, ParsedResponseOutputText) and part.parsed is not None:
                        return part.parsed
        return None
