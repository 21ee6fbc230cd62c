"""Three replicas, one killed mid-run: the makespan against the ideal for the capacity that remains.

Three simulated vLLM replicas (``resilient-llm simulate``, each in a process of its own, pinned to the
server CPU) serve a backlog of ``--calls`` chat completions of ``--tokens`` tokens each, all submitted
at once. ``--kill-at`` simulated seconds into the run, replica 1's process is killed with SIGKILL: its
connections reset, the answers it was generating are lost, and new connections are refused for good.
Two clients run it side by side, each round against three fresh replicas with the same seeds:

* ``resilient_llm``: ``AsyncOpenAI(replicas=[a, b, c], max_concurrency=CAPACITY)``, this library's
  defaults with every duration scaled;
* ``round_robin``: what one writes without it — three ``openai.AsyncOpenAI`` clients with their
  defaults (retry sleeps and timeout scaled), calls dealt round robin, at most three times the
  capacity in flight (a semaphore).

The ideal makespan for the remaining capacity: the work (calls × tokens × token time, in sequence-
seconds) done with every sequence of the three replicas busy until the kill and of the two that are
left after it: ``kill_at + (work − 3·capacity·kill_at) / (2·capacity)``. It counts nothing for the
answers lost with the killed replica, the slow-start ramp, or the last calls finishing unevenly. A run
still going at ``--limit-factor`` times the ideal (5 real seconds at least) is stopped: its pending
calls count as hung. Reported
per client: the median over ``--rounds`` rounds (in rotating order) of calls ok / failed / hung,
makespan and makespan ÷ ideal, and how the calls were split over the replicas. Durations are
simulated seconds (``--time-scale`` real seconds each).

    python benchmarks/bench_replicas.py
    python benchmarks/bench_replicas.py --clients resilient_llm --rounds 1 --calls 240
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._machine import REPO_ROOT, command_line, describe, machine_info, write_results
from benchmarks._servers import RunningServer, ServerUnavailable, running_server, split_cpus

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "replicas.json"
MODEL = "openai/gpt-oss-20b"
REPLICAS = 3
KILLED = 1
TOKEN_TIME = 0.02  # the simulator's default, simulated seconds per token

LABELS = {
    "resilient_llm": "resilient_llm, replicas=[3 URLs]",
    "round_robin": "openai SDK x 3, round robin",
}

Call = Callable[[], Awaitable[None]]


def ideal_makespan(*, calls: int, tokens: int, capacity: int, kill_at: float) -> float:
    """Simulated seconds for the backlog with every sequence busy: three replicas, then two from ``kill_at``."""
    work = calls * tokens * TOKEN_TIME
    before = REPLICAS * capacity * kill_at
    if work <= before:
        return work / (REPLICAS * capacity)
    return kill_at + (work - before) / ((REPLICAS - 1) * capacity)


def simulator_args(args: argparse.Namespace, seed: int) -> list[str]:
    return [
        "--capacity", str(args.capacity), "--time-scale", str(args.time_scale), "--seed", str(seed),
        "--token-time", str(TOKEN_TIME), "--batch-slowdown", "0", "--prefill-time-per-token", "0",
        "--output-tokens", str(args.tokens), "--log-level", "WARNING",
    ]  # fmt: skip


@contextlib.contextmanager
def replicas(args: argparse.Namespace) -> Iterator[list[RunningServer]]:
    """Three fresh simulated replicas, each in its own process, on the server CPU."""
    server_cpus, _ = split_cpus()
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                running_server("simulator", extra_args=simulator_args(args, args.seed + i), cpus=server_cpus)
            )
            for i in range(REPLICAS)
        ]


@contextlib.asynccontextmanager
async def open_client(name: str, urls: list[str], args: argparse.Namespace) -> Any:
    """Yield ``call()`` for client ``name``; close the client(s) afterwards."""
    scale = args.time_scale
    body: dict[str, Any] = {"model": MODEL, "messages": [{"role": "user", "content": "Solve the puzzle."}]}
    if name == "resilient_llm":
        from resilient_llm import AsyncOpenAI
        from resilient_llm.demo._run import library_settings

        client: Any = AsyncOpenAI(
            api_key="EMPTY", replicas=urls, max_concurrency=args.capacity, **library_settings(scale)
        )

        async def call() -> None:
            await client.chat.completions.create(**body)

        try:
            yield call
        finally:
            await asyncio.wait_for(client.close(), 10.0)
        return

    from benchmarks.bench_faults import scaled_sdk_class

    sdk = scaled_sdk_class(scale)
    clients = [sdk(api_key="EMPTY", base_url=url, timeout=600 * scale) for url in urls]
    semaphore = asyncio.Semaphore(REPLICAS * args.capacity)
    turn = iter(range(sys.maxsize))

    async def call() -> None:
        async with semaphore:
            await clients[next(turn) % len(clients)].chat.completions.create(**body)

    try:
        yield call
    finally:
        for c in clients:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(c.close(), 5.0)


async def run_once(
    name: str, servers: list[RunningServer], args: argparse.Namespace, ideal: float
) -> dict[str, Any]:
    scale = args.time_scale
    limit = max(args.limit_factor * ideal * scale, 5.0)  # a tiny run still gets time to start
    errors: dict[str, int] = {}
    async with open_client(name, [s.base_url for s in servers], args) as call:

        async def one() -> bool:
            try:
                await call()
                return True
            except Exception as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return False

        loop = asyncio.get_running_loop()
        start = loop.time()
        kill = loop.call_later(args.kill_at * scale, os.kill, servers[KILLED].pid, signal.SIGKILL)
        tasks = [asyncio.ensure_future(one()) for _ in range(args.calls)]
        done, pending = await asyncio.wait(tasks, timeout=limit)
        makespan = loop.time() - start
        kill.cancel()
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
    ok = sum(1 for task in done if task.result())
    survivors = [
        int(s.get_json("/simulator/stats")["requests_completed"])
        for i, s in enumerate(servers)
        if i != KILLED
    ]  # type: ignore[index]
    return {
        "ok": ok,
        "failed": len(done) - ok,
        "hung": len(pending),
        "limit_hit": bool(pending),
        "makespan_simulated_s": round(makespan / scale, 1),
        "makespan_over_ideal": round(makespan / (ideal * scale), 3),
        "completed_per_replica": [survivors[0], max(0, ok - sum(survivors)), survivors[1]],
        "errors": errors,
    }


def summarize(name: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median run (by makespan ÷ ideal), with every run's ratio beside it."""
    ratios = [run["makespan_over_ideal"] for run in runs]
    median = statistics.median_low(ratios)
    row = dict(runs[ratios.index(median)])
    row.update(client=name, label=LABELS[name], rounds=len(runs), ratios=ratios, median_over_ideal=median)
    return row


def table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'client':<34} {'ok':>5} {'failed':>6} {'hung':>5} {'makespan (sim s)':>17} "
        f"{'÷ ideal':>8} {'rounds ÷ ideal':>22} {'calls per replica':>18}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        plus = "+" if row["limit_hit"] else ""
        rounds = ", ".join(f"{r:.2f}" for r in row["ratios"])
        split = "/".join(str(n) for n in row["completed_per_replica"])
        lines.append(
            f"{row['label']:<34} {row['ok']:>5} {row['failed']:>6} {row['hung']:>5} "
            f"{row['makespan_simulated_s']:>16}{plus:1} {row['median_over_ideal']:>7.2f}{plus:1} "
            f"{rounds:>22} {split:>18}"
        )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--clients", nargs="+", choices=list(LABELS), default=list(LABELS), help="clients to run"
    )
    parser.add_argument("--calls", type=int, default=480, help="calls in the backlog")
    parser.add_argument("--tokens", type=int, default=400, help="tokens per answer")
    parser.add_argument("--capacity", type=int, default=8, help="sequences each replica runs at once")
    parser.add_argument(
        "--kill-at", type=float, default=60.0, help="simulated seconds before replica 1 is killed"
    )
    parser.add_argument("--time-scale", type=float, default=0.1, help="real seconds per simulated second")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per client (fresh replicas each)")
    parser.add_argument("--seed", type=int, default=1, help="the first replica's seed (the others: +1, +2)")
    parser.add_argument(
        "--limit-factor", type=float, default=3.0, help="stop a run at this multiple of ideal"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (0 < args.time_scale <= 1):
        parser.error(f"--time-scale must be in (0, 1], got {args.time_scale}")
    if args.calls < 1 or args.tokens < 1 or args.capacity < 1 or args.rounds < 1:
        parser.error("--calls, --tokens, --capacity and --rounds must be >= 1")
    if not args.limit_factor > 1:
        parser.error(f"--limit-factor must be > 1, got {args.limit_factor}")
    logging.getLogger("resilient_llm").setLevel(logging.ERROR)
    command = command_line(None if argv is None else [sys.argv[0], *argv])
    info = machine_info()
    ideal = ideal_makespan(calls=args.calls, tokens=args.tokens, capacity=args.capacity, kill_at=args.kill_at)
    print(describe(info, command))
    print(
        f"workload: {args.calls} calls x {args.tokens} tokens on {REPLICAS} replicas of capacity {args.capacity}; "
        f"replica {KILLED} killed at {args.kill_at:g} simulated s; ideal makespan {ideal:.1f} simulated s; "
        f"time scale {args.time_scale:g}; runs stopped at {args.limit_factor:g}x ideal",
        flush=True,
    )
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in args.clients}
    started = time.perf_counter()
    for round_no in range(args.rounds):
        order = args.clients[round_no % len(args.clients) :] + args.clients[: round_no % len(args.clients)]
        for name in order:
            try:
                with replicas(args) as servers:
                    run = asyncio.run(run_once(name, servers, args, ideal))
            except ServerUnavailable as exc:
                print(f"error: {exc}", file=sys.stderr)
                return 2
            runs[name].append(run)
            print(
                f"  round {round_no + 1}/{args.rounds} {name}: {run['ok']} ok, {run['failed']} failed, "
                f"{run['hung']} hung, {run['makespan_over_ideal']:.2f}x ideal",
                file=sys.stderr,
                flush=True,
            )
    rows = [summarize(name, runs[name]) for name in args.clients]
    print()
    print(table(rows))
    elapsed = time.perf_counter() - started
    document = {
        "benchmark": "replicas",
        "command": command,
        "machine": info,
        "settings": {
            "calls": args.calls,
            "tokens": args.tokens,
            "replicas": REPLICAS,
            "capacity": args.capacity,
            "killed": KILLED,
            "kill_at_simulated_s": args.kill_at,
            "time_scale": args.time_scale,
            "rounds": args.rounds,
            "seed": args.seed,
            "ideal_makespan_simulated_s": round(ideal, 1),
            "limit_factor": args.limit_factor,
        },
        "elapsed_seconds": round(elapsed, 1),
        "results": rows,
        "runs": runs,
    }
    write_results(args.output, document)
    print(f"\n{elapsed:.0f} s in all\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
