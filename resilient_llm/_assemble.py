"""Reassembly: the non-streaming response body, rebuilt from the chunks of a streamed answer.

The library streams every chat and completions call under the hood (so it can tell a silent server
from a slow one) and hands the caller what the non-streaming endpoint would have returned. An
assembler is fed each decoded SSE ``data:`` object in order and then asked for the ``result()``::

    assembler = ChatAssembler()
    for chunk in chunks:          # dicts, as json.loads gave them; not "[DONE]"
        assembler.feed(chunk)
    body = assembler.result()     # {"object": "chat.completion", "choices": [...], "usage": ...}

``feed`` runs once per token on the hot path: it only appends fragments to lists and copies a few
keys; joining and shaping happen once, in ``result``. ``produced`` measures the generated text fed so
far: an answer's pace is measured in it (``_hedge.py``), not in chunks, since a server may pack several
tokens into one chunk (vLLM's ``--stream-interval``, speculative decoding). It adds each chunk's
characters of text (content, reasoning, refusal, tool-call arguments), at least ``TOKEN_CHARS`` for a
chunk that brought any: a chunk carries at least one token, so with one token per chunk (vLLM's
default) it follows the tokens whatever their length (a digit, a CJK character or an English word are
one token each), and with several per chunk, their text. No pydantic here: the caller validates the
body with openai's own ``ChatCompletion`` (or ``Completion``) as for a plain response.

How fields combine, per choice ``index``:

- text (``content``, ``refusal``, reasoning, ``text``, tool-call ``arguments``): concatenated. An
  empty result is ``None`` for the chat message fields: vLLM opens every stream with an empty
  ``content: ""`` delta, which says nothing about the answer.
- reasoning: the delta's ``reasoning`` (vLLM 0.32) or ``reasoning_content`` (older), written to both
  keys of the message when there was any.
- tool calls: merged by their ``index``; ``id``, ``type`` and ``function.name`` are taken from the
  first fragment that has them (servers send them whole), ``arguments`` concatenated.
- ``finish_reason``: the last non-null value. Logprob lists: concatenated.
- other keys of a choice (vLLM's ``stop_reason``, ``token_ids``...): lists concatenated, other values
  the last non-null one; a key seen only as null stays in the result as null.
- top level: ``id``, ``created`` and ``model`` from the first chunk; ``system_fingerprint``,
  ``service_tier`` and ``usage`` the last non-null (ask the server for
  ``stream_options={"include_usage": True}`` to get a usage chunk); other keys the first non-null.

An ``error`` event (``{"error": {...}}``) is not a chunk: the caller raises it instead of feeding it.
"""

from __future__ import annotations

from typing import Any, ClassVar, Final

__all__ = ["TOKEN_CHARS", "ChatAssembler", "CompletionAssembler", "ResponseAssembler"]

#: What a chunk that brought text adds to ``produced`` at least: about one token of English text.
TOKEN_CHARS: Final = 4

_LAST_WINS = ("system_fingerprint", "service_tier")
# Top-level keys that are not copied through as extras.
_NOT_EXTRA = frozenset({"id", "object", "created", "model", "choices", "usage", "error", *_LAST_WINS})

_CHAT_CHOICE_KEYS = frozenset({"index", "delta", "finish_reason", "logprobs"})
_COMPLETION_CHOICE_KEYS = frozenset({"index", "text", "finish_reason", "logprobs"})
_COMPLETION_LOGPROB_KEYS = ("tokens", "token_logprobs", "top_logprobs", "text_offset")


def _merge_extra(extra: dict[str, Any], key: str, value: Any) -> None:
    """Lists concatenate, other values: the last non-null wins; a null keeps the key present."""
    if value is None:
        extra.setdefault(key, None)
    elif type(value) is list:
        current = extra.get(key)
        if type(current) is list:
            current.extend(value)
        else:
            extra[key] = list(value)
    else:
        extra[key] = value


def _joined_or_none(parts: list[str]) -> str | None:
    return "".join(parts) or None


def _copy_extra(extra: dict[str, Any]) -> dict[str, Any]:
    """A copy whose lists are not the assembler's own, so feeding more cannot change a result."""
    return {key: list(value) if type(value) is list else value for key, value in extra.items()}


class _Envelope:
    """The top level shared by both endpoints: identity, fingerprint, usage and extra keys."""

    __slots__ = ("_choices", "_created", "_extra", "_id", "_model", "_top", "_usage", "chunks", "produced")

    _OBJECT: ClassVar[str]  # the non-streaming body's "object"

    def __init__(self) -> None:
        self._choices: dict[int, Any] = {}  # per choice index: its _ChatChoice / _CompletionChoice
        self.chunks = 0
        #: generated text fed so far: characters, at least ``TOKEN_CHARS`` per chunk (module docstring)
        self.produced = 0
        self._id: Any = None
        self._created: Any = None
        self._model: Any = None
        self._usage: Any = None
        self._top: dict[str, Any] = {}
        self._extra: dict[str, Any] = {}

    @property
    def finished(self) -> bool:
        """Whether every answer seen so far has its ``finish_reason`` (the stream ended normally)."""
        return bool(self._choices) and all(c.finish_reason is not None for c in self._choices.values())

    def result(self) -> dict[str, Any]:
        """The body the non-streaming endpoint would have returned. Can be called more than once."""
        choices = [self._choices[i].result(i) for i in sorted(self._choices)]
        return self._body(self._OBJECT, choices)

    def _feed_envelope(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        if self._id is None:
            self._id = chunk.get("id")
            self._created = chunk.get("created")
            self._model = chunk.get("model")
        usage = chunk.get("usage")
        if usage is not None:
            self._usage = usage
        for key in _LAST_WINS:
            value = chunk.get(key)
            if value is not None:
                self._top[key] = value
        if chunk.keys() - _NOT_EXTRA:  # (a set operation in C: most chunks have no other key)
            extra = self._extra
            for key, value in chunk.items():
                if key not in _NOT_EXTRA and extra.get(key) is None:
                    extra[key] = value

    def _body(self, object_: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
        if self._id is None:
            raise ValueError("no chunk with an 'id' was fed; there is no response to assemble")
        body: dict[str, Any] = {
            **_copy_extra(self._extra),
            "id": self._id,
            "object": object_,
            "created": self._created,
            "model": self._model,
            "choices": choices,
            "usage": self._usage,
        }
        body.update(self._top)
        return body


class _ChatChoice:
    __slots__ = (
        "content",
        "extra",
        "finish_reason",
        "function_call",
        "lp_content",
        "lp_refusal",
        "reasoning",
        "refusal",
        "role",
        "tools",
    )

    def __init__(self) -> None:
        self.role: str | None = None
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.refusal: list[str] = []
        # index -> [id, type, name, argument fragments]
        self.tools: dict[int, list[Any]] = {}
        self.function_call: list[Any] | None = None
        self.finish_reason: str | None = None
        self.lp_content: list[Any] | None = None
        self.lp_refusal: list[Any] | None = None
        self.extra: dict[str, Any] = {}

    def feed_delta(self, delta: dict[str, Any]) -> int:
        """Take one delta; returns how many characters of generated text it brought."""
        produced = 0
        role = delta.get("role")
        if role:
            self.role = role
        text = delta.get("content")
        if text:
            self.content.append(text)
            produced = len(text)
        reasoning = delta.get("reasoning")
        if reasoning is None:
            reasoning = delta.get("reasoning_content")
        if reasoning:
            self.reasoning.append(reasoning)
            produced += len(reasoning)
        refusal = delta.get("refusal")
        if refusal:
            self.refusal.append(refusal)
            produced += len(refusal)
        tool_calls = delta.get("tool_calls")
        if tool_calls:
            produced += self._feed_tool_calls(tool_calls)
        function_call = delta.get("function_call")
        if function_call:
            if self.function_call is None:
                self.function_call = [None, []]
            if function_call.get("name") and not self.function_call[0]:
                self.function_call[0] = function_call["name"]
            arguments = function_call.get("arguments")
            if arguments:
                self.function_call[1].append(arguments)
                produced += len(arguments)
        return produced

    def _feed_tool_calls(self, tool_calls: list[dict[str, Any]]) -> int:
        produced = 0
        for position, fragment in enumerate(tool_calls):
            index = fragment.get("index")
            if index is None:
                index = position
            call = self.tools.get(index)
            if call is None:
                call = self.tools[index] = [None, None, None, []]
            if call[0] is None:
                call[0] = fragment.get("id") or None
            if call[1] is None:
                call[1] = fragment.get("type")
            function = fragment.get("function")
            if function:
                if call[2] is None:
                    call[2] = function.get("name") or None
                arguments = function.get("arguments")
                if arguments:
                    call[3].append(arguments)
                    produced += len(arguments)
        return produced

    def feed_logprobs(self, logprobs: dict[str, Any]) -> None:
        content = logprobs.get("content")
        if content is not None:
            if self.lp_content is None:
                self.lp_content = []
            self.lp_content.extend(content)
        refusal = logprobs.get("refusal")
        if refusal is not None:
            if self.lp_refusal is None:
                self.lp_refusal = []
            self.lp_refusal.extend(refusal)

    def result(self, index: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": self.role or "assistant",
            "content": _joined_or_none(self.content),
            "refusal": _joined_or_none(self.refusal),
        }
        if self.reasoning:
            message["reasoning"] = message["reasoning_content"] = "".join(self.reasoning)
        if self.tools:
            message["tool_calls"] = [
                {
                    "id": call_id or "",
                    "type": type_ or "function",
                    "function": {"name": name or "", "arguments": "".join(arguments)},
                }
                for call_id, type_, name, arguments in (self.tools[i] for i in sorted(self.tools))
            ]
        if self.function_call is not None:
            name, arguments = self.function_call
            message["function_call"] = {"name": name or "", "arguments": "".join(arguments)}
        logprobs: dict[str, Any] | None = None
        if self.lp_content is not None or self.lp_refusal is not None:
            logprobs = {"content": None if self.lp_content is None else list(self.lp_content)}
            if self.lp_refusal is not None:
                logprobs["refusal"] = list(self.lp_refusal)
        return {
            **_copy_extra(self.extra),
            "index": index,
            "message": message,
            "finish_reason": self.finish_reason,
            "logprobs": logprobs,
        }


class ChatAssembler(_Envelope):
    """Rebuilds a ``chat.completion`` body from ``chat.completion.chunk`` objects.

    ``chunks`` counts the chunks fed so far; ``finished`` tells whether every answer got its
    ``finish_reason`` (a stream cut short has not).
    """

    __slots__ = ()
    _OBJECT = "chat.completion"

    def feed(self, chunk: dict[str, Any]) -> None:
        """Take one decoded chunk, in stream order."""
        self._feed_envelope(chunk)
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _ChatChoice()
            delta = choice.get("delta")
            if delta:
                produced = state.feed_delta(delta)
                if produced:
                    self.produced += produced if produced > TOKEN_CHARS else TOKEN_CHARS
            finish_reason = choice.get("finish_reason")
            if finish_reason is not None:
                state.finish_reason = finish_reason
            logprobs = choice.get("logprobs")
            if logprobs:
                state.feed_logprobs(logprobs)
            if choice.keys() - _CHAT_CHOICE_KEYS:
                for key, value in choice.items():
                    if key not in _CHAT_CHOICE_KEYS:
                        _merge_extra(state.extra, key, value)


class _CompletionChoice:
    __slots__ = ("extra", "finish_reason", "logprobs", "text")

    def __init__(self) -> None:
        self.text: list[str] = []
        self.finish_reason: str | None = None
        self.logprobs: dict[str, list[Any]] | None = None
        self.extra: dict[str, Any] = {}

    def feed_logprobs(self, logprobs: dict[str, Any]) -> None:
        if self.logprobs is None:
            self.logprobs = {}
        for key in _COMPLETION_LOGPROB_KEYS:
            values = logprobs.get(key)
            if values is not None:
                self.logprobs.setdefault(key, []).extend(values)

    def result(self, index: int) -> dict[str, Any]:
        return {
            **_copy_extra(self.extra),
            "index": index,
            "text": "".join(self.text),
            "finish_reason": self.finish_reason,
            "logprobs": None if self.logprobs is None else _copy_extra(self.logprobs),
        }


class CompletionAssembler(_Envelope):
    """Rebuilds a ``text_completion`` body from the chunks of a streamed ``/v1/completions`` call."""

    __slots__ = ()
    _OBJECT = "text_completion"

    def feed(self, chunk: dict[str, Any]) -> None:
        """Take one decoded chunk, in stream order."""
        self._feed_envelope(chunk)
        for choice in chunk.get("choices") or ():
            index = choice.get("index", 0)
            state = self._choices.get(index)
            if state is None:
                state = self._choices[index] = _CompletionChoice()
            text = choice.get("text")
            if text:
                state.text.append(text)
                produced = len(text)
                self.produced += produced if produced > TOKEN_CHARS else TOKEN_CHARS
            finish_reason = choice.get("finish_reason")
            if finish_reason is not None:
                state.finish_reason = finish_reason
            logprobs = choice.get("logprobs")
            if logprobs:
                state.feed_logprobs(logprobs)
            if choice.keys() - _COMPLETION_CHOICE_KEYS:
                for key, value in choice.items():
                    if key not in _COMPLETION_CHOICE_KEYS:
                        _merge_extra(state.extra, key, value)


_FINAL_RESPONSE_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})


class ResponseAssembler:
    """The Responses API's non-streaming body: its final event (``response.completed``,
    ``.incomplete`` or ``.failed``) carries the whole response object."""

    __slots__ = ("_final", "produced")

    def __init__(self) -> None:
        self._final: dict[str, Any] | None = None
        #: generated text in the ``*.delta`` events fed so far (as :attr:`ChatAssembler.produced`)
        self.produced = 0

    def feed(self, chunk: dict[str, Any]) -> None:
        delta = chunk.get("delta")
        if type(delta) is str:
            if delta:
                produced = len(delta)
                self.produced += produced if produced > TOKEN_CHARS else TOKEN_CHARS
            return
        if chunk.get("type") in _FINAL_RESPONSE_EVENTS and isinstance(chunk.get("response"), dict):
            self._final = chunk["response"]

    @property
    def finished(self) -> bool:
        return self._final is not None

    def result(self) -> dict[str, Any]:
        if self._final is None:
            raise ValueError("the response stream ended before its final event")
        return self._final
