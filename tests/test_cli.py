"""``resilient-llm`` as a whole: ``--version``, help that shows defaults, one name per idea, old names
still working, and a one-line message (never a traceback) when a subcommand's pip extra is missing."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

from resilient_llm import __version__
from resilient_llm.cli import _demo, _simulate, build_parser, main
from resilient_llm.cli._extras import EXIT_MISSING_EXTRA
from resilient_llm.testing import FAULT_KINDS


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"resilient-llm {__version__} (openai ")


@pytest.mark.parametrize("command", ["simulate", "probe", "demo"])
def test_every_option_shows_its_default(command: str) -> None:
    parser = subcommands(build_parser())[command]
    for action in parser._actions:
        if (
            action.help == argparse.SUPPRESS
            or isinstance(action, argparse._HelpAction)
            or not action.option_strings
        ):
            continue
        assert action.help and "default" in action.help, f"{command} {action.option_strings}: {action.help!r}"


def test_simulate_help_lists_every_fault_kind() -> None:
    assert set(_simulate.FAULT_HELP) == set(FAULT_KINDS), "describe every fault kind in FAULT_HELP"
    text = subcommands(build_parser())["simulate"].format_help()
    for kind in FAULT_KINDS:
        assert f"\n  {kind} " in text, kind


def test_the_time_scale_has_one_name_and_the_old_one_still_works() -> None:
    parsers = subcommands(build_parser())
    for command in ("simulate", "demo"):
        assert "--time-scale" in parsers[command].format_help()
    assert "--scale" not in parsers["demo"].format_help().replace("--time-scale", "")
    assert parsers["demo"].parse_args(["--scale", "0.1"]).time_scale == 0.1
    assert parsers["demo"].parse_args(["--time-scale", "0.2"]).time_scale == 0.2
    assert parsers["demo"].parse_args([]).time_scale == _demo.DEFAULT_TIME_SCALE


BLOCK_IMPORTS = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ImportError(f"blocked {{name}}")
        return None

sys.meta_path.insert(0, Block())
from resilient_llm.cli import main
sys.exit(main(sys.argv[1:]))
"""


def run_without(blocked: set[str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCK_IMPORTS.format(blocked=blocked), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "COLUMNS": "100"},
        check=False,
    )


@pytest.mark.parametrize(
    ("blocked", "argv", "extra"),
    [
        ({"rich"}, ["probe", "http://127.0.0.1:9/v1"], "cli"),
        ({"rich"}, ["demo", "--quick"], "demo"),
        ({"matplotlib"}, ["demo", "--quick"], "demo"),
    ],
)
def test_a_missing_extra_is_one_line_naming_it(blocked: set[str], argv: list[str], extra: str) -> None:
    result = run_without(blocked, *argv)
    assert result.returncode == EXIT_MISSING_EXTRA, result.stderr
    assert result.stderr == (
        f'resilient-llm {argv[0]} needs the "{extra}" extra: pip install "resilient-llm[{extra}]"\n'
    )
    assert result.stdout == ""


def test_help_and_version_need_no_extra() -> None:
    for argv in (["--help"], ["--version"], ["probe", "--help"], ["demo", "--help"], ["simulate", "--help"]):
        result = run_without({"rich", "matplotlib"}, *argv)
        assert result.returncode == 0, (argv, result.stderr)
        assert "Traceback" not in result.stderr
