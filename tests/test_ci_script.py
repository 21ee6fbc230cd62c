""".ci/run: a valid bash script whose main step is exactly the README's test command."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from .docsnippets import ROOT, blocks, shell_commands

pytestmark = pytest.mark.timeout(10)

CI = ROOT / ".ci" / "run"


def readme_test_command() -> list[list[str]]:
    for block in blocks(ROOT / "README.md"):
        if block.language in ("bash", "sh"):
            for commands in (shell_commands(line) for line in block.code.splitlines()):
                if commands and commands[-1][:3] == ["python", "-m", "pytest"]:
                    return commands
    raise AssertionError("README.md shows no test command")


def function_body(script: str, name: str) -> str:
    match = re.search(rf"^{name}\(\) \{{\n(.*?)^\}}", script, re.M | re.S)
    assert match, f".ci/run has no function {name}"
    return match[1]


def test_the_main_step_runs_the_readmes_test_command() -> None:
    body = function_body(CI.read_text(), "readme_tests")
    ran = [c for line in body.splitlines() for c in shell_commands(line)]
    expected = readme_test_command()  # [[python -m pip install -e .[dev]], [python -m pytest]]
    assert ran[0] == expected[0] and ran[-1] == expected[-1]
    # in between only the instructor install the consumer tests need (pyproject's consumers extra says why)
    assert [c[:5] for c in ran[1:-1]] == [["python", "-m", "pip", "install", "--no-deps"]]


def test_the_oldest_openai_run_installs_the_floor_that_pyproject_declares() -> None:
    floor = re.search(r'"openai>=([0-9.]+)"', (ROOT / "pyproject.toml").read_text())
    assert floor
    body = function_body(CI.read_text(), "oldest_openai")
    assert f'"openai=={floor[1]}.0"' in body or f'"openai=={floor[1]}"' in body


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash on this machine")
def test_the_script_parses() -> None:
    result = subprocess.run(["bash", "-n", str(CI)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert Path(CI).stat().st_mode & 0o111, ".ci/run is executable"
