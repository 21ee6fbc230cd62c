"""Memory per queued call: what 10,000 calls waiting behind the limiter cost.

A slow local server (its own process) holds every answer open for minutes, trickling tokens so no
stall detector fires. The client, limited to a few calls in flight (``max_concurrency=8``), is
handed 10,000 more calls; they wait in its FIFO limiter. The growth of the process's memory from
just before those calls to when they are all queued, divided by their number, is the cost of one
queued call. Three measures, each in a fresh process:

* peak RSS (``resource.getrusage().ru_maxrss``) growth;
* current RSS (``VmRSS``) growth;
* Python heap growth (``tracemalloc``; a separate run, as tracing itself costs memory and time).

The same is done for a floor: a bare ``asyncio.Semaphore`` in front of plain aiohttp, the least a
queued coroutine can cost. Target for resilient_llm: at most 5 KB per queued call.

    python benchmarks/bench_memory.py
    python benchmarks/bench_memory.py --calls 2000 --modes resilient_llm
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._clients import API_KEY, request_body, resilient_client_class
from benchmarks._machine import REPO_ROOT, command_line, describe, machine_info, write_results
from benchmarks._servers import SERVER_KINDS, ServerUnavailable, running_server, split_cpus

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "memory.json"
MODES = ("resilient_llm", "floor")
TARGET_KB = 5.0
# The slow server holds each call in flight for a minute or more, sending a token now and then so
# that no stall detector fires: the stub sends 200 chunks 0.5 s apart; the simulator a token a
# second (the requests' max_tokens=64 caps the answer).
SLOW_SERVER_ARGS = ("--token-interval", "0.5", "--chunks", "200")
SIMULATOR_SLOW_ARGS = ("--token-time", "1.0", "--prefill-time-per-token", "0")


def rss_kb() -> int:
    """Current resident set size in KB (Linux ``/proc/self/status``), or 0 where unknown."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kb() -> int:
    """Peak resident set size in KB (``ru_maxrss`` is KB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def snapshot(traced: bool) -> dict[str, Any]:
    gc.collect()
    shot: dict[str, Any] = {"rss_kb": rss_kb(), "peak_rss_kb": peak_rss_kb()}
    if traced:
        shot["traced_bytes"] = tracemalloc.get_traced_memory()[0]
        shot["trace"] = tracemalloc.take_snapshot()
    return shot


def short_path(filename: str) -> str:
    path = Path(filename)
    if path.is_relative_to(REPO_ROOT):
        return str(path.relative_to(REPO_ROOT))
    parts = path.parts
    for marker in ("site-packages", "lib"):
        if marker in parts:
            return str(Path(*parts[len(parts) - parts[::-1].index(marker) :]))
    return filename


def top_sites(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, calls: int, count: int) -> list[str]:
    """The ``count`` source lines whose allocations grew most, in bytes per queued call."""
    lines = []
    for stat in after.compare_to(before, "lineno")[:count]:
        frame = stat.traceback[0]
        lines.append(f"{stat.size_diff / calls:8.1f} B/call  {short_path(frame.filename)}:{frame.lineno}")
    return lines


async def queued_resilient(base_url: str, calls: int, max_concurrency: int, settle: float) -> dict[str, Any]:
    client_class = resilient_client_class()
    if client_class is None:
        raise RuntimeError("resilient_llm.AsyncOpenAI is not available")
    client = client_class(api_key=API_KEY, base_url=base_url, max_concurrency=max_concurrency)

    async def call() -> None:
        await client.chat.completions.create(**request_body())

    def queued() -> int:
        count: int = client.stats().queued
        return count

    try:
        return await measure(call, calls=calls, max_concurrency=max_concurrency, queued=queued, settle=settle)
    finally:
        await client.close()


async def queued_floor(base_url: str, calls: int, max_concurrency: int, settle: float) -> dict[str, Any]:
    import aiohttp

    semaphore = asyncio.Semaphore(max_concurrency)
    waiting = 0
    url = f"{base_url}/chat/completions"
    headers = {"Authorization": f"Bearer {API_KEY}"}
    async with aiohttp.ClientSession(headers=headers) as session:

        async def call() -> None:
            nonlocal waiting
            body = {**request_body(), "stream": True}
            waiting += 1
            async with semaphore:
                waiting -= 1
                async with session.post(url, json=body) as response:
                    await response.read()

        return await measure(
            call, calls=calls, max_concurrency=max_concurrency, queued=lambda: waiting, settle=settle
        )


async def measure(
    call: Callable[[], Coroutine[Any, Any, None]],
    *,
    calls: int,
    max_concurrency: int,
    queued: Callable[[], int],
    settle: float,
    top: int = 12,
) -> dict[str, Any]:
    """Fill the slots, take a baseline, queue ``calls`` more, take the reading, cancel everything."""
    traced = tracemalloc.is_tracing()
    tasks: list[asyncio.Task[None]] = [asyncio.create_task(call()) for _ in range(max_concurrency)]
    await asyncio.sleep(settle)
    before = snapshot(traced)
    started = time.perf_counter()
    tasks += [asyncio.create_task(call()) for _ in range(calls)]
    deadline = time.perf_counter() + 60.0
    # The count lives in the client under test, which has no event to wait on: poll it.
    while queued() < calls and time.perf_counter() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.05)
    queue_seconds = time.perf_counter() - started
    await asyncio.sleep(settle)
    after = snapshot(traced)
    failed = [task for task in tasks if task.done() and task.exception() is not None]
    seen_queued = queued()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    result: dict[str, Any] = {
        "calls": calls,
        "queued_seen": seen_queued,
        "failed_early": len(failed),
        "seconds_to_queue": round(queue_seconds, 3),
        "rss_kb_before": before["rss_kb"],
        "rss_kb_after": after["rss_kb"],
        "rss_kb_per_call": round((after["rss_kb"] - before["rss_kb"]) / calls, 3),
        "peak_rss_kb_before": before["peak_rss_kb"],
        "peak_rss_kb_after": after["peak_rss_kb"],
        "peak_rss_kb_per_call": round((after["peak_rss_kb"] - before["peak_rss_kb"]) / calls, 3),
    }
    if traced:
        result["traced_kb_per_call"] = round(
            (after["traced_bytes"] - before["traced_bytes"]) / 1024 / calls, 3
        )
        result["top_sites"] = top_sites(before["trace"], after["trace"], calls, top)
    if failed:
        first = failed[0].exception()
        result["first_error"] = f"{type(first).__name__}: {first}"[:300]
    return result


def child(args: argparse.Namespace) -> int:
    """One measurement in this (fresh) process; prints one JSON object."""
    if args.traced:
        tracemalloc.start()
    runner = queued_resilient if args.child == "resilient_llm" else queued_floor
    result = asyncio.run(
        asyncio.wait_for(
            runner(args.base_url, args.calls, args.max_concurrency, args.settle), args.child_timeout
        )
    )
    print(json.dumps({"mode": args.child, "traced": args.traced, **result}))
    return 0


def run_child(mode: str, base_url: str, args: argparse.Namespace, *, traced: bool) -> dict[str, Any]:
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--base-url",
        base_url,
        "--calls",
        str(args.calls),
        "--max-concurrency",
        str(args.max_concurrency),
        "--settle",
        str(args.settle),
        "--child-timeout",
        str(args.child_timeout),
    ]
    if traced:
        command.append("--traced")
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=args.child_timeout + 30,
            check=False,
            cwd=REPO_ROOT,
        )
    except subprocess.TimeoutExpired:
        return {"mode": mode, "traced": traced, "status": "error: timed out"}
    if done.returncode != 0:
        tail = done.stderr.strip().splitlines()[-1:] or ["no output"]
        return {"mode": mode, "traced": traced, "status": f"error: {tail[0]}"[:300]}
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["status"] = "ok"
    return result


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per mode: the three KB-per-call figures (from the plain and the traced run)."""
    summary: dict[str, dict[str, Any]] = {}
    for row in rows:
        entry = summary.setdefault(row["mode"], {"status": "ok"})
        if row.get("status") != "ok":
            entry["status"] = row.get("status")
            continue
        if row["traced"]:
            entry["traced_kb_per_call"] = row.get("traced_kb_per_call")
        else:
            entry["peak_rss_kb_per_call"] = row["peak_rss_kb_per_call"]
            entry["rss_kb_per_call"] = row["rss_kb_per_call"]
            entry["queued_seen"] = row["queued_seen"]
    return summary


def table(summary: dict[str, dict[str, Any]], calls: int) -> str:
    header = f"{'mode':<16} {'queued':>8} {'peak RSS KB/call':>17} {'RSS KB/call':>12} {'heap KB/call':>13}"
    lines = [header, "-" * len(header)]
    for mode, entry in summary.items():
        if entry["status"] != "ok":
            lines.append(f"{mode:<16} {entry['status']}")
            continue
        queued = f"{entry.get('queued_seen', 0)}/{calls}"
        lines.append(
            f"{mode:<16} {queued:>8} {fmt(entry.get('peak_rss_kb_per_call')):>17}"
            f" {fmt(entry.get('rss_kb_per_call')):>12} {fmt(entry.get('traced_kb_per_call')):>13}"
        )
    return "\n".join(lines)


def fmt(value: object) -> str:
    return f"{value:.2f}" if isinstance(value, (int, float)) else "-"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--server", choices=SERVER_KINDS, default="stub", help="which slow server to run")
    parser.add_argument("--calls", type=int, default=10_000, help="calls queued behind the limiter")
    parser.add_argument("--max-concurrency", type=int, default=8, help="calls in flight")
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="what to measure")
    parser.add_argument(
        "--settle", type=float, default=1.0, help="seconds to let the loop settle before readings"
    )
    parser.add_argument("--child-timeout", type=float, default=120.0, help="seconds one measurement may take")
    parser.add_argument("--target-kb", type=float, default=TARGET_KB, help="target KB per queued call")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.calls < 1 or args.max_concurrency < 1:
        parser.error(
            f"--calls and --max-concurrency must be >= 1, got {args.calls} and {args.max_concurrency}"
        )
    if args.child:
        return child(args)
    command = command_line(None if argv is None else [sys.argv[0], *argv])
    info = machine_info()
    print(describe(info, command))
    print(
        f"{args.calls:,} calls queued behind max_concurrency={args.max_concurrency}; "
        f"slow {args.server} server in its own process; each figure from a fresh process",
        flush=True,
    )
    server_cpus, _ = split_cpus()
    slow_args = SLOW_SERVER_ARGS if args.server == "stub" else SIMULATOR_SLOW_ARGS
    rows: list[dict[str, Any]] = []
    try:
        with running_server(args.server, extra_args=slow_args, cpus=server_cpus) as server:
            for mode in args.modes:
                for traced in (False, True):
                    rows.append(run_child(mode, server.base_url, args, traced=traced))
                    status = rows[-1].get("status")
                    print(f"  {mode} ({'tracemalloc' if traced else 'rss'}): {status}", file=sys.stderr)
    except ServerUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    summary = summarize(rows)
    print()
    print(table(summary, args.calls))
    verdict = verdict_line(summary.get("resilient_llm"), args.target_kb)
    print(verdict)
    for row in rows:
        if row.get("top_sites"):
            print(f"\nwhere a queued {row['mode']} call's memory goes (tracemalloc, top source lines):")
            print("\n".join(f"  {line}" for line in row["top_sites"]))
    document = {
        "benchmark": "memory",
        "command": command,
        "machine": info,
        "server": args.server,
        "settings": {
            "calls": args.calls,
            "max_concurrency": args.max_concurrency,
            "target_kb": args.target_kb,
        },
        "summary": summary,
        "verdict": verdict,
        "runs": rows,
    }
    write_results(args.output, document)
    print(f"results: {args.output}")
    return 0


def verdict_line(entry: dict[str, Any] | None, target_kb: float) -> str:
    if not entry or entry.get("status") != "ok" or entry.get("peak_rss_kb_per_call") is None:
        return "resilient_llm: not measured"
    worst = max(
        value
        for value in (
            entry.get("peak_rss_kb_per_call"),
            entry.get("rss_kb_per_call"),
            entry.get("traced_kb_per_call"),
        )
        if isinstance(value, (int, float))
    )
    status = "meets" if worst <= target_kb else "misses"
    return (
        f"resilient_llm: {worst:.2f} KB per queued call (the largest of the three figures) "
        f"{status} the {target_kb:g} KB target"
    )


if __name__ == "__main__":
    sys.exit(main())
