"""Client overhead: requests per second for non-streaming chat calls against an instant local server.

The server runs in a process of its own (pinned to one CPU when the machine has two or more) and
answers at once, so what is measured is each client's own cost per call. All clients are
measured at each concurrency level side by side: a warm-up first, then several rounds in rotating
order (A B C, B C A, ...) so that drift on a shared machine spreads over all of them. The report
gives each client's median over the rounds and its ratio to the official SDK and to plain aiohttp
(the practical limit of an asyncio HTTP client in Python).

    python benchmarks/bench_overhead.py                       # defaults: 8, 64, 256 concurrent
    python benchmarks/bench_overhead.py --concurrency 64 --requests 2000 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import math
import os
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._clients import CLIENTS, DEFAULT_CLIENTS, Call, ClientKind
from benchmarks._machine import REPO_ROOT, command_line, describe, machine_info, write_results
from benchmarks._servers import SERVER_KINDS, ServerUnavailable, pin, running_server, split_cpus

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "overhead.json"
DEFAULT_CHART = REPO_ROOT / "docs" / "img" / "bench-overhead.png"
SDK = "openai"
LIMIT = "aiohttp"


@dataclass
class Cell:
    """One client at one concurrency level."""

    client: str
    label: str
    concurrency: int
    status: str = "ok"
    rounds_rps: list[float] = field(default_factory=list)
    requests: int = 0

    @property
    def median_rps(self) -> float | None:
        return statistics.median(self.rounds_rps) if self.rounds_rps and self.status == "ok" else None


@dataclass(frozen=True)
class RoundResult:
    requests: int
    seconds: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else math.inf


async def drive(call: Call, *, concurrency: int, requests: int, timeout: float) -> RoundResult:
    """Run ``requests`` calls through ``concurrency`` workers; fail on the first error or on timeout."""
    remaining = requests

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            await call()

    workers = min(concurrency, requests)
    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(workers))), timeout)
    return RoundResult(requests=requests, seconds=time.perf_counter() - started)


def rotation(items: Sequence[str], round_index: int) -> list[str]:
    """``items`` rotated left by ``round_index``: every item leads one round in turn."""
    if not items:
        return []
    shift = round_index % len(items)
    return [*items[shift:], *items[:shift]]


def per_round(total: int, rounds: int) -> int:
    return max(1, math.ceil(total / rounds))


async def bench_level(
    kinds: Sequence[ClientKind], base_url: str, concurrency: int, args: argparse.Namespace
) -> list[Cell]:
    cells = {kind.name: Cell(kind.name, kind.label, concurrency) for kind in kinds}
    calls: dict[str, Call] = {}
    settle_until = 0.0
    async with contextlib.AsyncExitStack() as stack:
        for kind in kinds:
            reason = kind.unavailable_reason()
            if reason:
                cells[kind.name].status = reason
                continue
            try:
                call = await stack.enter_async_context(kind.open(base_url))
                settled_at = time.perf_counter() + kind.settle_seconds()
                await drive(call, concurrency=concurrency, requests=args.warmup, timeout=args.round_timeout)
            except Exception as exc:
                cells[kind.name].status = f"error: {type(exc).__name__}: {exc}"[:200]
                continue
            calls[kind.name] = call
            settle_until = max(settle_until, settled_at)
        # A slow-start ramp (resilient_llm's default) must be over before its steady state is measured.
        await asyncio.sleep(max(0.0, settle_until - time.perf_counter()))
        size = per_round(args.requests, args.rounds)
        for round_index in range(args.rounds):
            for name in rotation(list(calls), round_index):
                cell = cells[name]
                if cell.status != "ok":
                    continue
                gc.collect()
                try:
                    result = await drive(
                        calls[name], concurrency=concurrency, requests=size, timeout=args.round_timeout
                    )
                except Exception as exc:
                    cell.status = f"error: {type(exc).__name__}: {exc}"[:200]
                    continue
                cell.rounds_rps.append(result.rps)
                cell.requests += result.requests
            done = ", ".join(
                f"{name} {cells[name].rounds_rps[-1]:,.0f}" for name in calls if cells[name].rounds_rps
            )
            print(f"  c={concurrency} round {round_index + 1}/{args.rounds}: {done} req/s", file=sys.stderr)
    return list(cells.values())


def ratios(cells: Sequence[Cell]) -> list[dict[str, object]]:
    """The JSON rows: each cell with its median and its ratios to the SDK and to aiohttp."""
    by_level: dict[int, dict[str, Cell]] = {}
    for cell in cells:
        by_level.setdefault(cell.concurrency, {})[cell.client] = cell
    rows: list[dict[str, object]] = []
    for cell in cells:
        level = by_level[cell.concurrency]
        median = cell.median_rps
        rows.append(
            {
                "client": cell.client,
                "label": cell.label,
                "concurrency": cell.concurrency,
                "status": cell.status,
                "requests": cell.requests,
                "rounds_rps": [round(value, 1) for value in cell.rounds_rps],
                "median_rps": None if median is None else round(median, 1),
                "vs_sdk": ratio(median, level.get(SDK)),
                "vs_aiohttp": ratio(median, level.get(LIMIT)),
            }
        )
    return rows


def ratio(value: float | None, reference: Cell | None) -> float | None:
    base = reference.median_rps if reference else None
    if value is None or not base:
        return None
    return round(value / base, 3)


def table(rows: Sequence[dict[str, object]]) -> str:
    header = (
        f"{'conc':>5}  {'client':<34} {'median req/s':>12} {'min-max':>15} {'vs SDK':>7} {'vs aiohttp':>10}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        rounds = row["rounds_rps"]
        assert isinstance(rounds, list)
        if row["status"] != "ok":
            lines.append(f"{row['concurrency']:>5}  {row['label']!s:<34} {row['status']}")
            continue
        spread = f"{min(rounds):,.0f}-{max(rounds):,.0f}"
        lines.append(
            f"{row['concurrency']:>5}  {row['label']!s:<34} {row['median_rps']:>12,.0f} {spread:>15}"
            f" {fmt_ratio(row['vs_sdk']):>7} {fmt_ratio(row['vs_aiohttp']):>10}"
        )
    return "\n".join(lines)


def fmt_ratio(value: object) -> str:
    return f"{value:.2f}x" if isinstance(value, float) else "-"


def chart(rows: Sequence[dict[str, object]], path: Path, subtitle: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    levels = sorted({int(str(row["concurrency"])) for row in rows})
    clients: list[str] = []
    for row in rows:
        if row["median_rps"] is not None and str(row["label"]) not in clients:
            clients.append(str(row["label"]))
    if not clients:
        return
    width = 0.8 / len(clients)
    figure, axes = plt.subplots(figsize=(10, 5.5), dpi=110)
    for index, label in enumerate(clients):
        xs, heights, lows, highs = [], [], [], []
        for position, level in enumerate(levels):
            match = [r for r in rows if r["label"] == label and r["concurrency"] == level]
            if not match or match[0]["median_rps"] is None:
                continue
            rounds = match[0]["rounds_rps"]
            assert isinstance(rounds, list)
            median = float(str(match[0]["median_rps"]))
            xs.append(position + (index - (len(clients) - 1) / 2) * width)
            heights.append(median)
            lows.append(median - min(rounds))
            highs.append(max(rounds) - median)
        bars = axes.bar(xs, heights, width * 0.95, label=label, yerr=[lows, highs], capsize=2)
        axes.bar_label(bars, labels=[f"{h:,.0f}" for h in heights], fontsize=7, padding=2)
    axes.set_xticks(range(len(levels)), [f"{level} concurrent" for level in levels])
    axes.set_ylabel("requests / s (median of rounds; bars show min-max)")
    axes.set_title(f"Non-streaming chat calls against an instant local server\n{subtitle}", fontsize=10)
    axes.legend(fontsize=8)
    axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--server", choices=SERVER_KINDS, default="stub", help="which instant server to run")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[8, 64, 256], help="concurrency levels")
    parser.add_argument(
        "--requests", type=int, default=2500, help="measured requests per client and level, over all rounds"
    )
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per client and level")
    parser.add_argument("--warmup", type=int, default=300, help="warm-up requests per client and level")
    parser.add_argument(
        "--clients",
        nargs="+",
        choices=sorted(CLIENTS),
        default=list(DEFAULT_CLIENTS),
        help="clients to compare",
    )
    parser.add_argument(
        "--pin",
        choices=("split", "none"),
        default="split",
        help="split: server on the last CPU, client on the others; none: let the OS place both",
    )
    parser.add_argument(
        "--round-timeout", type=float, default=120.0, help="seconds before a round counts as failed"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART, help="PNG chart file")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("requests", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if any(level < 1 for level in args.concurrency):
        parser.error(f"--concurrency values must be >= 1, got {args.concurrency}")
    if not args.round_timeout > 0:
        parser.error(f"--round-timeout must be > 0, got {args.round_timeout}")


async def run_all(kinds: Sequence[ClientKind], base_url: str, args: argparse.Namespace) -> list[Cell]:
    cells: list[Cell] = []
    for level in args.concurrency:
        cells.extend(await bench_level(kinds, base_url, level, args))
    return cells


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    command = command_line(None if argv is None else [sys.argv[0], *argv])
    info = machine_info()
    server_cpus, client_cpus = split_cpus() if args.pin == "split" else (None, None)
    placement = (
        f"server pinned to CPU {sorted(server_cpus)}, client to CPU {sorted(client_cpus)}"
        if server_cpus and client_cpus
        else "server and client placed by the OS"
    )
    print(describe(info, command))
    print(f"server: {args.server} in its own process; {placement}; client and server share this machine")
    print(
        f"per client and level: {args.warmup} warm-up requests, then {args.rounds} rounds of "
        f"{per_round(args.requests, args.rounds)} requests in rotating order",
        flush=True,
    )
    kinds = [CLIENTS[name] for name in args.clients]
    started = time.perf_counter()
    try:
        with running_server(args.server, extra_args=server_args(args.server), cpus=server_cpus) as server:
            pin(os.getpid(), client_cpus)
            cells = asyncio.run(run_all(kinds, server.base_url, args))
    except ServerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    rows = ratios(cells)
    print()
    print(table(rows))
    elapsed = time.perf_counter() - started
    print(f"\n{elapsed:.0f} s in all")
    document = {
        "benchmark": "overhead",
        "command": command,
        "machine": info,
        "server": args.server,
        "placement": placement,
        "settings": {
            "concurrency": args.concurrency,
            "requests": args.requests,
            "rounds": args.rounds,
            "warmup": args.warmup,
            "clients": args.clients,
        },
        "elapsed_seconds": round(elapsed, 1),
        "results": rows,
    }
    write_results(args.output, document)
    print(f"results: {args.output}")
    if not args.no_chart:
        chart(rows, args.chart, f"{info['nproc']} CPUs ({info['cpu_model']}), {placement}")
        print(f"chart: {args.chart}")
    return 0


def server_args(kind: str) -> list[str]:
    return ["--instant"] if kind == "simulator" else []


if __name__ == "__main__":
    sys.exit(main())
