"""``resilient-llm`` command line: ``simulate``, ``probe`` and ``demo``.

Each subcommand lives in its own module exposing ``add_parser(subparsers)``, ``check_extras(args)``
(raises :class:`~resilient_llm.cli._extras.MissingExtra` when a pip extra it needs is not installed)
and ``run(args) -> int``. Building the parser imports no optional dependency, so ``--help`` and
``--version`` always work.
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
from collections.abc import Sequence
from importlib import metadata

from .._version import __version__
from ._extras import EXIT_MISSING_EXTRA, MissingExtra

__all__ = ["build_parser", "main", "version_text"]

_SUBCOMMANDS = ("simulate", "probe", "demo")


def version_text() -> str:
    """``resilient-llm 0.1.0 (openai 3.57.0, Python 3.11.7)``."""
    try:
        openai_version = metadata.version("openai")
    except metadata.PackageNotFoundError:  # pragma: no cover - openai is a core dependency
        openai_version = "not installed"
    return f"resilient-llm {__version__} (openai {openai_version}, Python {platform.python_version()})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="resilient-llm",
        description="Tools around resilient_llm: a vLLM simulator, a server probe and the demo.",
        epilog="Run 'resilient-llm COMMAND --help' for a command's options.",
    )
    parser.add_argument("--version", action="version", version=version_text())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in _SUBCOMMANDS:
        module = importlib.import_module(f"resilient_llm.cli._{name}")
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    module = importlib.import_module(f"resilient_llm.cli._{args.command}")
    try:
        module.check_extras(args)
    except MissingExtra as exc:
        print(exc, file=sys.stderr)
        return EXIT_MISSING_EXTRA
    code: int = module.run(args)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
