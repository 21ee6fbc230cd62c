"""``resilient-llm demo``: replay the incident against the built-in simulator, before and after.

Needs the ``demo`` extra (``rich`` for the progress bars and table, ``matplotlib`` for the chart).
``--time-scale`` is the name ``simulate`` uses too; ``--scale`` still works (hidden alias).
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import replace
from pathlib import Path
from typing import Any

from ._extras import require

__all__ = ["add_parser", "check_extras", "run"]

DEFAULT_TIME_SCALE = 0.05
DEFAULT_CAPACITY = 16
DEFAULT_SEED = 1
DEFAULT_OUT = Path("demo-out")


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="replay the incident against the simulator: the incident's settings vs this library's defaults",
        description=(
            "Runs an ARC-shaped workload (8 tasks started together, rounds of parallel calls, long-tailed "
            "answers) against the built-in vLLM simulator with the incident's faults, first with the "
            "incident's client settings (the official openai client), then with resilient_llm's defaults; "
            "prints a table and writes demo.json and demo.png. Needs no GPU and no network."
        ),
    )
    p.add_argument(
        "--time-scale",
        type=float,
        default=DEFAULT_TIME_SCALE,
        metavar="F",
        help=f"real seconds per simulated second (default {DEFAULT_TIME_SCALE:g})",
    )
    # The old name, kept working; not shown in --help.
    p.add_argument(
        "--scale", dest="time_scale", type=float, default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )
    p.add_argument(
        "--capacity",
        type=int,
        default=DEFAULT_CAPACITY,
        metavar="N",
        help=f"the simulated server's sequences running at once (default {DEFAULT_CAPACITY})",
    )
    p.add_argument(
        "--seed", type=int, default=DEFAULT_SEED, metavar="N", help=f"simulator seed (default {DEFAULT_SEED})"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        metavar="DIR",
        help=f"output folder for demo.json and demo.png (default ./{DEFAULT_OUT})",
    )
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart (default off)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="a smaller workload, 64 calls in about 20 s, for a smoke test (default off)",
    )


def check_extras(args: argparse.Namespace) -> None:
    """The progress bars and table need ``rich``; the chart needs ``matplotlib`` (the ``demo`` extra)."""
    require("demo", "demo", "rich", *(() if args.no_chart else ("matplotlib",)))


def run(args: argparse.Namespace) -> int:
    from ..demo._run import DemoConfig, run_demo

    if not (0 < args.time_scale <= 1):
        raise SystemExit(f"resilient-llm demo: error: --time-scale must be in (0, 1], got {args.time_scale}")
    cfg = DemoConfig.quick() if args.quick else DemoConfig()
    cfg = replace(
        cfg,
        scale=args.time_scale,
        capacity=args.capacity,
        seed=args.seed,
        out_dir=args.out,
        chart=not args.no_chart,
    )
    results = asyncio.run(run_demo(cfg))
    library = results[-1]
    return 0 if library.count("ok") == len(library.outcomes) else 1
