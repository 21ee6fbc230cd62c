"""Code blocks of README.md and docs/: find them, and the convention that says which ones run.

The convention, for whoever writes the docs:

* A fenced ``python`` block is a program, or the next part of one: the runnable blocks of a page run in
  order, in one process and one namespace, as a reader who pastes them one after the other would run
  them. Top-level ``await`` is allowed outside README.md (as in ``python -m asyncio`` or a notebook).
  ``http://localhost:8000`` and ``http://127.0.0.1:8000`` reach the simulator the test starts.
* A block that is not meant to run (a fragment of someone's pipeline, a script for a real GPU server)
  has an HTML comment on the line before its fence, invisible on the rendered page::

      <!-- not run: a fragment of the pipeline's main coroutine -->
      ```python

  It is still compiled, so a syntax error fails the test.
* ``bash``/``sh``/``console`` blocks are not run (installs, servers that run until Ctrl-C), but every
  ``resilient-llm ...`` command in them is parsed by the real command line, and every
  ``examples/...`` or ``scripts/...`` file they name must exist.
* Every line of every code block fits the docs' column: at most :data:`MAX_LINE` characters.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MAX_LINE = 100
NOT_RUN = re.compile(r"^\s*<!--\s*not run:\s*\S.*-->\s*$")
_FENCE = re.compile(
    r"^(?P<indent>[ ]*)(?P<fence>`{3,}|~{3,})(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)(?P=fence)[ ]*$",
    re.M | re.S,
)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    runs: bool

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for match in _FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        before = [ln for ln in text[: match.start()].splitlines() if ln.strip()]
        marked = bool(before) and bool(NOT_RUN.match(before[-1]))
        language = match["info"].strip().split(" ")[0].lower()
        indent = match["indent"]
        code = "\n".join(ln.removeprefix(indent) for ln in match["body"].splitlines()) + "\n"
        found.append(Block(path, line, language, code, runs=language == "python" and not marked))
    return found


def shell_commands(code: str, *, prompts_only: bool = False) -> list[list[str]]:
    """The simple commands of a shell block as word lists: continuation lines joined, comments and ``$``
    prompts dropped, split at ``&&``, ``||``, ``;`` and ``|`` outside quotes. ``prompts_only``: only the
    lines typed after a ``$`` prompt (a block of output)."""
    commands: list[list[str]] = []
    for line in re.sub(r"\\\n\s*", " ", code).splitlines():
        if prompts_only and not line.startswith("$ "):
            continue
        lexer = shlex.shlex(line.strip().removeprefix("$ "), posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        words: list[str] = []
        for token in lexer:
            if token in ("&&", "||", ";", "|", "&"):
                commands.append(words)
                words = []
            else:
                words.append(token)
        commands.append(words)
    return [words for words in commands if words]
