"""The words the simulated model says: deterministic token lists, JSON answers, embeddings.

A "token" here is a short string; joining a sequence's tokens gives its text. Prompt length is
estimated as one token per four characters, as a rough tokenizer would; a fixed text (JSON for a
format, a tool call's arguments) is cut into tokens of four characters the same way.
"""

from __future__ import annotations

import math
import random
import zlib
from dataclasses import dataclass
from itertools import cycle, islice

__all__ = ["Answer", "build_answer", "embedding", "estimate_tokens", "json_skeleton_tokens"]

_WORDS = (
    " The", " grid", " has", " three", " shapes", ";", " each", " shape", " is", " recolored",
    " with", " the", " color", " of", " its", " largest", " neighbour", ",", " and", " empty",
    " cells", " stay", " black", ".", " Rows", " repeat", " every", " two", " steps", " so",
    " output", " mirrors", " input", " along", " diagonal", " axis",
)  # fmt: skip
_REASONING = (
    "We", " need", " to", " find", " the", " rule", ".", " Look", " at", " example", " one",
    ":", " colors", " move", " right", " until", " they", " hit", " a", " wall", ".", " Check",
    " example", " two", " to", " confirm", " this", " pattern", " holds", ".",
)  # fmt: skip

# Keys an ARC pipeline's pydantic structures read; values are plain, JSON-safe strings.
_JSON_HEAD = (
    '{"instructions": "Recolor every shape with the color of its largest neighbour.", '
    '"grid": [[0, 1, 2], [2, 1, 0], [1, 1, 1]], '
    '"revised_instructions": "Recolor each shape by its largest neighbour; keep black cells.", '
    '"reasoning_for_why_old_instructions_are_wrong": "'
)
_JSON_TAIL = '"}'
_HEAD_TOKENS = tuple(_JSON_HEAD[i : i + 4] for i in range(0, len(_JSON_HEAD), 4))
_TAIL_TOKENS = (_JSON_TAIL,)


def estimate_tokens(text_length: int) -> int:
    """Prompt tokens for ``text_length`` characters (about four characters a token)."""
    return max(1, math.ceil(text_length / 4))


def json_skeleton_tokens() -> int:
    """The fewest tokens a JSON answer takes."""
    return len(_HEAD_TOKENS) + len(_TAIL_TOKENS)


@dataclass(frozen=True, slots=True)
class Answer:
    """What the model would say in full, before ``max_tokens`` cuts it: reasoning, then content."""

    reasoning: list[str]
    content: list[str]

    def __len__(self) -> int:
        return len(self.reasoning) + len(self.content)


def _words(vocabulary: tuple[str, ...], n: int, offset: int) -> list[str]:
    start = offset % len(vocabulary)
    return list(islice(cycle(vocabulary[start:] + vocabulary[:start]), n))


def build_answer(
    tokens: int, *, reasoning_tokens: int, json_mode: bool = False, offset: int, fixed: str | None = None
) -> Answer:
    """An answer of ``tokens`` tokens (more only if a JSON answer needs its skeleton).

    With ``json_mode`` the content is a JSON object whose free-text field is padded with words so
    the whole answer has the requested length; a prefix of it is never valid JSON. A ``fixed``
    content is said as it is, whatever its length.
    """
    reasoning = _words(_REASONING, reasoning_tokens, offset)
    budget = tokens - reasoning_tokens
    if fixed is not None:
        content = [fixed[i : i + 4] for i in range(0, len(fixed), 4)]
    elif json_mode:
        padding = max(0, budget - json_skeleton_tokens())
        content = [*_HEAD_TOKENS, *_words(_WORDS[1:], padding, offset), *_TAIL_TOKENS]
    else:
        content = _words(_WORDS, budget, offset)
    return Answer(reasoning=reasoning, content=content)


def embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector for ``text``."""
    rng = random.Random(zlib.crc32(text.encode()))
    vector = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return [x / norm for x in vector]
