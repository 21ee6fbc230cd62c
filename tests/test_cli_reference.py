"""docs/reference/cli.md shows the real ``--help`` output of each command.

Each help text in the page is a ``text`` block right after a marker line::

    <!-- generated: resilient-llm simulate --help -->

The test compares it with what the command prints at 100 columns (word for word, so a Python version
that wraps differently still agrees). After changing an option, regenerate the blocks with::

    python -m tests.test_cli_reference
"""

from __future__ import annotations

import os
import re
import shlex
from contextlib import redirect_stdout, suppress
from io import StringIO
from pathlib import Path
from unittest import mock

from resilient_llm.cli import build_parser

PAGE = Path(__file__).resolve().parent.parent / "docs" / "reference" / "cli.md"
COLUMNS = "100"
_BLOCK = re.compile(r"^<!-- generated: (?P<command>[^\n]+?) -->\n```text\n(?P<text>.*?)^```$", re.M | re.S)


def help_text(command: str) -> str:
    words = shlex.split(command)
    assert words[0] == "resilient-llm" and words[-1] == "--help", command
    out = StringIO()
    with mock.patch.dict(os.environ, {"COLUMNS": COLUMNS}), redirect_stdout(out), suppress(SystemExit):
        build_parser().parse_args(words[1:])
    return out.getvalue()


def words(text: str) -> list[str]:
    return text.split()


def test_cli_reference_shows_the_real_help() -> None:
    blocks = list(_BLOCK.finditer(PAGE.read_text(encoding="utf-8")))
    commands = [m["command"] for m in blocks]
    assert commands == [
        "resilient-llm --help",
        "resilient-llm simulate --help",
        "resilient-llm probe --help",
        "resilient-llm demo --help",
    ]
    for match in blocks:
        assert words(match["text"]) == words(help_text(match["command"])), (
            f"{match['command']} differs from docs/reference/cli.md: run python -m tests.test_cli_reference"
        )


def update() -> None:
    page = PAGE.read_text(encoding="utf-8")
    page = _BLOCK.sub(
        lambda m: f"<!-- generated: {m['command']} -->\n```text\n{help_text(m['command']).rstrip()}\n```",
        page,
    )
    PAGE.write_text(page, encoding="utf-8")


if __name__ == "__main__":
    update()
