"""What the simulated model decides to say: free words, JSON for a format, or a call to one of its tools.

The decision is a pure function of the request, so every run of a scenario sees the same answer:

- tools offered and ``tool_choice`` not ``"none"``: a named ``tool_choice`` is always called. Under
  ``"auto"`` (or none given) the first tool is called until a tool result follows the last user
  turn, then the model answers in content. Under ``"required"`` it calls the first tool, then, once
  results came back, the first tool not yet called since the last user turn (an output tool that
  structured-output libraries put after the function tools), else the last one.
- content follows the requested format: a ``json_schema`` format gets an instance of its schema; a
  ``json_object`` format an instance of a schema pasted into the prompt (as instructor's JSON mode
  and prompted-output modes do), else the ARC-shaped JSON object; otherwise free words.

Tool arguments are an instance of the tool's parameter schema (see :mod:`._schema`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from resilient_llm.testing._schema import instance_of, schema_in

__all__ = ["Reply", "Tool", "chat_reply", "message_text", "responses_reply"]

ReplyKind = Literal["words", "arc_json", "text", "tool_call"]


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Reply:
    """What follows the reasoning: ``words`` or ``arc_json`` padded to the answer's length, or a fixed
    ``text`` (JSON for a format), or a ``tool_call`` of ``tool`` whose arguments are ``text``."""

    kind: ReplyKind
    text: str = ""
    tool: str | None = None


WORDS = Reply("words")
_ARC_JSON = Reply("arc_json")


class ReplyError(ValueError):
    """A tools or format field the model cannot follow; ``param`` names the field."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


def message_text(content: object) -> str:
    """The text of a message's ``content``: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _content(format_: object, prompt_texts: Iterable[str], param: str) -> Reply:
    if not isinstance(format_, Mapping):
        return WORDS
    kind = format_.get("type")
    if kind == "json_schema":
        spec = format_.get("json_schema", format_)  # chat nests it; the Responses API does not
        schema = spec.get("schema") if isinstance(spec, Mapping) else None
        if not isinstance(schema, Mapping):
            raise ReplyError(param, f"{param} of type json_schema needs a 'schema' object")
        return Reply("text", _dumps(instance_of(schema)))
    if kind == "json_object":
        schema = schema_in(prompt_texts)
        return Reply("text", _dumps(instance_of(schema))) if schema is not None else _ARC_JSON
    return WORDS


def _decide(
    tools: Sequence[Tool], choice: object, called: Sequence[str] | None, content: Reply, param: str
) -> Reply:
    """``called``: names of tools whose results followed the last user turn (``None``: no results)."""
    if not tools or choice == "none":
        return content
    by_name = {tool.name: tool for tool in tools}
    if isinstance(choice, str) or choice is None:
        if choice not in (None, "auto", "required"):
            raise ReplyError(
                param, f"tool_choice={choice!r} must be 'none', 'auto', 'required' or a function"
            )
        if called is None:
            tool = tools[0]
        elif choice == "required":
            tool = next((t for t in tools if t.name not in called), tools[-1])
        else:
            return content
    else:
        name = _chosen_name(choice)
        if name is None:  # e.g. {"type": "allowed_tools", ...}: as "auto"
            return _decide(tools, "auto", called, content, param)
        if name not in by_name:
            raise ReplyError(param, f"tool_choice names {name!r}, which is not among the tools")
        tool = by_name[name]
    return Reply("tool_call", _dumps(instance_of(tool.parameters)), tool.name)


def _chosen_name(choice: object) -> str | None:
    if not isinstance(choice, Mapping) or choice.get("type") != "function":
        return None
    function = choice.get("function")
    name = function.get("name") if isinstance(function, Mapping) else choice.get("name")
    return name if isinstance(name, str) else None


def _tool(name: object, parameters: object, param: str) -> Tool:
    if not isinstance(name, str) or not name:
        raise ReplyError(param, "every function tool needs a name")
    return Tool(name, parameters if isinstance(parameters, Mapping) else {})


# -- /v1/chat/completions ---------------------------------------------------------------------
def chat_reply(body: Mapping[str, Any], messages: Sequence[Mapping[str, Any]]) -> Reply:
    """The reply to a chat completion request (``messages`` already checked to be a list of dicts)."""
    raw_tools, format_ = body.get("tools"), body.get("response_format")
    if raw_tools is None and format_ is None:
        return WORDS  # the common case, kept cheap
    content = _content(format_, (message_text(m.get("content")) for m in messages), "response_format")
    if not raw_tools:
        return content
    if not isinstance(raw_tools, list):
        raise ReplyError("tools", "tools must be a list")
    tools = []
    for raw in raw_tools:
        function = raw.get("function") if isinstance(raw, Mapping) else None
        if isinstance(function, Mapping):
            tools.append(_tool(function.get("name"), function.get("parameters"), "tools"))
    return _decide(tools, body.get("tool_choice"), _chat_called(messages), content, "tool_choice")


def _chat_called(messages: Sequence[Mapping[str, Any]]) -> list[str] | None:
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    later = messages[last_user + 1 :]
    if not any(m.get("role") == "tool" for m in later):
        return None
    names = []
    for message in later:
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            if isinstance(function, Mapping) and isinstance(function.get("name"), str):
                names.append(function["name"])
    return names


# -- /v1/responses ----------------------------------------------------------------------------
def responses_reply(body: Mapping[str, Any], items: Sequence[Mapping[str, Any]]) -> Reply:
    """The reply to a Responses API request; ``items`` is its ``input`` as a list of items."""
    text = body.get("text")
    format_ = text.get("format") if isinstance(text, Mapping) else None
    prompt = [message_text(body.get("instructions")), *(message_text(i.get("content")) for i in items)]
    content = _content(format_, prompt, "text.format")
    raw_tools = body.get("tools")
    raw_tools = [] if raw_tools is None else raw_tools
    if not isinstance(raw_tools, list):
        raise ReplyError("tools", "tools must be a list")
    tools = [
        _tool(raw.get("name"), raw.get("parameters"), "tools")
        for raw in raw_tools
        if isinstance(raw, Mapping) and raw.get("type") == "function"
    ]
    return _decide(tools, body.get("tool_choice"), _responses_called(items), content, "tool_choice")


def _responses_called(items: Sequence[Mapping[str, Any]]) -> list[str] | None:
    last_user = max((i for i, item in enumerate(items) if item.get("role") == "user"), default=-1)
    later = items[last_user + 1 :]
    if not any(item.get("type") == "function_call_output" for item in later):
        return None
    return [str(i.get("name")) for i in later if i.get("type") == "function_call"]
