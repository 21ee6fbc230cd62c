"""Every code block in README.md and docs/ that is meant to run runs, against the built-in simulator.

The convention (which blocks run, how to mark one that does not) is in :mod:`tests.docsnippets`.
Each page's runnable ``python`` blocks run in order in one fresh interpreter with warnings as errors;
the page passes when it exits 0 and prints nothing on stderr (so an unclosed client, which aiohttp
reports there, fails it).
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from resilient_llm.cli import build_parser
from resilient_llm.testing import SimulatorConfig, SimulatorThread

from .docsnippets import MAX_LINE, NOT_RUN, ROOT, Block, blocks, pages, shell_commands

#: Runs the blocks given as JSON ``[[where, code], ...]`` in one namespace; a block with top-level
#: ``await`` runs on one event loop kept for the whole page.
RUNNER = """
import ast, asyncio, json, sys

namespace = {"__name__": "__main__"}
loop = None
for where, code in json.loads(sys.argv[1]):
    compiled = compile(code, where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
    result = eval(compiled, namespace)
    if result is not None:
        loop = loop or asyncio.new_event_loop()
        loop.run_until_complete(result)
if loop is not None:
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
"""
PAGE_TIMEOUT = 45.0
_LOCAL_URL = re.compile(r"http://(?:localhost|127\.0\.0\.1):8000")


def all_blocks() -> list[Block]:
    return [block for page in pages() for block in blocks(page)]


def runnable_pages() -> list[Path]:
    return [page for page in pages() if any(b.runs for b in blocks(page))]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.fixture(scope="module")
def simulator() -> Iterator[SimulatorThread]:
    with SimulatorThread(SimulatorConfig(time_scale=0.01)) as sim:
        yield sim


@pytest.mark.integration
@pytest.mark.timeout(PAGE_TIMEOUT + 15)
@pytest.mark.parametrize("page", runnable_pages(), ids=rel)
def test_page_runs(page: Path, simulator: SimulatorThread) -> None:
    program = [(b.where, _LOCAL_URL.sub(simulator.url, b.code)) for b in blocks(page) if b.runs]
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RESILIENT_LLM_", "OPENAI_"))}
    result = subprocess.run(
        [sys.executable, "-W", "error", "-c", RUNNER, json.dumps(program)],
        capture_output=True,
        text=True,
        timeout=PAGE_TIMEOUT,
        cwd=ROOT,
        env={**clean, "LOCAL_VLLM_URL": simulator.base_url, "PYTHONDONTWRITEBYTECODE": "1"},
        check=False,
    )
    report = f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    assert result.returncode == 0, report
    assert result.stderr == "", report


def test_blocks_not_run_still_compile() -> None:
    for block in all_blocks():
        if block.language == "python" and not block.runs:
            compile(block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)


def test_readme_runs_without_top_level_await() -> None:
    runnable = [b for b in blocks(ROOT / "README.md") if b.runs]
    assert runnable, "README.md has a runnable example"
    for block in runnable:
        compile(block.code, block.where, "exec")  # a SyntaxError here: 'await' outside a function


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff (a dev dependency) is not installed")
@pytest.mark.parametrize("page", runnable_pages(), ids=rel)
def test_page_uses_no_undefined_name(page: Path, tmp_path: Path) -> None:
    """Catches what running cannot: a name missing in a function that the page defines but never calls."""
    code = "\n".join(b.code for b in blocks(page) if b.runs)
    source = tmp_path / "page.py"
    source.write_text(code)
    result = subprocess.run(
        [
            "ruff",
            "check",
            "--isolated",
            "--output-format",
            "concise",
            "--select",
            "F821,F822,F823",
            "--no-cache",
            str(source),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stdout


def test_every_command_line_in_the_docs_parses() -> None:
    parser = build_parser()
    problems = []
    for block in all_blocks():
        if block.language not in ("bash", "sh", "shell", "console", "text"):
            continue
        for words in shell_commands(block.code, prompts_only=block.language == "text"):
            if words[0] == "resilient-llm":
                try:
                    parser.parse_args(words[1:])
                except SystemExit as exc:
                    if exc.code:
                        problems.append(f"{block.where}: {shlex.join(words)}")
            problems += [
                f"{block.where}: {word} does not exist"
                for word in words
                if word.startswith(("examples/", "scripts/")) and not (ROOT / word).exists()
            ]
    assert not problems, "\n".join(problems)


def test_code_lines_fit_the_column() -> None:
    long = [
        f"{block.where}: {len(line)} characters: {line}"
        for block in all_blocks()
        for line in block.code.splitlines()
        if len(line) > MAX_LINE
    ]
    assert not long, f"{len(long)} code lines longer than {MAX_LINE}:\n" + "\n".join(long)


def test_not_run_marks_are_on_python_blocks() -> None:
    """A ``not run`` comment before anything but a python block is a mistake (it would mean nothing)."""
    for page in pages():
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            if NOT_RUN.match(line) or line.strip().startswith("<!-- not run"):
                following = next((ln for ln in lines[i + 1 :] if ln.strip()), "")
                assert following.strip().startswith("```python"), f"{rel(page)}:{i + 1}"
