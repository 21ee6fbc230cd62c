"""Structured outputs: strict schemas going out, parsed objects coming back."""

from __future__ import annotations

import copy
import enum
import json
import pathlib
from collections.abc import Iterator
from typing import Any, Literal, Optional

import pydantic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from resilient_llm._exceptions import LengthFinishReasonError
from resilient_llm._parsing import (
    parse_chat_completion,
    parse_response,
    text_format_to_param,
    to_strict_json_schema,
    type_to_response_format,
)
from resilient_llm.types import (
    ChatCompletion,
    ParsedChatCompletion,
    ParsedChatCompletionMessage,
    ParsedChoice,
    ParsedResponse,
    ParsedResponseOutputMessage,
    ParsedResponseOutputText,
    Response,
    ResponseFunctionToolCall,
    ResponseOutputRefusal,
    ResponseReasoningItem,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


# --- models used as response formats -------------------------------------------------------------


class Point(BaseModel):
    x: int
    label: str | None = None


class Color(str, enum.Enum):
    RED = "red"
    GREEN = "green"


class Step(BaseModel):
    explanation: str
    output: str


class Solution(BaseModel):
    """A worked answer."""

    steps: list[Step]
    final_answer: str
    color: Color = Field(description="The color the answer is about.")
    best_step: Step | None = Field(default=None, description="The step that mattered most.")
    scores: dict[str, int] = Field(default_factory=dict)
    mode: Literal["fast", "slow"] = "fast"


class Tree(BaseModel):
    value: int
    children: list[Tree] = Field(default_factory=list)


class Answer(BaseModel):
    answer: int
    confidence: float


class ArcReply(BaseModel):
    instructions: str
    grid: list[list[int]]


def walk(node: Any) -> Iterator[dict[str, Any]]:
    if isinstance(node, dict):
        yield node
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def assert_strict(schema: dict[str, Any]) -> None:
    for node in walk(schema):
        if node.get("type") == "object":
            assert "additionalProperties" in node, node
            if "properties" in node:
                assert node["additionalProperties"] is False, node
                assert node["required"] == list(node["properties"]), node
        if "$ref" in node:
            assert len(node) == 1, node
        assert not ("default" in node and node["default"] is None), node
        assert len(node.get("allOf", [1, 2])) != 1, node


# --- the strict schema ----------------------------------------------------------------------------


def test_simple_model_schema() -> None:
    assert to_strict_json_schema(Point) == {
        "type": "object",
        "title": "Point",
        "properties": {
            "x": {"title": "X", "type": "integer"},
            "label": {"anyOf": [{"type": "string"}, {"type": "null"}], "title": "Label"},
        },
        "required": ["x", "label"],
        "additionalProperties": False,
    }


@pytest.mark.parametrize("model", [Point, Step, Solution, Tree, Answer, ArcReply])
def test_schemas_are_strict(model: type[BaseModel]) -> None:
    assert_strict(to_strict_json_schema(model))


def test_ref_with_siblings_is_inlined_and_defs_are_strict() -> None:
    schema = to_strict_json_schema(Solution)
    color = schema["properties"]["color"]
    assert "$ref" not in color
    assert color["enum"] == ["red", "green"]
    assert color["description"] == "The color the answer is about."
    best = schema["properties"]["best_step"]
    assert best["description"] == "The step that mattered most."
    assert "default" not in best
    assert schema["$defs"]["Step"]["additionalProperties"] is False
    assert schema["$defs"]["Step"]["required"] == ["explanation", "output"]
    # dict values keep their own additionalProperties schema.
    assert schema["properties"]["scores"]["additionalProperties"] == {"type": "integer"}
    assert schema["required"] == ["steps", "final_answer", "color", "best_step", "scores", "mode"]


def test_recursive_model_keeps_its_ref() -> None:
    schema = to_strict_json_schema(Tree)
    assert schema["properties"]["children"]["items"] == {"$ref": "#/$defs/Tree"}
    assert schema["$defs"]["Tree"]["additionalProperties"] is False


def test_the_models_own_schema_is_not_changed() -> None:
    before = copy.deepcopy(Solution.model_json_schema())
    first = to_strict_json_schema(Solution)
    assert Solution.model_json_schema() == before
    assert to_strict_json_schema(Solution) == first


def test_discriminated_union_variants_are_made_strict() -> None:
    class Cat(BaseModel):
        kind: Literal["cat"]
        lives: int

    class Dog(BaseModel):
        kind: Literal["dog"]
        good: bool

    class Pet(BaseModel):
        pet: Cat | Dog = Field(discriminator="kind")

    schema = to_strict_json_schema(Pet)
    assert_strict(schema)
    for name in ("Cat", "Dog"):
        assert schema["$defs"][name]["additionalProperties"] is False


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"properties": {"a": {"$ref": "http://example.com/x", "title": "A"}}}, "only local"),
        ({"properties": {"a": {"$ref": "#/$defs/Missing", "title": "A"}}}, "does not resolve"),
        (
            {"properties": {"a": {"$ref": "#/$defs/Bad/x", "title": "A"}}, "$defs": {"Bad": {"x": [3]}}},
            "not a schema object",
        ),
    ],
)
def test_bad_refs_are_reported(schema: dict[str, Any], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Point, "model_json_schema", classmethod(lambda cls: schema))
    with pytest.raises((ValueError, TypeError), match=message):
        to_strict_json_schema(Point)


_FIELD_TYPES: list[Any] = [
    int,
    str,
    float,
    bool,
    list[int],
    dict[str, str],
    Optional[str],  # noqa: UP045 - the spelling users write
    Step,
    Optional[Step],  # noqa: UP045
    list[Step],
    Color,
    Literal["a", "b"],
    Tree,
]


@settings(max_examples=60, deadline=None)
@given(
    fields=st.dictionaries(
        st.from_regex(r"[a-z][a-z_]{0,10}", fullmatch=True).filter(lambda n: not n.startswith("model_")),
        st.tuples(st.sampled_from(_FIELD_TYPES), st.booleans(), st.none() | st.text(max_size=20)),
        min_size=1,
        max_size=6,
    )
)
def test_any_model_gets_a_strict_schema(fields: dict[str, tuple[Any, bool, str | None]]) -> None:
    definitions: dict[str, Any] = {}
    for name, (annotation, optional, description) in fields.items():
        default = None if optional else ...
        definitions[name] = (
            annotation | None if optional else annotation,
            Field(default, description=description),
        )
    model = pydantic.create_model("Generated", **definitions)
    schema = to_strict_json_schema(model)
    assert_strict(schema)
    assert schema["required"] == list(fields)
    for name, (_, _, description) in fields.items():
        if description is not None:
            assert schema["properties"][name]["description"] == description


def test_instances_validate_against_their_strict_schema() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    instances: list[BaseModel] = [
        Point(x=1),
        Solution(steps=[Step(explanation="e", output="o")], final_answer="f", color=Color.RED),
        Tree(value=1, children=[Tree(value=2)]),
    ]
    for instance in instances:
        schema = to_strict_json_schema(type(instance))
        jsonschema.validate(instance.model_dump(mode="json"), schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**instance.model_dump(mode="json"), "surplus": 1}, schema)


# --- response_format and text.format -------------------------------------------------------------


def test_type_to_response_format() -> None:
    assert type_to_response_format(Answer) == {
        "type": "json_schema",
        "json_schema": {"name": "Answer", "schema": to_strict_json_schema(Answer), "strict": True},
    }


@pytest.mark.parametrize(
    "given_format",
    [
        {"type": "json_object"},
        {"type": "text"},
        {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}, "strict": False}},
    ],
)
def test_dict_response_formats_pass_through(given_format: dict[str, Any]) -> None:
    assert type_to_response_format(given_format) is given_format


@pytest.mark.parametrize("bad", [int, "json_object", Answer(answer=1, confidence=1.0), None, 3])
def test_other_response_formats_are_refused(bad: Any) -> None:
    with pytest.raises(TypeError, match="response_format"):
        type_to_response_format(bad)
    with pytest.raises(TypeError):
        to_strict_json_schema(bad)
    with pytest.raises(TypeError, match="text_format"):
        text_format_to_param(bad)


def test_text_format_to_param() -> None:
    assert text_format_to_param(ArcReply) == {
        "type": "json_schema",
        "name": "ArcReply",
        "schema": to_strict_json_schema(ArcReply),
        "strict": True,
    }


# --- parse_chat_completion ------------------------------------------------------------------------


def completion_with(content: str | None, finish: str = "stop", **message: Any) -> ChatCompletion:
    body = load("types_chat_reasoning.json")
    body["choices"][0]["message"].update(content=content, **message)
    body["choices"][0]["finish_reason"] = finish
    return ChatCompletion.model_validate(body)


def test_parse_sets_parsed_and_keeps_everything_else() -> None:
    completion = ChatCompletion.model_validate(load("types_chat_reasoning.json"))
    parsed = parse_chat_completion(completion, Answer)
    assert isinstance(parsed, ParsedChatCompletion)
    assert isinstance(parsed, ChatCompletion)
    choice = parsed.choices[0]
    assert isinstance(choice, ParsedChoice)
    assert isinstance(choice.message, ParsedChatCompletionMessage)
    assert choice.message.parsed == Answer(answer=4, confidence=0.98)
    assert choice.message.content == completion.choices[0].message.content
    assert choice.message.reasoning == "The user wants 2+2. That is 4. Answer in JSON."
    assert choice.stop_reason is None  # type: ignore[attr-defined]
    assert parsed.usage == completion.usage
    assert parsed.prompt_token_ids is None  # type: ignore[attr-defined]
    dumped = parsed.to_dict()
    assert dumped["choices"][0]["message"]["parsed"] == {"answer": 4, "confidence": 0.98}  # type: ignore[index]
    without_parsed = copy.deepcopy(dumped)
    del without_parsed["choices"][0]["message"]["parsed"]  # type: ignore[index]
    assert without_parsed == completion.to_dict()


def test_parse_every_choice() -> None:
    body = load("types_chat_n2.json")
    body["choices"][0]["message"]["content"] = '{"x": 1}'
    body["choices"][1]["message"]["content"] = '{"x": 2, "label": "two"}'
    parsed = parse_chat_completion(ChatCompletion.model_validate(body), Point)
    assert [c.message.parsed for c in parsed.choices] == [Point(x=1), Point(x=2, label="two")]


@pytest.mark.parametrize(
    ("completion", "response_format"),
    [
        (completion_with('{"answer": 1, "confidence": 1}'), {"type": "json_object"}),
        (completion_with('{"answer": 1, "confidence": 1}'), None),
        (completion_with(None, refusal="I can't help with that."), Answer),
        (completion_with('{"answer": 1, "confidence": 1}', refusal="no"), Answer),
        (completion_with('{"answer": 1, "confidence": 1}', finish="content_filter"), Answer),
        (completion_with(None, finish="content_filter"), Answer),
        (completion_with(""), Answer),
        (completion_with(None, finish="tool_calls"), Answer),
    ],
    ids=[
        "dict-format",
        "no-format",
        "refusal",
        "refusal-with-content",
        "filtered",
        "filtered-empty",
        "empty",
        "tools",
    ],
)
def test_parse_leaves_parsed_none(completion: ChatCompletion, response_format: Any) -> None:
    parsed = parse_chat_completion(completion, response_format)
    assert parsed.choices[0].message.parsed is None
    assert parsed.choices[0].message.content == completion.choices[0].message.content


def test_parse_refusal_fixture() -> None:
    parsed = parse_chat_completion(ChatCompletion.model_validate(load("types_chat_refusal.json")), Answer)
    assert parsed.choices[0].message.parsed is None
    assert parsed.choices[0].message.refusal == "I can't help with that."


@pytest.mark.parametrize("response_format", [Answer, {"type": "json_object"}, None])
def test_parse_raises_on_length(response_format: Any) -> None:
    completion = ChatCompletion.model_validate(load("types_vllm032_chat.json"))
    with pytest.raises(LengthFinishReasonError) as info:
        parse_chat_completion(completion, response_format)
    assert info.value.completion is completion
    assert "length limit" in str(info.value)


def test_parse_raises_when_the_content_does_not_fit() -> None:
    with pytest.raises(pydantic.ValidationError):
        parse_chat_completion(completion_with('{"answer": "four"}'), Answer)
    with pytest.raises(pydantic.ValidationError):
        parse_chat_completion(completion_with("not json"), Answer)


def test_parse_refuses_a_non_model_format() -> None:
    with pytest.raises(TypeError, match="response_format"):
        parse_chat_completion(completion_with("{}"), int)  # type: ignore[type-var]


def test_parse_keeps_tool_calls() -> None:
    completion = ChatCompletion.model_validate(load("types_chat_tool_calls.json"))
    parsed = parse_chat_completion(completion, Answer)
    assert parsed.choices[0].message.tool_calls == completion.choices[0].message.tool_calls
    assert parsed.choices[0].message.parsed is None


@settings(max_examples=100, deadline=None)
@given(
    answer=st.integers(-(10**12), 10**12),
    confidence=st.floats(allow_nan=False, allow_infinity=False),
)
def test_parse_round_trips_any_answer(answer: int, confidence: float) -> None:
    expected = Answer(answer=answer, confidence=confidence)
    parsed = parse_chat_completion(completion_with(expected.model_dump_json()), Answer)
    assert parsed.choices[0].message.parsed == expected


# --- parse_response -------------------------------------------------------------------------------


def test_parse_response_sets_output_parsed() -> None:
    response = Response.model_validate(load("types_response.json"))
    parsed = parse_response(response, Answer)
    assert isinstance(parsed, ParsedResponse)
    assert parsed.output_parsed == Answer(answer=4, confidence=0.9)
    assert [type(item) for item in parsed.output] == [
        ResponseReasoningItem,
        ParsedResponseOutputMessage,
        ResponseFunctionToolCall,
    ]
    message = parsed.output[1]
    assert isinstance(message, ParsedResponseOutputMessage)
    assert isinstance(message.content[0], ParsedResponseOutputText)
    assert parsed.output_text == response.output_text
    assert parsed.usage == response.usage
    assert parsed.top_logprobs is None
    assert parsed.output[2] is response.output[2]


def test_parse_response_without_a_format() -> None:
    parsed = parse_response(Response.model_validate(load("types_response.json")), None)
    assert parsed.output_parsed is None
    assert parsed.output_text == '{"answer": 4, "confidence": 0.9}'


def response_with(*messages: dict[str, Any]) -> Response:
    return Response.model_validate({"id": "r", "created_at": 0, "model": "m", "output": list(messages)})


def message(text: str, phase: str | None = None, refusal: str | None = None) -> dict[str, Any]:
    content: list[dict[str, Any]] = [{"type": "output_text", "text": text, "annotations": []}]
    if refusal is not None:
        content = [{"type": "refusal", "refusal": refusal}]
    return {
        "type": "message",
        "id": "m",
        "role": "assistant",
        "status": "completed",
        "phase": phase,
        "content": content,
    }


@pytest.mark.parametrize(
    ("messages", "expected"),
    [
        ([message('{"x": 1}')], Point(x=1)),
        ([message('{"x": 1}', phase="final_answer")], Point(x=1)),
        (
            [message("thinking aloud", phase="commentary"), message('{"x": 2}', phase="final_answer")],
            Point(x=2),
        ),
        ([message("not json", phase="commentary")], None),
        ([message("", refusal="no")], None),
        ([], None),
    ],
)
def test_parse_response_phases(messages: list[dict[str, Any]], expected: Point | None) -> None:
    parsed = parse_response(response_with(*messages), Point)
    assert parsed.output_parsed == expected


def test_parse_response_keeps_refusals() -> None:
    parsed = parse_response(response_with(message("", refusal="I can't.")), Point)
    item = parsed.output[0]
    assert isinstance(item, ParsedResponseOutputMessage)
    assert isinstance(item.content[0], ResponseOutputRefusal)


def test_parse_response_raises_when_the_answer_does_not_fit() -> None:
    with pytest.raises(pydantic.ValidationError):
        parse_response(response_with(message('{"y": 1}')), Point)
    with pytest.raises(TypeError, match="text_format"):
        parse_response(response_with(), dict)  # type: ignore[type-var]
