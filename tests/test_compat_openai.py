"""The same server JSON read through resilient_llm's types and through openai-python's client.

openai-python is driven through its public client over a mock transport (no network), so its side
is exactly what its users get. Values are compared at the attribute paths users read.
"""

from __future__ import annotations

import json
import pathlib
import re
from collections.abc import Iterator
from typing import Any

import pydantic
import pytest

from resilient_llm._assemble import ChatAssembler
from resilient_llm._exceptions import LengthFinishReasonError
from resilient_llm._parsing import (
    parse_chat_completion,
    parse_response,
    text_format_to_param,
    type_to_response_format,
)
from resilient_llm.types import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionMessage,
    ChatCompletionMessageToolCall,
    ChatCompletionTokenLogprob,
    ChoiceDelta,
    ChoiceDeltaToolCall,
    ChoiceLogprobs,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionLogprobs,
    CompletionUsage,
    CreateEmbeddingResponse,
    Embedding,
    EmbeddingUsage,
    Function,
    Model,
    ParsedChatCompletionMessage,
    ParsedResponse,
    Response,
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
    ResponseReasoningItem,
    ResponseUsage,
)
from resilient_llm.types import Choice as ChatChoice

openai = pytest.importorskip("openai")
try:  # openai-python 3.x talks through the httpx2 fork; earlier versions through httpx.
    import httpx2 as openai_http
except ImportError:  # pragma: no cover - depends on the installed openai
    import httpx as openai_http  # type: ignore[no-redef]

from openai.types import chat as openai_chat  # noqa: E402
from openai.types import completion_choice as openai_completion_choice  # noqa: E402
from openai.types import create_embedding_response as openai_embedding_response  # noqa: E402
from openai.types import responses as openai_responses  # noqa: E402
from openai.types.chat import chat_completion as openai_chat_completion  # noqa: E402
from openai.types.chat import chat_completion_chunk as openai_chunk  # noqa: E402

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def sse_chunks(name: str) -> list[dict[str, Any]]:
    lines = (FIXTURES / name).read_text().splitlines()
    return [json.loads(line[len("data: ") :]) for line in lines if line.startswith("data: {")]


class Server:
    """A mock transport answering every request with one body, remembering the requests."""

    def __init__(self, body: Any = None, *, sse: str | None = None) -> None:
        self.body = body
        self.sse = sse
        self.requests: list[dict[str, Any]] = []

    def handle(self, request: Any) -> Any:
        self.requests.append(json.loads(request.content) if request.content else {})
        if self.sse is not None:
            content = (FIXTURES / self.sse).read_bytes()
            return openai_http.Response(200, headers={"content-type": "text/event-stream"}, content=content)
        return openai_http.Response(200, json=self.body)

    def client(self) -> Any:
        transport = openai_http.MockTransport(self.handle)
        return openai.OpenAI(
            api_key="sk-test-not-a-key",
            base_url="http://127.0.0.1:9/v1",
            max_retries=0,
            http_client=openai_http.Client(transport=transport),
        )


_STEP = re.compile(r"\.?([A-Za-z_][A-Za-z0-9_]*)|\[(\d+)\]")


def resolve(obj: Any, path: str) -> Any:
    """``obj`` followed along ``path`` (``choices[0].message.content``); a missing attribute: ``<absent>``."""
    for match in _STEP.finditer(path):
        name, index = match.groups()
        if name is not None:
            if not hasattr(obj, name):
                return "<absent>"
            obj = getattr(obj, name)
        else:
            obj = obj[int(index)]
    return plain(obj)


def plain(value: Any) -> Any:
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def assert_same_at(ours: Any, theirs: Any, paths: list[str]) -> None:
    for path in paths:
        assert resolve(ours, path) == resolve(theirs, path), path
        assert resolve(ours, path) != "<absent>", path


CHAT_PATHS = [
    "id",
    "object",
    "created",
    "model",
    "system_fingerprint",
    "service_tier",
    "usage.prompt_tokens",
    "usage.completion_tokens",
    "usage.total_tokens",
    "choices[0].index",
    "choices[0].finish_reason",
    "choices[0].logprobs",
    "choices[0].message.role",
    "choices[0].message.content",
    "choices[0].message.refusal",
    "choices[0].message.tool_calls",
    "choices[0].message.function_call",
]
VLLM_PATHS = ["choices[0].stop_reason", "choices[0].token_ids", "prompt_token_ids", "prompt_logprobs"]
TOOL_PATHS = [
    f"choices[0].message.tool_calls[{i}].{leaf}"
    for i in (0, 1)
    for leaf in ("id", "type", "function.name", "function.arguments")
]
LOGPROB_PATHS = [
    f"choices[0].logprobs.content[{i}].{leaf}"
    for i in (0, 1, 2)
    for leaf in (
        "token",
        "logprob",
        "bytes",
        "top_logprobs[0].token",
        "top_logprobs[1].logprob",
        "top_logprobs[1].bytes",
    )
]

CHAT_CASES = [
    (
        "types_vllm032_chat.json",
        [*CHAT_PATHS, *VLLM_PATHS, "choices[0].message.reasoning", "choices[0].message.audio"],
    ),
    ("types_chat_tool_calls.json", [*CHAT_PATHS, *VLLM_PATHS, *TOOL_PATHS]),
    ("types_chat_reasoning.json", [*CHAT_PATHS, *VLLM_PATHS, "choices[0].message.reasoning"]),
    ("types_chat_reasoning_legacy.json", [*CHAT_PATHS, "choices[0].message.reasoning_content"]),
    ("types_chat_logprobs.json", [*CHAT_PATHS, *LOGPROB_PATHS]),
    (
        "types_chat_n2.json",
        [*CHAT_PATHS, "choices[1].index", "choices[1].message.content", "choices[1].stop_reason"],
    ),
    (
        "types_chat_usage_details.json",
        [
            *CHAT_PATHS,
            "choices[0].message.annotations",
            "usage.prompt_tokens_details.cached_tokens",
            "usage.prompt_tokens_details.audio_tokens",
            "usage.completion_tokens_details.reasoning_tokens",
            "usage.completion_tokens_details.accepted_prediction_tokens",
            "usage.completion_tokens_details.rejected_prediction_tokens",
        ],
    ),
    ("types_chat_refusal.json", CHAT_PATHS),
    ("types_vllm032_chat_logprobs.json", [*CHAT_PATHS, *VLLM_PATHS, *LOGPROB_PATHS]),
    (
        "types_vllm032_chat_n2.json",
        [
            *CHAT_PATHS,
            *VLLM_PATHS,
            "choices[1].message.content",
            "choices[1].finish_reason",
            "choices[1].stop_reason",
        ],
    ),
    ("types_vllm032_chat_token_ids.json", [*CHAT_PATHS, *VLLM_PATHS, "choices[0].token_ids[7]"]),
]


@pytest.mark.parametrize(("fixture", "paths"), CHAT_CASES, ids=[c[0] for c in CHAT_CASES])
def test_chat_completion_reads_like_openai(fixture: str, paths: list[str]) -> None:
    body = load(fixture)
    theirs = (
        Server(body).client().chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}])
    )
    ours = ChatCompletion.model_validate(body)
    assert_same_at(ours, theirs, paths)
    assert ours.to_dict() == theirs.to_dict()


@pytest.mark.parametrize("fixture", ["types_completion.json", "types_vllm032_completion.json"])
def test_completion_reads_like_openai(fixture: str) -> None:
    body = load(fixture)
    theirs = Server(body).client().completions.create(model="m", prompt="Once")
    ours = Completion.model_validate(body)
    paths = [
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "usage.total_tokens",
        "usage.prompt_tokens",
    ]
    paths += [
        f"choices[0].{leaf}"
        for leaf in (
            "index",
            "text",
            "finish_reason",
            "stop_reason",
            "logprobs.tokens",
            "logprobs.token_logprobs",
            "logprobs.top_logprobs",
            "logprobs.text_offset",
        )
    ]
    assert_same_at(ours, theirs, paths)


def test_embeddings_read_like_openai() -> None:
    body = load("types_embeddings.json")
    theirs = Server(body).client().embeddings.create(model="m", input=["a", "b"], encoding_format="float")
    ours = CreateEmbeddingResponse.model_validate(body)
    paths = ["object", "model", "usage.prompt_tokens", "usage.total_tokens", "id"]
    paths += [f"data[{i}].{leaf}" for i in (0, 1) for leaf in ("index", "object", "embedding")]
    assert_same_at(ours, theirs, paths)


@pytest.mark.parametrize("fixture", ["types_models.json", "types_vllm032_models.json"])
def test_models_list_reads_like_openai(fixture: str) -> None:
    body = load(fixture)
    theirs = list(Server(body).client().models.list())
    ours = [Model.model_validate(m) for m in body["data"]]
    paths = [
        f"[0].{leaf}" for leaf in ("id", "object", "created", "owned_by", "root", "parent", "max_model_len")
    ]
    paths.append("[0].permission")
    assert_same_at(ours, theirs, paths)


RESPONSE_PATHS = [
    "id",
    "object",
    "created_at",
    "model",
    "status",
    "output_text",
    "incomplete_details",
    "error",
    "temperature",
    "top_p",
    "max_output_tokens",
    "parallel_tool_calls",
    "tool_choice",
    "usage.input_tokens",
    "usage.output_tokens",
    "usage.total_tokens",
    "usage.input_tokens_details.cached_tokens",
    "usage.output_tokens_details.reasoning_tokens",
]


def test_real_vllm_response_reads_like_openai() -> None:
    body = load("types_vllm032_response.json")
    theirs = Server(body).client().responses.create(model="m", input="Say hello.")
    ours = Response.model_validate(body)
    paths = [*RESPONSE_PATHS, "incomplete_details.reason", "truncation", "service_tier", "background"]
    paths += [f"output[0].{leaf}" for leaf in ("type", "id", "role", "status", "phase", "content[0].text")]
    paths += [
        "usage.input_tokens_details.cache_write_tokens",
        "usage.output_tokens_details.tool_output_tokens",
    ]
    assert_same_at(ours, theirs, paths)
    assert ours.output_text.startswith("Hello there")


def test_response_reads_like_openai() -> None:
    body = load("types_response.json")
    theirs = Server(body).client().responses.create(model="m", input="What is 2+2?")
    ours = Response.model_validate(body)
    paths = [
        *RESPONSE_PATHS,
        "output[0].type",
        "output[0].id",
        "output[0].summary",
        "output[0].content[0].text",
        "output[1].type",
        "output[1].id",
        "output[1].role",
        "output[1].status",
        "output[1].content[0].type",
        "output[1].content[0].text",
        "output[1].content[0].annotations",
        "output[2].type",
        "output[2].name",
        "output[2].arguments",
        "output[2].call_id",
        "output[2].status",
    ]
    assert_same_at(ours, theirs, paths)


# --- streams --------------------------------------------------------------------------------------

STREAMS = [
    "stream_vllm032_chat.sse",
    "stream_vllm032_chat_logprobs.sse",
    "stream_vllm032_chat_n2.sse",
    "stream_vllm032_chat_token_ids.sse",
    "stream_chat_tool_calls.sse",
    "stream_chat_reasoning.sse",
    "stream_chat_reasoning_legacy.sse",
    "stream_chat_logprobs.sse",
    "stream_chat_n2.sse",
]


def chunk_view(chunk: Any) -> dict[str, Any]:
    return {
        "head": [chunk.id, chunk.object, chunk.created, chunk.model, chunk.system_fingerprint],
        "usage": plain(chunk.usage),
        "choices": [
            {
                "index": c.index,
                "finish_reason": c.finish_reason,
                "logprobs": plain(c.logprobs),
                "role": c.delta.role,
                "content": c.delta.content,
                "refusal": c.delta.refusal,
                # openai-python has an attribute only for the name the server sent; the library has both.
                "reasoning": getattr(c.delta, "reasoning", None)
                or getattr(c.delta, "reasoning_content", None),
                "tool_calls": plain(c.delta.tool_calls),
                "stop_reason": getattr(c, "stop_reason", "<absent>"),
            }
            for c in chunk.choices
        ],
    }


@pytest.mark.parametrize("stream", STREAMS)
def test_stream_chunks_read_like_openai(stream: str) -> None:
    client = Server(sse=stream).client()
    theirs = list(client.chat.completions.create(model="m", messages=[], stream=True))
    ours = [ChatCompletionChunk.model_validate(c) for c in sse_chunks(stream)]
    assert len(ours) == len(theirs) > 2
    for mine, other in zip(ours, theirs, strict=True):
        assert chunk_view(mine) == chunk_view(other)
        for choice in mine.choices:
            assert choice.delta.reasoning == choice.delta.reasoning_content


def final_view(completion: Any) -> dict[str, Any]:
    return {
        "head": [completion.id, completion.object, completion.created, completion.model],
        "system_fingerprint": completion.system_fingerprint,
        "usage": plain(completion.usage),
        "choices": [
            {
                "index": c.index,
                "finish_reason": c.finish_reason,
                "logprobs": None if c.logprobs is None else plain(c.logprobs.content),
                "role": c.message.role,
                # openai-python keeps the empty "" every vLLM stream opens with; the library says None,
                # as the non-streaming endpoint does for an answer made only of tool calls.
                "content": c.message.content or None,
                "refusal": c.message.refusal,
                "reasoning": getattr(c.message, "reasoning", None)
                or getattr(c.message, "reasoning_content", None),
                "tool_calls": [
                    (t.id, t.type, t.function.name, t.function.arguments) for t in c.message.tool_calls or []
                ],
            }
            for c in completion.choices
        ],
    }


@pytest.mark.parametrize("stream", STREAMS)
def test_reassembly_matches_openais_stream_accumulator(stream: str) -> None:
    client = Server(sse=stream).client()
    try:
        with client.chat.completions.stream(model="m", messages=[]) as events:
            theirs = events.get_final_completion()
    except openai.LengthFinishReasonError as exc:  # its accumulator refuses answers cut at max_tokens
        theirs = exc.completion
    assembler = ChatAssembler()
    for chunk in sse_chunks(stream):
        assembler.feed(chunk)
    ours = ChatCompletion.model_validate(assembler.result())
    assert final_view(ours) == final_view(theirs)
    assert ours.choices[0].message.reasoning_content == ours.choices[0].message.reasoning


# --- structured outputs ---------------------------------------------------------------------------


class Answer(pydantic.BaseModel):
    answer: int
    confidence: float


class Step(pydantic.BaseModel):
    explanation: str
    output: str


class Solution(pydantic.BaseModel):
    steps: list[Step]
    final_answer: str
    best_step: Step | None = pydantic.Field(default=None, description="The step that mattered most.")
    scores: dict[str, int] = pydantic.Field(default_factory=dict)


class Tree(pydantic.BaseModel):
    value: int
    children: list[Tree] = pydantic.Field(default_factory=list)


class ArcReply(pydantic.BaseModel):
    instructions: str
    grid: list[list[int]]
    reasoning_for_why_old_instructions_are_wrong: str | None = None


INSTANCES: list[pydantic.BaseModel] = [
    Answer(answer=4, confidence=0.98),
    Solution(
        steps=[Step(explanation="add", output="4")],
        final_answer="4",
        best_step=Step(explanation="a", output="b"),
    ),
    Tree(value=1, children=[Tree(value=2, children=[Tree(value=3)])]),
    ArcReply(instructions="rotate", grid=[[1, 0], [0, 1]]),
]


def chat_body_with(content: str, finish: str = "stop", refusal: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = load("types_chat_reasoning.json")
    body["choices"][0]["message"].update(content=content, refusal=refusal)
    body["choices"][0]["finish_reason"] = finish
    return body


@pytest.mark.parametrize("instance", INSTANCES, ids=lambda i: type(i).__name__)
def test_chat_parse_matches_openai(instance: pydantic.BaseModel) -> None:
    model = type(instance)
    body = chat_body_with(instance.model_dump_json())
    server = Server(body)
    theirs = server.client().chat.completions.parse(model="m", messages=[], response_format=model)
    ours = parse_chat_completion(ChatCompletion.model_validate(body), model)
    # The request carries the same response_format, and the answer parses to equal objects.
    assert server.requests[0]["response_format"] == type_to_response_format(model)
    assert ours.choices[0].message.parsed == theirs.choices[0].message.parsed == instance
    assert_same_at(ours, theirs, [*CHAT_PATHS, "choices[0].message.reasoning", "choices[0].stop_reason"])


def test_chat_parse_passes_dict_formats_like_openai() -> None:
    body = chat_body_with('{"answer": 1, "confidence": 0.5}')
    server = Server(body)
    response_format = {"type": "json_object"}
    theirs = server.client().chat.completions.parse(model="m", messages=[], response_format=response_format)
    ours = parse_chat_completion(ChatCompletion.model_validate(body), response_format)
    assert server.requests[0]["response_format"] == type_to_response_format(response_format)
    assert ours.choices[0].message.parsed is None
    assert theirs.choices[0].message.parsed is None


@pytest.mark.parametrize(
    ("finish", "refusal", "content"),
    [("stop", "I can't help with that.", ""), ("stop", "No.", '{"answer": 1, "confidence": 1}')],
)
def test_chat_parse_refusals_like_openai(finish: str, refusal: str, content: str) -> None:
    body = chat_body_with(content, finish, refusal)
    theirs = Server(body).client().chat.completions.parse(model="m", messages=[], response_format=Answer)
    ours = parse_chat_completion(ChatCompletion.model_validate(body), Answer)
    assert ours.choices[0].message.parsed is None
    assert theirs.choices[0].message.parsed is None
    assert ours.choices[0].message.refusal == theirs.choices[0].message.refusal == refusal


def test_chat_parse_length_raises_like_openai() -> None:
    body = chat_body_with('{"answer": 1, "conf', "length")
    with pytest.raises(openai.LengthFinishReasonError):
        Server(body).client().chat.completions.parse(model="m", messages=[], response_format=Answer)
    with pytest.raises(LengthFinishReasonError):
        parse_chat_completion(ChatCompletion.model_validate(body), Answer)


def test_chat_parse_content_filter_differs_on_purpose() -> None:
    # openai-python raises ContentFilterFinishReasonError; the library returns the completion with
    # parsed=None so the caller can read finish_reason and the refusal like any other answer.
    body = chat_body_with("", "content_filter")
    with pytest.raises(openai.ContentFilterFinishReasonError):
        Server(body).client().chat.completions.parse(model="m", messages=[], response_format=Answer)
    ours = parse_chat_completion(ChatCompletion.model_validate(body), Answer)
    assert ours.choices[0].message.parsed is None
    assert ours.choices[0].finish_reason == "content_filter"


@pytest.mark.parametrize("instance", INSTANCES, ids=lambda i: type(i).__name__)
def test_responses_parse_matches_openai(instance: pydantic.BaseModel) -> None:
    model = type(instance)
    body = load("types_response.json")
    body["output"][1]["content"][0]["text"] = instance.model_dump_json()
    server = Server(body)
    theirs = server.client().responses.parse(model="m", input="x", text_format=model)
    ours = parse_response(Response.model_validate(body), model)
    assert server.requests[0]["text"]["format"] == text_format_to_param(model)
    assert ours.output_parsed == theirs.output_parsed == instance
    assert_same_at(ours, theirs, ["output_text", "output[1].content[0].parsed", "output[2].arguments", "id"])


# --- field coverage -------------------------------------------------------------------------------

PAIRS: list[tuple[type[pydantic.BaseModel], Any]] = [
    (ChatCompletion, openai_chat.ChatCompletion),
    (ChatChoice, openai_chat_completion.Choice),
    (ChatCompletionMessage, openai_chat.ChatCompletionMessage),
    (ChatCompletionMessageToolCall, openai_chat.ChatCompletionMessageFunctionToolCall),
    (Function, openai_chat.chat_completion_message_function_tool_call.Function),
    (ChoiceLogprobs, openai_chat_completion.ChoiceLogprobs),
    (ChatCompletionTokenLogprob, openai_chat.ChatCompletionTokenLogprob),
    (ChatCompletionChunk, openai_chat.ChatCompletionChunk),
    (ChunkChoice, openai_chunk.Choice),
    (ChoiceDelta, openai_chunk.ChoiceDelta),
    (ChoiceDeltaToolCall, openai_chunk.ChoiceDeltaToolCall),
    (CompletionUsage, openai.types.CompletionUsage),
    (Completion, openai.types.Completion),
    (CompletionChoice, openai.types.CompletionChoice),
    (CompletionLogprobs, openai_completion_choice.Logprobs),
    (CreateEmbeddingResponse, openai.types.CreateEmbeddingResponse),
    (Embedding, openai.types.Embedding),
    (EmbeddingUsage, openai_embedding_response.Usage),
    (Model, openai.types.Model),
    (Response, openai_responses.Response),
    (ResponseOutputMessage, openai_responses.ResponseOutputMessage),
    (ResponseOutputText, openai_responses.ResponseOutputText),
    (ResponseFunctionToolCall, openai_responses.ResponseFunctionToolCall),
    (ResponseReasoningItem, openai_responses.ResponseReasoningItem),
    (ResponseUsage, openai_responses.ResponseUsage),
    (ParsedChatCompletionMessage, openai_chat.ParsedChatCompletionMessage),
    (ParsedResponse, openai_responses.ParsedResponse),
]


def _public_names(cls: type[pydantic.BaseModel]) -> Iterator[str]:
    yield from cls.model_fields
    yield from (name for name in dir(cls) if not name.startswith("_"))


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda p: getattr(p, "__name__", ""))
def test_every_openai_field_is_readable(ours: type[pydantic.BaseModel], theirs: Any) -> None:
    assert set(theirs.model_fields) <= set(_public_names(ours))


@pytest.mark.parametrize(("ours", "theirs"), PAIRS, ids=lambda p: getattr(p, "__name__", ""))
def test_nothing_is_required_that_openai_does_not_require(
    ours: type[pydantic.BaseModel], theirs: Any
) -> None:
    def required(cls: Any) -> set[str]:
        return {name for name, field in cls.model_fields.items() if field.is_required()}

    assert required(ours) <= required(theirs)
