"""Response types: validation of real and sparse server bodies, kept extras, reasoning names, dumps."""

from __future__ import annotations

import json
import pathlib
import statistics
import time
from typing import Any

import pydantic
import pytest
from hypothesis import given
from hypothesis import strategies as st

import resilient_llm.types as types_pkg
from resilient_llm.types import (
    BaseModel,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChoiceDelta,
    Completion,
    CreateEmbeddingResponse,
    Model,
    ParsedResponse,
    Response,
    ResponseContentOther,
    ResponseFunctionToolCall,
    ResponseOutputItemOther,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
)

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def sse_chunks(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: {")]


def all_models() -> list[type[pydantic.BaseModel]]:
    found = []
    for name in types_pkg.__all__:
        obj = getattr(types_pkg, name)
        if isinstance(obj, type) and issubclass(obj, pydantic.BaseModel):
            found.append(obj)
    return found


# --- the package surface ---------------------------------------------------------------------------


def test_all_is_sorted_and_complete() -> None:
    assert types_pkg.__all__ == sorted(types_pkg.__all__)
    for name in types_pkg.__all__:
        assert hasattr(types_pkg, name), name
    required = {
        "ChatCompletion",
        "ChatCompletionMessage",
        "Choice",
        "ChatCompletionChunk",
        "ChunkChoice",
        "ChoiceDelta",
        "ChatCompletionMessageToolCall",
        "CompletionUsage",
        "Completion",
        "CompletionChoice",
        "CreateEmbeddingResponse",
        "Embedding",
        "Model",
        "ParsedChatCompletion",
        "ParsedChatCompletionMessage",
        "ParsedChoice",
        "Response",
        "ParsedResponse",
    }
    assert required <= set(types_pkg.__all__)


@pytest.mark.parametrize("model", all_models(), ids=lambda m: m.__name__)
def test_every_model_keeps_unknown_fields(model: type[pydantic.BaseModel]) -> None:
    assert issubclass(model, BaseModel)
    assert model.model_config.get("extra") == "allow"


@pytest.mark.parametrize("model", all_models(), ids=lambda m: m.__name__)
def test_no_model_has_validators(model: type[pydantic.BaseModel]) -> None:
    # Construction is on the hot path: no Python-level validators anywhere.
    decorators = model.__pydantic_decorators__
    assert not decorators.validators
    assert not decorators.field_validators
    assert not decorators.model_validators
    assert not decorators.root_validators


# --- real vLLM 0.32 captures ----------------------------------------------------------------------


def test_real_vllm_nonstream_validates_with_extras_readable() -> None:
    completion = ChatCompletion.model_validate(load("types_vllm032_chat.json"))
    assert completion.id == "chatcmpl-b39056db9e154d2f"
    assert completion.object == "chat.completion"
    assert completion.model == "openai/gpt-oss-20b"
    assert completion.system_fingerprint == "vllm-0.32.0-ab3894f9"
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert choice.message.content.startswith('{\n  "matrix"')
    assert choice.message.reasoning is None
    assert choice.message.reasoning_content is None
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (40, 40)
    # vLLM's own fields stay readable as attributes.
    assert choice.stop_reason is None  # type: ignore[attr-defined]
    assert choice.token_ids is None  # type: ignore[attr-defined]
    assert completion.prompt_token_ids is None  # type: ignore[attr-defined]
    assert "kv_transfer_params" in completion.model_dump()


def test_real_vllm_stream_chunks_validate() -> None:
    chunks = [ChatCompletionChunk.model_validate(c) for c in sse_chunks("stream_vllm032_chat.sse")]
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Nisei: lamen. (Hine?)\n"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 45


# --- reasoning under either name ------------------------------------------------------------------

REASONING_CASES = [
    # (server keys, expected text)
    ({"reasoning": "think"}, "think"),
    ({"reasoning_content": "think"}, "think"),
    ({"reasoning": None, "reasoning_content": "old"}, "old"),
    ({"reasoning": "new", "reasoning_content": None}, "new"),
    ({"reasoning": "new", "reasoning_content": "old"}, "new"),
    ({"reasoning": None}, None),
    ({}, None),
    ({"reasoning": 3}, None),  # not text: not reasoning
]


@pytest.mark.parametrize(("keys", "expected"), REASONING_CASES)
def test_message_reasoning_reads_either_name(keys: dict[str, Any], expected: str | None) -> None:
    message = ChatCompletionMessage.model_validate({"role": "assistant", "content": "x", **keys})
    assert message.reasoning == expected
    assert message.reasoning_content == expected


@pytest.mark.parametrize(("keys", "expected"), REASONING_CASES)
def test_delta_reasoning_reads_either_name(keys: dict[str, Any], expected: str | None) -> None:
    delta = ChoiceDelta.model_validate(keys)
    assert delta.reasoning == expected
    assert delta.reasoning_content == expected


def test_reasoning_dump_keeps_the_servers_key() -> None:
    message = ChatCompletionMessage.model_validate({"role": "assistant", "reasoning_content": "r"})
    assert message.to_dict() == {"role": "assistant", "reasoning_content": "r"}
    assert "reasoning" not in message.model_dump()


@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("types_chat_reasoning.json", "The user wants 2+2. That is 4. Answer in JSON."),
        ("types_chat_reasoning_legacy.json", "Grid is 3x3; rotate clockwise."),
    ],
)
def test_reasoning_fixtures(fixture: str, expected: str) -> None:
    message = ChatCompletion.model_validate(load(fixture)).choices[0].message
    assert (message.reasoning, message.reasoning_content) == (expected, expected)


# --- sparse and strict ----------------------------------------------------------------------------


def test_sparse_chat_completion_validates_with_defaults() -> None:
    completion = ChatCompletion.model_validate(
        {"id": "c", "created": 0, "model": "m", "choices": [{"index": 0, "message": {"content": "hi"}}]}
    )
    choice = completion.choices[0]
    assert completion.object == "chat.completion"
    assert completion.usage is None
    assert completion.system_fingerprint is None
    assert choice.finish_reason is None
    assert choice.logprobs is None
    assert choice.message.role == "assistant"
    assert choice.message.tool_calls is None
    assert choice.message.refusal is None


@pytest.mark.parametrize(
    ("model", "body", "missing"),
    [
        (ChatCompletion, {"created": 0, "model": "m", "choices": []}, "id"),
        (ChatCompletion, {"id": "c", "model": "m", "choices": []}, "created"),
        (ChatCompletion, {"id": "c", "created": 0, "choices": []}, "model"),
        (ChatCompletion, {"id": "c", "created": 0, "model": "m"}, "choices"),
        (ChatCompletionChunk, {"id": "c", "created": 0, "model": "m"}, "choices"),
        (Completion, {"id": "c", "created": 0, "model": "m", "choices": [{"index": 0}]}, "text"),
        (CreateEmbeddingResponse, {"data": [], "model": "m"}, "usage"),
        (Model, {"id": "m", "created": 0}, "owned_by"),
        (Response, {"id": "r", "created_at": 0, "model": "m"}, "output"),
    ],
)
def test_required_fields_are_enforced(
    model: type[pydantic.BaseModel], body: dict[str, Any], missing: str
) -> None:
    with pytest.raises(pydantic.ValidationError) as info:
        model.model_validate(body)
    assert missing in str(info.value)


def test_unusual_enum_values_pass_through() -> None:
    completion = ChatCompletion.model_validate(
        {
            "id": "c",
            "object": "chat.completion.chunk",
            "created": 0,
            "model": "m",
            "choices": [{"index": 0, "message": {"role": "tool", "content": ""}, "finish_reason": "abort"}],
        }
    )
    assert completion.choices[0].finish_reason == "abort"
    assert completion.choices[0].message.role == "tool"


# --- dumps ----------------------------------------------------------------------------------------


def test_to_dict_defaults_to_the_fields_the_server_sent() -> None:
    body = {"id": "c", "created": 1, "model": "m", "choices": [], "vendor_field": [1, 2]}
    completion = ChatCompletion.model_validate(body)
    assert completion.to_dict() == body
    full = completion.to_dict(exclude_unset=False)
    assert full["usage"] is None
    assert full["object"] == "chat.completion"
    assert completion.model_dump()["vendor_field"] == [1, 2]


def test_to_json_round_trips() -> None:
    completion = ChatCompletion.model_validate(load("types_chat_tool_calls.json"))
    text = completion.to_json()
    assert "\n  " in text  # indented by default
    assert ChatCompletion.model_validate_json(text) == completion
    assert json.loads(completion.to_json(indent=None)) == load("types_chat_tool_calls.json")
    assert ChatCompletion.model_validate_json(completion.model_dump_json()) == completion


def test_to_dict_json_mode_and_exclude_none() -> None:
    completion = ChatCompletion.model_validate(load("types_vllm032_chat.json"))
    dumped = completion.to_dict(mode="json", exclude_none=True)
    assert "kv_transfer_params" not in dumped
    assert "refusal" not in dumped["choices"][0]["message"]  # type: ignore[index]
    json.dumps(dumped)


def test_str_and_repr_name_the_class() -> None:
    usage = ChatCompletion.model_validate(load("types_vllm032_chat.json")).usage
    assert str(usage).startswith("CompletionUsage(")
    assert repr(usage).startswith("CompletionUsage(")


# --- the other endpoints --------------------------------------------------------------------------


def test_completion_fixture() -> None:
    completion = Completion.model_validate(load("types_completion.json"))
    choice = completion.choices[0]
    assert choice.text == "Once upon a time"
    assert choice.logprobs is not None
    assert choice.logprobs.tokens == ["Once", " upon", " a", " time"]
    assert choice.logprobs.top_logprobs is not None
    assert choice.logprobs.top_logprobs[1] == {" upon": -0.0625, " there": -3.0}
    assert choice.stop_reason is None  # type: ignore[attr-defined]


def test_embeddings_and_models_fixtures() -> None:
    embeddings = CreateEmbeddingResponse.model_validate(load("types_embeddings.json"))
    assert [e.index for e in embeddings.data] == [0, 1]
    assert embeddings.data[0].embedding[:2] == [0.0123, -0.0456]
    assert embeddings.usage.prompt_tokens == 11
    models = [Model.model_validate(m) for m in load("types_models.json")["data"]]
    assert models[0].id == "openai/gpt-oss-20b"
    assert models[0].owned_by == "vllm"
    assert models[0].max_model_len == 8192  # type: ignore[attr-defined]


def test_response_output_items_and_output_text() -> None:
    response = Response.model_validate(load("types_response.json"))
    kinds = [type(item) for item in response.output]
    assert kinds == [ResponseReasoningItem, ResponseOutputMessage, ResponseFunctionToolCall]
    assert response.output_text == '{"answer": 4, "confidence": 0.9}'
    assert response.usage is not None
    assert response.usage.output_tokens_details is not None
    assert response.usage.output_tokens_details.reasoning_tokens == 9
    reasoning = response.output[0]
    assert isinstance(reasoning, ResponseReasoningItem)
    assert reasoning.content is not None
    assert reasoning.content[0].text == "Two plus two is four."


def test_response_unknown_item_and_part_kinds_are_kept() -> None:
    response = Response.model_validate(
        {
            "id": "r",
            "created_at": 0,
            "model": "m",
            "output": [
                {"type": "web_search_call", "id": "ws", "status": "completed"},
                {
                    "type": "message",
                    "id": "m",
                    "content": [
                        {"type": "output_text", "text": "a", "annotations": []},
                        {"type": "output_audio", "data": "AAA"},
                        {"type": "output_text", "text": "b"},
                    ],
                },
            ],
        }
    )
    other = response.output[0]
    assert isinstance(other, ResponseOutputItemOther)
    assert other.type == "web_search_call"
    assert other.status == "completed"  # type: ignore[attr-defined]
    message = response.output[1]
    assert isinstance(message, ResponseOutputMessage)
    assert isinstance(message.content[1], ResponseContentOther)
    assert isinstance(message.content[2], ResponseOutputText)
    assert response.output_text == "ab"


def test_response_output_text_is_empty_without_messages() -> None:
    response = Response.model_validate({"id": "r", "created_at": 0, "model": "m", "output": []})
    assert response.output_text == ""
    assert ParsedResponse.model_validate(response.to_dict()).output_parsed is None


# --- properties -----------------------------------------------------------------------------------

_DECLARED = set(ChatCompletion.model_fields) | {
    name for name in dir(ChatCompletion) if not name.startswith("_")
}
_extra_keys = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).filter(
    lambda k: k not in _DECLARED and not k.startswith("_")
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=8,
)


@given(
    extras=st.dictionaries(_extra_keys, _json_values, max_size=5), content=st.none() | st.text(max_size=50)
)
def test_any_extra_field_survives_validation_and_dumps(extras: dict[str, Any], content: str | None) -> None:
    body = {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "m",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}
        ],
        **extras,
    }
    completion = ChatCompletion.model_validate(body)
    for key, value in extras.items():
        assert getattr(completion, key) == value
    assert completion.to_dict() == body
    assert json.loads(completion.to_json()) == body
    assert completion.choices[0].message.content == content


# --- speed ----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_validation_stays_cheap() -> None:
    # A loose guard (about 7 us on a dev machine): catches an accidental validator or a slow type.
    body = load("types_vllm032_chat.json")
    rounds = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(500):
            ChatCompletion.model_validate(body)
        rounds.append((time.perf_counter() - start) / 500)
    assert statistics.median(rounds) < 150e-6
