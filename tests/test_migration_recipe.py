"""The sed recipe of docs/migration.md ("Changing every file at once"), run as written on sample files.

Each sample imports the client one of the ways code does; after the recipe, importing the sample must
give a ``resilient_llm.AsyncOpenAI`` client and leave every other name what it was (still openai's).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .docsnippets import ROOT, blocks

CLIENT = 'client = AsyncOpenAI(base_url="http://localhost:8000/v1", api_key="EMPTY")\n'

#: file name -> (source before, source expected after)
SAMPLES: dict[str, tuple[str, str]] = {
    "plain.py": (
        "from openai import AsyncOpenAI\n\n" + CLIENT,
        "from resilient_llm import AsyncOpenAI\n\n" + CLIENT,
    ),
    "first_of_two.py": (
        "from openai import AsyncOpenAI, RateLimitError\n\n" + CLIENT,
        "from openai import RateLimitError\nfrom resilient_llm import AsyncOpenAI\n\n" + CLIENT,
    ),
    "last_of_two.py": (
        "from openai import APIError, AsyncOpenAI\n\n" + CLIENT,
        "from openai import APIError\nfrom resilient_llm import AsyncOpenAI\n\n" + CLIENT,
    ),
    "middle_of_three.py": (
        "from openai import APIError, AsyncOpenAI, RateLimitError\n\n" + CLIENT,
        "from openai import APIError, RateLimitError\nfrom resilient_llm import AsyncOpenAI\n\n" + CLIENT,
    ),
    "alias.py": (
        "from openai import AsyncOpenAI as Client\n\n" + CLIENT.replace("AsyncOpenAI(", "Client("),
        "from resilient_llm import AsyncOpenAI as Client\n\n" + CLIENT.replace("AsyncOpenAI(", "Client("),
    ),
    "module.py": (
        "import openai\n\n" + CLIENT.replace("AsyncOpenAI(", "openai.AsyncOpenAI("),
        "import openai\nimport resilient_llm\n\n"
        + CLIENT.replace("AsyncOpenAI(", "resilient_llm.AsyncOpenAI("),
    ),
    "pkg/nested.py": (
        "from openai import AsyncOpenAI\n\n" + CLIENT,
        "from resilient_llm import AsyncOpenAI\n\n" + CLIENT,
    ),
    # Left alone: the synchronous client, and a module that imports openai for something else.
    "sync.py": ("from openai import OpenAI\n", "from openai import OpenAI\n"),
    "other.py": ("import openai\n\nErr = openai.APIError\n", "import openai\n\nErr = openai.APIError\n"),
}


def recipe() -> str:
    """The block, run by ``bash -c`` as a reader pastes it into a shell."""
    found = [b.code for b in blocks(ROOT / "docs" / "migration.md") if "xargs -r sed" in b.code]
    assert len(found) == 1, "docs/migration.md has one sed recipe block"
    return found[0]


@pytest.mark.skipif(shutil.which("sed") is None or sys.platform == "darwin", reason="GNU sed")
def test_the_recipe_swaps_every_import_form(tmp_path: Path) -> None:
    for name, (before, _) in SAMPLES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(before)
    result = subprocess.run(
        ["bash", "-c", recipe()],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout == "", "nothing left to do by hand:\n" + result.stdout
    for name, (_, after) in SAMPLES.items():
        assert (tmp_path / name).read_text() == after, name

    # The rewritten modules import, with the library's client and openai's other names.
    check = """
import importlib, sys
import openai, resilient_llm
for name in ("plain", "first_of_two", "last_of_two", "middle_of_three", "alias", "module", "pkg.nested"):
    module = importlib.import_module(name)
    assert type(module.client) is resilient_llm.AsyncOpenAI, name
assert importlib.import_module("first_of_two").RateLimitError is openai.RateLimitError
assert importlib.import_module("last_of_two").APIError is openai.APIError
"""
    (tmp_path / "pkg" / "__init__.py").write_text("")
    imported = subprocess.run(
        [sys.executable, "-W", "error", "-c", check],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        check=False,
    )
    assert imported.returncode == 0, imported.stderr


@pytest.mark.skipif(shutil.which("sed") is None or sys.platform == "darwin", reason="GNU sed")
def test_the_recipe_reports_what_it_cannot_change(tmp_path: Path) -> None:
    (tmp_path / "multi.py").write_text("from openai import (\n    AsyncOpenAI,\n    RateLimitError,\n)\n")
    result = subprocess.run(
        ["bash", "-c", recipe()], cwd=tmp_path, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert "./multi.py:1:from openai import (" in result.stdout
