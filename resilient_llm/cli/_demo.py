"""``resilient-llm demo``: replay the incident against the built-in simulator, before and after."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def add_parser(subparsers: Any) -> None:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "demo",
        help="replay the incident against the simulator: the incident's settings vs this library's defaults",
        description=(
            "Runs an ARC-shaped workload (8 tasks started together, rounds of parallel calls, long-tailed "
            "answers) against the built-in vLLM simulator with the incident's faults, first with the "
            "incident's client settings, then with resilient_llm's defaults; prints a table and writes "
            "demo.json and demo.png. Needs no GPU and no network."
        ),
    )
    p.add_argument(
        "--scale", type=float, default=0.05, help="real seconds per simulated second (default 0.05)"
    )
    p.add_argument(
        "--capacity", type=int, default=16, help="simulated server's concurrent sequences (default 16)"
    )
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    p.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder (default ./demo-out)")
    p.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    p.add_argument("--quick", action="store_true", help="a smaller workload (for a smoke test)")


def run(args: argparse.Namespace) -> int:
    from ..demo._run import DemoConfig, run_demo
    from ..demo._workload import ArcWorkload

    if not (0 < args.scale <= 1):
        raise SystemExit(f"--scale must be in (0, 1], got {args.scale}")
    workload = ArcWorkload(rounds=2, calls_per_round=4) if args.quick else ArcWorkload()
    cfg = DemoConfig(
        scale=args.scale,
        capacity=args.capacity,
        seed=args.seed,
        out_dir=args.out,
        chart=not args.no_chart,
        workload=workload,
    )
    results = asyncio.run(run_demo(cfg))
    library = results[-1]
    return 0 if library.count("ok") == len(library.outcomes) else 1
