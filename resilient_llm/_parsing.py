"""Structured outputs: a pydantic model as a strict JSON schema going out, a validated object coming back.

``chat.completions.parse(response_format=Model)`` sends :func:`type_to_response_format` and returns
:func:`parse_chat_completion` of the answer; ``responses.parse(text_format=Model)`` does the same with
:func:`text_format_to_param` and :func:`parse_response`. The request side matches what openai-python
sends, so a server sees the same request after the import swap (vLLM turns the schema into guided
decoding).

A strict schema (what ``"strict": true`` asks of a server) closes every object
(``additionalProperties: false``), requires every property (optional ones stay nullable in their
type), inlines a ``$ref`` that has sibling keys, and drops ``"default": null``.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, TypeVar, overload

import pydantic

from ._exceptions import LengthFinishReasonError
from .types import (
    ChatCompletion,
    ParsedChatCompletion,
    ParsedChatCompletionMessage,
    ParsedChoice,
    ParsedResponse,
    ParsedResponseOutputMessage,
    ParsedResponseOutputText,
    Response,
    ResponseOutputMessage,
    ResponseOutputText,
)

__all__ = [
    "parse_chat_completion",
    "parse_response",
    "text_format_to_param",
    "to_strict_json_schema",
    "type_to_response_format",
]

ModelT = TypeVar("ModelT", bound=pydantic.BaseModel)
_PydanticT = TypeVar("_PydanticT", bound=pydantic.BaseModel)


def _is_model_type(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, pydantic.BaseModel)


def to_strict_json_schema(model: type[pydantic.BaseModel]) -> dict[str, Any]:
    """``model``'s JSON schema, made strict (see the module docstring)."""
    if not _is_model_type(model):
        raise TypeError(f"expected a pydantic BaseModel subclass, got {model!r}")
    schema = copy.deepcopy(model.model_json_schema())
    return _make_strict(schema, root=schema)


def _make_strict(node: object, *, root: dict[str, Any]) -> dict[str, Any]:
    """Make one schema node strict, in place, and return it. ``root`` resolves ``$ref``."""
    if not isinstance(node, dict):
        raise TypeError(f"expected a JSON schema object, got {node!r}")
    for defs_key in ("$defs", "definitions"):
        defs = node.get(defs_key)
        if isinstance(defs, dict):
            for sub in defs.values():
                _make_strict(sub, root=root)
    if node.get("type") == "object":
        node.setdefault("additionalProperties", False)
    properties = node.get("properties")
    if isinstance(properties, dict):
        node["required"] = list(properties)
        for sub in properties.values():
            _make_strict(sub, root=root)
    items = node.get("items")
    if isinstance(items, dict):
        _make_strict(items, root=root)
    for list_key in ("anyOf", "oneOf", "prefixItems"):
        variants = node.get(list_key)
        if isinstance(variants, list):
            for sub in variants:
                _make_strict(sub, root=root)
    all_of = node.get("allOf")
    if isinstance(all_of, list):
        if len(all_of) == 1:
            del node["allOf"]
            node.update(_make_strict(all_of[0], root=root))
        else:
            for sub in all_of:
                _make_strict(sub, root=root)
    if "default" in node and node["default"] is None:
        del node["default"]
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:
        # A $ref cannot carry siblings (a description, say): inline the target, siblings winning.
        target = _resolve_ref(root, ref)
        merged = {**target, **node}
        del merged["$ref"]
        node.clear()
        node.update(merged)
        return _make_strict(node, root=root)
    return node


def _resolve_ref(root: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise ValueError(f"unsupported $ref {ref!r}: only local references ('#/...') are resolved")
    target: Any = root
    for key in ref[2:].split("/"):
        if not isinstance(target, dict) or key not in target:
            raise ValueError(f"$ref {ref!r} does not resolve within the schema")
        target = target[key]
    if not isinstance(target, dict):
        raise ValueError(f"$ref {ref!r} resolves to {target!r}, not a schema object")
    return target


def type_to_response_format(response_format: type[pydantic.BaseModel] | Mapping[str, Any]) -> dict[str, Any]:
    """The chat ``response_format`` for a model class; a dict (``{"type": "json_object"}``...) as given.

    For a model this is ``{"type": "json_schema", "json_schema": {"name": ..., "schema": ...,
    "strict": True}}``, as openai-python sends for ``chat.completions.parse``.
    """
    if isinstance(response_format, Mapping):
        return response_format if isinstance(response_format, dict) else dict(response_format)
    if not _is_model_type(response_format):
        raise TypeError(
            f"response_format must be a pydantic BaseModel subclass or a dict, got {response_format!r}"
        )
    return {
        "type": "json_schema",
        "json_schema": {
            "name": response_format.__name__,
            "schema": to_strict_json_schema(response_format),
            "strict": True,
        },
    }


def text_format_to_param(text_format: type[pydantic.BaseModel]) -> dict[str, Any]:
    """The Responses API ``text={"format": ...}`` value for a model class (strict JSON schema)."""
    if not _is_model_type(text_format):
        raise TypeError(f"text_format must be a pydantic BaseModel subclass, got {text_format!r}")
    return {
        "type": "json_schema",
        "name": text_format.__name__,
        "schema": to_strict_json_schema(text_format),
        "strict": True,
    }


def _rebuild(cls: type[_PydanticT], source: pydantic.BaseModel, **changes: Any) -> _PydanticT:
    """``source``'s fields and extras as a ``cls`` (a subclass), with ``changes``; nothing is revalidated."""
    values = {**source.__dict__, **(source.__pydantic_extra__ or {}), **changes}
    return cls.model_construct(_fields_set=source.model_fields_set | changes.keys(), **values)


@overload
def parse_chat_completion(
    completion: ChatCompletion, response_format: type[ModelT]
) -> ParsedChatCompletion[ModelT]: ...
@overload
def parse_chat_completion(
    completion: ChatCompletion, response_format: Mapping[str, Any] | None
) -> ParsedChatCompletion[None]: ...
def parse_chat_completion(
    completion: ChatCompletion, response_format: type[pydantic.BaseModel] | Mapping[str, Any] | None
) -> ParsedChatCompletion[Any]:
    """``completion`` with ``choices[i].message.parsed`` set: the content validated as ``response_format``.

    Raises :class:`~resilient_llm.LengthFinishReasonError` if any answer stopped at ``max_tokens``
    (its JSON would be cut off), and pydantic's ``ValidationError`` if the content does not fit the
    model. ``parsed`` stays ``None`` for a refusal, a ``content_filter`` stop, an empty content, or
    when ``response_format`` is a dict or ``None``.
    """
    if not (
        response_format is None or isinstance(response_format, Mapping) or _is_model_type(response_format)
    ):
        raise TypeError(
            f"response_format must be a pydantic BaseModel subclass or a dict, got {response_format!r}"
        )
    for choice in completion.choices:
        if choice.finish_reason == "length":
            raise LengthFinishReasonError(completion=completion)
    model = response_format if isinstance(response_format, type) else None
    choices: list[ParsedChoice[Any]] = []
    for choice in completion.choices:
        message = choice.message
        parsed: Any = None
        content = message.content
        if model is not None and content and not message.refusal and choice.finish_reason != "content_filter":
            parsed = model.model_validate_json(content)
        parsed_message = _rebuild(ParsedChatCompletionMessage, message, parsed=parsed)
        choices.append(_rebuild(ParsedChoice, choice, message=parsed_message))
    return _rebuild(ParsedChatCompletion, completion, choices=choices)


@overload
def parse_response(response: Response, text_format: type[ModelT]) -> ParsedResponse[ModelT]: ...
@overload
def parse_response(response: Response, text_format: None) -> ParsedResponse[None]: ...
def parse_response(response: Response, text_format: type[pydantic.BaseModel] | None) -> ParsedResponse[Any]:
    """``response`` with its messages' ``output_text`` parts parsed as ``text_format``; see ``output_parsed``.

    Only final answers are parsed: a message whose ``phase`` is set to anything but
    ``"final_answer"`` (commentary) keeps ``parsed=None``. Raises pydantic's ``ValidationError`` if a
    final answer does not fit the model.
    """
    if text_format is not None and not _is_model_type(text_format):
        raise TypeError(f"text_format must be a pydantic BaseModel subclass, got {text_format!r}")
    output: list[Any] = []
    for item in response.output:
        if not isinstance(item, ResponseOutputMessage):
            output.append(item)
            continue
        final = item.phase is None or item.phase == "final_answer"
        content: list[Any] = []
        for part in item.content:
            if isinstance(part, ResponseOutputText):
                parsed = text_format.model_validate_json(part.text) if text_format and final else None
                content.append(_rebuild(ParsedResponseOutputText, part, parsed=parsed))
            else:
                content.append(part)
        output.append(_rebuild(ParsedResponseOutputMessage, item, content=content))
    return _rebuild(ParsedResponse, response, output=output)
