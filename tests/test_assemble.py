"""Reassembly: a streamed answer rebuilt into the body the non-streaming endpoint returns."""

from __future__ import annotations

import json
import random
import time
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import Completion
from openai.types.chat import ChatCompletion

from resilient_llm._assemble import ChatAssembler, CompletionAssembler, ResponseAssembler
from tests._fixtures import load, sse_chunks, vllm_chunks


def assemble_chat(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    assembler = ChatAssembler()
    for chunk in chunks:
        assembler.feed(chunk)
    return assembler.result()


def assemble_completion(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    assembler = CompletionAssembler()
    for chunk in chunks:
        assembler.feed(chunk)
    return assembler.result()


# --- what users read ------------------------------------------------------------------------------


def chat_view(body: dict[str, Any]) -> dict[str, Any]:
    """The values at the attribute paths users of a ChatCompletion read."""
    completion = ChatCompletion.model_validate(body)
    usage = completion.usage
    return {
        "id": completion.id,
        "object": completion.object,
        "created": completion.created,
        "model": completion.model,
        "system_fingerprint": completion.system_fingerprint,
        "usage": None
        if usage is None
        else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
        "choices": [
            {
                "index": c.index,
                "finish_reason": c.finish_reason,
                "stop_reason": getattr(c, "stop_reason", None),
                "role": c.message.role,
                "content": c.message.content,
                # openai's message type has a field only for the name the server sent; the assembled
                # answer carries both names (vLLM 0.32 says "reasoning", older servers "reasoning_content").
                "reasoning": getattr(c.message, "reasoning", None)
                or getattr(c.message, "reasoning_content", None),
                "refusal": c.message.refusal,
                # An empty list (older vLLM, non-streaming) and no tool calls read the same.
                "tool_calls": [
                    (t.id, t.type, t.function.name, t.function.arguments) for t in c.message.tool_calls
                ]
                or None
                if c.message.tool_calls is not None
                else None,
                "logprobs": None
                if c.logprobs is None or c.logprobs.content is None
                else [
                    (lp.token, lp.logprob, lp.bytes, [(t.token, t.logprob) for t in lp.top_logprobs])
                    for lp in c.logprobs.content
                ],
            }
            for c in completion.choices
        ],
    }


def completion_view(body: dict[str, Any]) -> dict[str, Any]:
    completion = Completion.model_validate(body)
    usage = completion.usage
    return {
        "id": completion.id,
        "object": completion.object,
        "model": completion.model,
        "usage": None
        if usage is None
        else (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens),
        "choices": [
            {
                "index": c.index,
                "text": c.text,
                "finish_reason": c.finish_reason,
                "stop_reason": getattr(c, "stop_reason", None),
                "logprobs": None if c.logprobs is None else c.logprobs.model_dump(),
            }
            for c in completion.choices
        ],
    }


# --- real vLLM 0.32 stream ------------------------------------------------------------------------


def test_real_vllm_stream_assembles() -> None:
    body = assemble_chat(sse_chunks("stream_vllm032_chat.sse"))
    assert body["object"] == "chat.completion"
    assert body["id"] == "chatcmpl-a35183fbd033ea28"
    assert body["created"] == 1795931917
    assert body["model"] == "openai/gpt-oss-20b"
    assert body["system_fingerprint"] == "vllm-0.32.0-ab3894f9"
    assert body["usage"] == {"prompt_tokens": 33, "total_tokens": 45, "completion_tokens": 12}
    assert body["prompt_token_ids"] is None
    (choice,) = body["choices"]
    assert choice["message"] == {"role": "assistant", "content": "Nisei: lamen. (Hine?)\n", "refusal": None}
    assert choice["finish_reason"] == "length"
    assert choice["logprobs"] is None
    assert "stop_reason" in choice
    assert choice["stop_reason"] is None
    # The same keys the real non-streaming reply has, at the top and per choice (value shapes aside).
    real = load("types_vllm032_chat.json")
    assert {"id", "object", "created", "model", "choices", "usage", "system_fingerprint"} <= body.keys()
    assert {"index", "message", "finish_reason", "logprobs", "stop_reason", "token_ids"} <= choice.keys()
    assert {"role", "content", "refusal"} <= real["choices"][0]["message"].keys()


@pytest.mark.parametrize("cuts", [1, 2, 7, 1000])
def test_real_nonstream_capture_survives_a_round_trip_through_chunks(cuts: int) -> None:
    real = load("types_vllm032_chat.json")
    assert chat_view(assemble_chat(vllm_chunks(real, cuts))) == chat_view(real)


# --- paired fixtures: the same answer streamed and not --------------------------------------------

CHAT_PAIRS = [
    ("stream_chat_tool_calls.sse", "types_chat_tool_calls.json"),
    ("stream_chat_reasoning.sse", "types_chat_reasoning.json"),
    ("stream_chat_reasoning_legacy.sse", "types_chat_reasoning_legacy.json"),
    ("stream_chat_logprobs.sse", "types_chat_logprobs.json"),
    ("stream_chat_n2.sse", "types_chat_n2.json"),
]


@pytest.mark.parametrize(("stream", "nonstream"), CHAT_PAIRS)
def test_paired_chat_fixtures_read_the_same(stream: str, nonstream: str) -> None:
    assert chat_view(assemble_chat(sse_chunks(stream))) == chat_view(load(nonstream))


# Real vLLM 0.32 answers to the same request streamed and not (greedy or seeded, so the same text);
# two requests, so their ids and timestamps differ.
REAL_PAIRS = [
    ("stream_vllm032_chat_logprobs.sse", "types_vllm032_chat_logprobs.json"),
    ("stream_vllm032_chat_n2.sse", "types_vllm032_chat_n2.json"),
    ("stream_vllm032_chat_token_ids.sse", "types_vllm032_chat_token_ids.json"),
]


def without_identity(view: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in view.items() if key not in ("id", "created")}


@pytest.mark.parametrize(("stream", "nonstream"), REAL_PAIRS)
def test_real_vllm_pairs_read_the_same(stream: str, nonstream: str) -> None:
    assembled = chat_view(assemble_chat(sse_chunks(stream)))
    assert without_identity(assembled) == without_identity(chat_view(load(nonstream)))


def test_real_vllm_token_ids_concatenate() -> None:
    assembled = assemble_chat(sse_chunks("stream_vllm032_chat_token_ids.sse"))
    real = load("types_vllm032_chat_token_ids.json")
    assert assembled["choices"][0]["token_ids"] == real["choices"][0]["token_ids"]
    assert len(real["choices"][0]["token_ids"]) == real["usage"]["completion_tokens"]
    assert assembled["prompt_token_ids"] == real["prompt_token_ids"]


def test_real_vllm_completion_pair_reads_the_same() -> None:
    assembled = completion_view(assemble_completion(sse_chunks("stream_vllm032_completion.sse")))
    real = completion_view(load("types_vllm032_completion.json"))
    assert without_identity(assembled) == without_identity(real)
    assert assembled["choices"][0]["logprobs"]["text_offset"] == real["choices"][0]["logprobs"]["text_offset"]


def test_paired_completion_fixture_reads_the_same() -> None:
    assembled = assemble_completion(sse_chunks("stream_completion.sse"))
    assert completion_view(assembled) == completion_view(load("types_completion.json"))
    assert assembled["object"] == "text_completion"


def test_tool_call_fragments_merge_by_index() -> None:
    body = assemble_chat(sse_chunks("stream_chat_tool_calls.sse"))
    message = body["choices"][0]["message"]
    assert message["content"] is None
    assert message["tool_calls"] == [
        {
            "id": "chatcmpl-tool-5d0f3e2b7c9a4e11",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'},
        },
        {
            "id": "chatcmpl-tool-a1b2c3d4e5f60718",
            "type": "function",
            "function": {"name": "get_time", "arguments": '{"timezone": "Europe/Paris"}'},
        },
    ]
    assert body["choices"][0]["finish_reason"] == "tool_calls"


def test_reasoning_goes_to_both_keys() -> None:
    for stream in ("stream_chat_reasoning.sse", "stream_chat_reasoning_legacy.sse"):
        message = assemble_chat(sse_chunks(stream))["choices"][0]["message"]
        assert message["reasoning"] == message["reasoning_content"]
        assert message["reasoning"]


# --- one rule at a time ---------------------------------------------------------------------------


def chunk(*choices: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {
        "id": "c1",
        "object": "chat.completion.chunk",
        "created": 5,
        "model": "m",
        "choices": list(choices),
        **top,
    }


def delta(index: int = 0, finish: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"index": index, "delta": fields, "finish_reason": finish}


@pytest.mark.parametrize(
    ("deltas", "content"),
    [
        ([], None),
        ([{"content": ""}], None),
        ([{"content": ""}, {"content": None}], None),
        ([{"content": "a"}], "a"),
        ([{"content": ""}, {"content": "a"}, {"content": "b"}], "ab"),
        ([{"role": "assistant"}, {"content": " "}], " "),
    ],
)
def test_content_is_the_concatenation_or_none(deltas: list[dict[str, Any]], content: str | None) -> None:
    body = assemble_chat([chunk(delta(**d)) for d in deltas] or [chunk(delta())])
    assert body["choices"][0]["message"]["content"] == content


@pytest.mark.parametrize(
    ("deltas", "reasoning"),
    [
        ([{"reasoning": "a"}, {"reasoning": "b"}], "ab"),
        ([{"reasoning_content": "a"}, {"reasoning_content": "b"}], "ab"),
        # A server that sends both names for the same text: counted once.
        ([{"reasoning": "a", "reasoning_content": "a"}, {"reasoning": "b", "reasoning_content": "b"}], "ab"),
        ([{"reasoning": None, "reasoning_content": "a"}], "a"),
        ([{"content": "x"}], None),
    ],
)
def test_reasoning_rules(deltas: list[dict[str, Any]], reasoning: str | None) -> None:
    message = assemble_chat([chunk(delta(**d)) for d in deltas])["choices"][0]["message"]
    assert message.get("reasoning") == reasoning
    assert message.get("reasoning_content") == reasoning
    assert ("reasoning" in message) is (reasoning is not None)


def test_finish_reason_is_the_last_non_null() -> None:
    body = assemble_chat([chunk(delta(content="a")), chunk(delta(finish="stop")), chunk(delta(content=""))])
    assert body["choices"][0]["finish_reason"] == "stop"


def test_refusal_and_legacy_function_call() -> None:
    body = assemble_chat(
        [
            chunk(delta(refusal="I can")),
            chunk(delta(refusal="not.")),
            chunk(delta(function_call={"name": "lookup", "arguments": '{"q":'})),
            chunk(delta(function_call={"arguments": ' "x"}'})),
        ]
    )
    message = body["choices"][0]["message"]
    assert message["refusal"] == "I cannot."
    assert message["function_call"] == {"name": "lookup", "arguments": '{"q": "x"}'}


def test_produced_counts_the_generated_text_of_every_kind() -> None:
    """An answer's pace is measured in ``produced`` (``_hedge.py``): every kind of generated text."""
    assembler = ChatAssembler()
    fed = [
        chunk(delta(role="assistant", content="")),  # vLLM's opening delta: nothing generated
        chunk(delta(content="Hello"), delta(index=1, content="Hi")),
        chunk(delta(reasoning="think")),
        chunk(delta(reasoning_content="more")),
        chunk(delta(refusal="no")),
        chunk(delta(tool_calls=[{"index": 0, "id": "t", "function": {"name": "f", "arguments": '{"a"'}}])),
        chunk(delta(function_call={"name": "g", "arguments": ":1}"})),
        chunk(delta(finish="stop"), usage={"completion_tokens": 9}),
    ]
    counts = []
    for c in fed:
        assembler.feed(c)
        counts.append(assembler.produced)
    # characters, at least TOKEN_CHARS (4) for a choice's delta that brought any: "Hi" and "no" count 4
    assert counts == [0, 9, 14, 18, 22, 26, 30, 30]

    completion = CompletionAssembler()
    completion.feed({"id": "c", "choices": [{"index": 0, "text": "abcdef"}, {"index": 1, "text": ""}]})
    completion.feed({"id": "c", "choices": [{"index": 0, "text": "7"}]})
    assert completion.produced == 10

    responses = ResponseAssembler()
    responses.feed({"type": "response.created", "response": {"id": "r"}})
    responses.feed({"type": "response.output_text.delta", "delta": "fourth"})
    responses.feed({"type": "response.function_call_arguments.delta", "delta": "{}"})
    responses.feed({"type": "response.output_text.delta", "delta": ""})
    responses.feed({"type": "response.completed", "response": {"id": "r"}})
    assert responses.produced == 10 and responses.finished


def test_tool_call_without_index_or_id() -> None:
    body = assemble_chat(
        [
            chunk(delta(tool_calls=[{"function": {"name": "f", "arguments": "{}"}}])),
            chunk(delta(tool_calls=[{"index": None, "function": {"arguments": ""}}])),
        ]
    )
    assert body["choices"][0]["message"]["tool_calls"] == [
        {"id": "", "type": "function", "function": {"name": "f", "arguments": "{}"}}
    ]


def test_repeated_names_and_ids_are_not_doubled() -> None:
    fragment = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{"}}
    again = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": "}"}}
    body = assemble_chat([chunk(delta(tool_calls=[fragment])), chunk(delta(tool_calls=[again]))])
    assert body["choices"][0]["message"]["tool_calls"][0] == {
        "id": "call_1",
        "type": "function",
        "function": {"name": "f", "arguments": "{}"},
    }


def test_logprobs_concatenate_and_stay_none_without_any() -> None:
    token = {"token": "a", "logprob": -1.0, "bytes": [97], "top_logprobs": []}
    body = assemble_chat(
        [
            chunk({**delta(content="a"), "logprobs": {"content": [token]}}),
            chunk({**delta(content="b"), "logprobs": None}),
            chunk({**delta(content="c"), "logprobs": {"content": [token, token], "refusal": [token]}}),
        ]
    )
    assert body["choices"][0]["logprobs"] == {"content": [token] * 3, "refusal": [token]}
    assert assemble_chat([chunk(delta(content="a"))])["choices"][0]["logprobs"] is None


def test_choice_extras_lists_concatenate_and_values_keep_last_non_null() -> None:
    body = assemble_chat(
        [
            chunk({**delta(content="a"), "token_ids": [1, 2], "stop_reason": None, "routed": None}),
            chunk({**delta(content="b"), "token_ids": [3], "stop_reason": 7, "routed": None}),
            chunk({**delta(finish="stop"), "token_ids": None, "stop_reason": None}),
        ]
    )
    choice = body["choices"][0]
    assert choice["token_ids"] == [1, 2, 3]
    assert choice["stop_reason"] == 7
    assert "routed" in choice
    assert choice["routed"] is None


def test_top_level_fields() -> None:
    body = assemble_chat(
        [
            chunk(
                delta(content="a"), prompt_token_ids=[1, 2], system_fingerprint=None, service_tier="default"
            ),
            {**chunk(delta(content="b"), prompt_token_ids=None), "id": "c2", "created": 9, "model": "other"},
            chunk(
                usage={"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}, system_fingerprint="fp"
            ),
            chunk(usage=None),
        ]
    )
    assert (body["id"], body["created"], body["model"]) == ("c1", 5, "m")
    assert body["prompt_token_ids"] == [1, 2]
    assert body["system_fingerprint"] == "fp"
    assert body["service_tier"] == "default"
    assert body["usage"] == {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}
    assert "error" not in body


def test_usage_is_none_without_a_usage_chunk() -> None:
    assert assemble_chat([chunk(delta(content="a", finish="stop"))])["usage"] is None


def test_choices_are_ordered_by_index() -> None:
    body = assemble_chat([chunk(delta(index=2, content="c")), chunk(delta(index=0, content="a"))])
    assert [c["index"] for c in body["choices"]] == [0, 2]
    assert [c["message"]["content"] for c in body["choices"]] == ["a", "c"]


def test_result_without_chunks_raises() -> None:
    with pytest.raises(ValueError, match="no chunk"):
        ChatAssembler().result()
    with pytest.raises(ValueError, match="no chunk"):
        CompletionAssembler().result()


@pytest.mark.parametrize(
    ("chunks", "finished"),
    [
        ([], False),
        ([chunk()], False),
        ([chunk(delta(content="a"))], False),
        ([chunk(delta(content="a", finish="length"))], True),
        ([chunk(delta(index=0, finish="stop"), delta(index=1, content="x"))], False),
        ([chunk(delta(index=0, finish="stop"), delta(index=1, finish="stop"))], True),
    ],
)
def test_finished(chunks: list[dict[str, Any]], finished: bool) -> None:
    assembler = ChatAssembler()
    for c in chunks:
        assembler.feed(c)
    assert assembler.finished is finished
    assert assembler.chunks == len(chunks)


def test_result_is_repeatable_and_not_changed_by_later_feeding() -> None:
    token = {"token": "a", "logprob": -1.0, "top_logprobs": []}
    assembler = ChatAssembler()
    assembler.feed(chunk({**delta(content="a"), "logprobs": {"content": [token]}, "token_ids": [1]}))
    first = assembler.result()
    assert assembler.result() == first
    snapshot = json.loads(json.dumps(first))
    assembler.feed(chunk({**delta(content="b"), "logprobs": {"content": [token]}, "token_ids": [2]}))
    assert first == snapshot
    assert assembler.result()["choices"][0]["token_ids"] == [1, 2]


def test_completion_assembler_rules() -> None:
    def cchunk(**choice: Any) -> dict[str, Any]:
        return {"id": "cmpl-1", "object": "text_completion", "created": 1, "model": "m", "choices": [choice]}

    assembler = CompletionAssembler()
    assembler.feed(cchunk(index=0, text="Hel", logprobs={"tokens": ["Hel"], "token_logprobs": [-1.0]}))
    assembler.feed(cchunk(index=1, text="", finish_reason=None))
    assert not assembler.finished
    assembler.feed(cchunk(index=0, text="lo", logprobs=None, finish_reason="stop", stop_reason="\n"))
    assembler.feed(cchunk(index=1, text="", finish_reason="length"))
    assert assembler.finished
    body = assembler.result()
    assert body["object"] == "text_completion"
    assert body["choices"][0] == {
        "index": 0,
        "text": "Hello",
        "finish_reason": "stop",
        "logprobs": {"tokens": ["Hel"], "token_logprobs": [-1.0]},
        "stop_reason": "\n",
    }
    assert body["choices"][1]["text"] == ""
    assert body["choices"][1]["logprobs"] is None


# --- property: simulated answers, cut anywhere ----------------------------------------------------

_text = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
_name = st.from_regex(r"[a-z_]{1,12}", fullmatch=True)


@st.composite
def chat_bodies(draw: st.DrawFn) -> dict[str, Any]:
    choices = []
    for index in range(draw(st.integers(1, 3))):
        content = draw(st.none() | _text)
        message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
        reasoning = draw(st.none() | _text)
        if reasoning is not None:
            message[draw(st.sampled_from(["reasoning", "reasoning_content"]))] = reasoning
        calls = [
            {
                "id": f"call_{index}_{i}",
                "type": "function",
                "function": {"name": draw(_name), "arguments": args},
            }
            for i, args in enumerate(draw(st.lists(_text, max_size=2)))
        ]
        if calls:
            message["tool_calls"] = calls
        logprobs = None
        if content is not None and draw(st.booleans()):
            logprobs = {
                "content": [
                    {"token": ch, "logprob": -float(i), "bytes": list(ch.encode()), "top_logprobs": []}
                    for i, ch in enumerate(content)
                ]
            }
        choices.append(
            {
                "index": index,
                "message": message,
                "logprobs": logprobs,
                "finish_reason": draw(st.sampled_from(["stop", "length", "tool_calls"])),
                "stop_reason": draw(st.sampled_from([None, "\n", 128001])),
            }
        )
    prompt = draw(st.integers(0, 10_000))
    completion = draw(st.integers(0, 10_000))
    return {
        "id": "chatcmpl-" + draw(st.from_regex(r"[0-9a-f]{16}", fullmatch=True)),
        "object": "chat.completion",
        "created": draw(st.integers(0, 2**31)),
        "model": "openai/gpt-oss-20b",
        "choices": choices,
        "system_fingerprint": draw(st.none() | st.just("vllm-0.32.0")),
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
        },
    }


def cut(text: str, rng: random.Random) -> list[str]:
    points = sorted(rng.sample(range(1, len(text)), k=rng.randint(0, len(text) - 1))) if len(text) > 1 else []
    return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]


def simulated_stream(body: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """Chunks a simulator-like server would send for ``body``: text cut at random, choices interleaved."""
    head = {
        "id": body["id"],
        "object": "chat.completion.chunk",
        "created": body["created"],
        "model": body["model"],
    }
    per_choice: list[list[dict[str, Any]]] = []
    for c in body["choices"]:
        index, message = c["index"], c["message"]
        items: list[dict[str, Any]] = [{"index": index, "delta": {"role": "assistant", "content": ""}}]
        for key in ("reasoning", "reasoning_content"):
            if message.get(key):
                items += [{"index": index, "delta": {key: p}} for p in cut(message[key], rng)]
        if c["logprobs"]:
            entries = c["logprobs"]["content"]
            items += [
                {"index": index, "delta": {"content": e["token"]}, "logprobs": {"content": [e]}}
                for e in entries
            ]
        elif message["content"]:
            items += [{"index": index, "delta": {"content": p}} for p in cut(message["content"], rng)]
        for i, call in enumerate(message.get("tool_calls") or []):
            first = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"]},
            }
            items.append({"index": index, "delta": {"tool_calls": [first]}})
            for p in cut(call["function"]["arguments"], rng):
                fragment = {"index": i, "function": {"arguments": p}}
                items.append({"index": index, "delta": {"tool_calls": [fragment]}})
        items.append(
            {
                "index": index,
                "delta": {},
                "finish_reason": c["finish_reason"],
                "stop_reason": c["stop_reason"],
            }
        )
        per_choice.append(items)
    chunks = []
    while any(per_choice):
        queue = rng.choice([q for q in per_choice if q])
        chunks.append({**head, "choices": [queue.pop(0)]})
    chunks.append(
        {**head, "choices": [], "usage": body["usage"], "system_fingerprint": body["system_fingerprint"]}
    )
    return chunks


@settings(max_examples=200, deadline=None)
@given(body=chat_bodies(), seed=st.integers(0, 2**32 - 1))
def test_any_answer_cut_anywhere_reassembles_to_the_same_reading(body: dict[str, Any], seed: int) -> None:
    assembled = assemble_chat(simulated_stream(body, random.Random(seed)))
    assert chat_view(assembled) == chat_view(body)


@settings(max_examples=100, deadline=None)
@given(
    tokens=st.lists(_text, min_size=1, max_size=10),
    finish=st.sampled_from(["stop", "length"]),
    seed=st.integers(0, 2**32 - 1),
)
def test_any_completion_reassembles(tokens: list[str], finish: str, seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(tokens)
    offsets = [sum(len(t) for t in tokens[:i]) for i in range(len(tokens))]
    logprobs: dict[str, list[Any]] = {
        "text_offset": offsets,
        "token_logprobs": [-rng.random() for _ in tokens],
        "tokens": tokens,
        "top_logprobs": [{t: -0.5} for t in tokens],
    }
    head = {"id": "cmpl-x", "object": "text_completion", "created": 3, "model": "m"}
    body = {**head, "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": finish}]}
    chunks = []
    for i, token in enumerate(tokens):
        piece = {key: [values[i]] for key, values in logprobs.items()}
        last = i == len(tokens) - 1
        chunks.append(
            {
                **head,
                "choices": [
                    {"index": 0, "text": token, "logprobs": piece, "finish_reason": finish if last else None}
                ],
            }
        )
    assert completion_view(assemble_completion(chunks)) == completion_view(body)


# --- cost -----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_feed_stays_cheap() -> None:
    # A loose guard (about 2 us a chunk on a dev machine) against an accidental pydantic call or copy.
    chunks = sse_chunks("stream_vllm032_chat.sse") * 20
    best = float("inf")
    for _ in range(5):
        assembler = ChatAssembler()
        start = time.perf_counter()
        for c in chunks:
            assembler.feed(c)
        best = min(best, (time.perf_counter() - start) / len(chunks))
    assert best < 50e-6
