"""Which optional dependencies (pip extras) each subcommand needs, and the one-line message when one is missing.

The core install carries no terminal UI or plotting library: ``probe`` takes ``rich`` from the ``cli``
extra, ``demo`` takes ``rich`` and ``matplotlib`` from the ``demo`` extra, ``simulate`` needs nothing
more. A missing extra ends the command with a line naming it, never a traceback.
"""

from __future__ import annotations

import importlib

__all__ = ["EXIT_MISSING_EXTRA", "MissingExtra", "missing_extra_message", "require"]

#: Exit status when a subcommand's extra is not installed (1 and 2 mean down and saturated for probe).
EXIT_MISSING_EXTRA = 3


class MissingExtra(Exception):
    """A module of a subcommand's extra cannot be imported; ``str()`` is the message for the user."""


def missing_extra_message(command: str, extra: str) -> str:
    return f'resilient-llm {command} needs the "{extra}" extra: pip install "resilient-llm[{extra}]"'


def require(command: str, extra: str, *modules: str) -> None:
    """Import each of ``modules``; raise :class:`MissingExtra` naming ``extra`` for the first that fails."""
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError:
            raise MissingExtra(missing_extra_message(command, extra)) from None
