"""Goodput under the incident's faults: an ARC-shaped workload against the simulated vLLM.

The workload is the pipeline's shape (``resilient_llm.demo``'s :class:`ArcWorkload`): 8 tasks
started together, each running rounds of parallel calls gathered with ``return_exceptions=True``,
answer lengths long-tailed (log-normal). The simulator runs in a process of its own with the
incident's faults: ghosted answers (generated, never sent), lost requests (never answered),
dropped connections and 503s from a bounded queue. Four clients run it, each against a fresh
simulator with the same seed:

* ``baseline``: the official SDK (its own defaults, no stagger, the pipeline's semaphore of 100)
  against the simulator **without faults**: the yardstick the others are divided by;
* ``before``: the official SDK as the incident had it: ``timeout=2500``, ``max_retries=2``, tasks
  staggered by ``i * 2`` seconds, a process-wide semaphore of 100;
* ``after``: the official SDK with the incident's manual fix: ``timeout=60``, ``max_retries=3``,
  stagger ``i * 5``;
* ``resilient_llm``: this library's defaults, no stagger.

``--faults`` takes ``KIND=P,...`` or a preset: ``incident`` (the default) or ``every-kind`` (every
fault kind the simulator has; ``--no-metrics`` adds the one left out, every ``/metrics`` scrape a 404).

Every duration (the simulator's, each client's timeouts and the SDK's retry sleeps, this library's
defaults) is multiplied by ``--time-scale``, so minutes of serving run in seconds; figures are
reported in simulated seconds. A run still going at ``--limit-factor`` times the ideal makespan is
stopped: its pending calls count as hung. Reported per client: calls ok / failed / hung, makespan,
makespan ÷ ideal (total work ÷ server capacity), makespan ÷ the baseline's, and wasted tokens
(generated, never delivered; the simulator's own counter). When both ran, a last line says whether
``resilient_llm`` under faults met the target: every call ok, none hung, makespan at most
``--target`` × the baseline's (1.10, or 1.3 with ``--no-metrics``).

    python benchmarks/bench_faults.py
    python benchmarks/bench_faults.py --clients baseline resilient_llm --faults every-kind
    python benchmarks/bench_faults.py --clients resilient_llm --time-scale 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._machine import REPO_ROOT, command_line, describe, machine_info, write_results
from benchmarks._servers import RunningServer, ServerUnavailable, running_server, split_cpus

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "faults.json"
DEFAULT_CHART = REPO_ROOT / "docs" / "img" / "bench-faults.png"
MODEL = "openai/gpt-oss-20b"
INCIDENT_FAULTS = "ghost=0.03,lost=0.02,drop=0.02,503=0.01"
#: Every fault kind of the simulator but ``metrics_missing`` (that is ``--no-metrics``): the issue's
#: incident mix (ghosted 3 %, lost 2 %, dropped 2 %, 503 3 %), 1 % of each other kind per attempt but
#: ``restart`` at 0.5 % (about one or two per run: each restart loses every request in flight), and 2 %
#: of ``/metrics`` scrapes frozen. A test checks it names every kind; a run says which were not drawn.
EVERY_KIND_FAULTS = (
    "ghost=0.03,lost=0.02,drop=0.02,503=0.03,429=0.01,500=0.01,"
    "truncated=0.01,error_chunk=0.01,slow=0.01,restart=0.005,metrics_frozen=0.02"
)
FAULT_PRESETS = {"incident": INCIDENT_FAULTS, "every-kind": EVERY_KIND_FAULTS}
BASELINE = "baseline"
#: The issue's targets for resilient_llm's makespan under faults ÷ the baseline's.
TARGET = 1.10
TARGET_NO_METRICS = 1.3
PIPELINE_SEMAPHORE = 100  # the pipeline's MAX_CONCURRENCY default

Call = Callable[[int, int], Awaitable[str | None]]


@dataclass(frozen=True, kw_only=True)
class Profile:
    """One client as the benchmark runs it. Times are in simulated seconds."""

    name: str
    label: str
    stagger: float
    timeout: float | None = None
    max_retries: int | None = None
    faults: bool = True  # False: a simulator without faults (the baseline)


PROFILES: dict[str, Profile] = {
    profile.name: profile
    for profile in (
        Profile(
            name=BASELINE,
            label="openai SDK, no faults (baseline)",
            stagger=0.0,
            timeout=600.0,  # the SDK's default; nothing times out without faults
            max_retries=2,
            faults=False,
        ),
        Profile(
            name="before", label="openai SDK, incident settings", stagger=2.0, timeout=2500.0, max_retries=2
        ),
        Profile(name="after", label="openai SDK, manual fix", stagger=5.0, timeout=60.0, max_retries=3),
        Profile(name="resilient_llm", label="resilient_llm defaults", stagger=0.0),
    )
}


def demo_available() -> str | None:
    """Why the workload module cannot be imported, or None when it can."""
    try:
        import resilient_llm.demo  # noqa: F401
    except ImportError as exc:
        return f"resilient_llm.demo is not available yet ({exc})"
    return None


def prompt_for(tokens: int) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": "You solve ARC puzzles. Answer with a JSON object."},
        {"role": "user", "content": f"Describe the transformation ({tokens} tokens of reasoning)."},
    ]


def request_args(tokens: int, max_tokens: int) -> dict[str, Any]:
    """The pipeline's call: JSON mode, temperature 0.3, answer length steered in the simulator."""
    return {
        "model": MODEL,
        "messages": prompt_for(tokens),
        "response_format": {"type": "json_object"},
        "max_tokens": max_tokens,
        "temperature": 0.3,
        "extra_body": {"skip_special_tokens": True, "simulator": {"output_tokens": tokens}},
    }


def scaled_sdk_class(scale: float) -> Any:
    """``openai.AsyncOpenAI`` whose retry sleeps are scaled like every other duration."""
    import openai

    class ScaledAsyncOpenAI(openai.AsyncOpenAI):
        def _calculate_retry_timeout(self, *args: Any, **kwargs: Any) -> float:
            delay: float = super()._calculate_retry_timeout(*args, **kwargs)
            return delay * scale

    return ScaledAsyncOpenAI


def resilient_settings(scale: float) -> dict[str, Any]:
    """This library's defaults with every duration multiplied by ``scale``."""
    from resilient_llm.demo._run import library_settings

    settings: dict[str, Any] = library_settings(scale)
    return settings


@contextlib.asynccontextmanager
async def open_profile(profile: Profile, base_url: str, scale: float) -> Any:
    """Yield ``call(tokens, max_tokens) -> content`` for ``profile``; close the client afterwards."""
    if profile.name == "resilient_llm":
        from resilient_llm import AsyncOpenAI

        client: Any = AsyncOpenAI(api_key="EMPTY", base_url=base_url, **resilient_settings(scale))

        async def call(tokens: int, max_tokens: int) -> str | None:
            reply = await client.chat.completions.create(**request_args(tokens, max_tokens))
            content: str | None = reply.choices[0].message.content
            return content

    else:
        assert profile.timeout is not None and profile.max_retries is not None
        client = scaled_sdk_class(scale)(
            api_key="EMPTY",
            base_url=base_url,
            timeout=profile.timeout * scale,
            max_retries=profile.max_retries,
        )
        semaphore = asyncio.Semaphore(PIPELINE_SEMAPHORE)

        async def call(tokens: int, max_tokens: int) -> str | None:
            async with semaphore:
                reply = await client.chat.completions.create(**request_args(tokens, max_tokens))
            content: str | None = reply.choices[0].message.content
            return content

    try:
        yield call
    finally:
        if profile.name == "resilient_llm":
            logging.getLogger("resilient_llm").info("the client's stats at the end: %s", client.stats())
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5.0)


def simulator_args(args: argparse.Namespace, *, faults: bool = True) -> list[str]:
    """The simulator's command line; ``faults=False`` for the baseline: no faults and, as vLLM by
    default, no bound on its queue (a bounded queue's 503s are one of the incident's faults)."""
    common = [
        "--capacity",
        str(args.capacity),
        "--time-scale",
        str(args.time_scale),
        "--seed",
        str(args.seed),
        "--metrics-lag",
        str(args.metrics_lag),
        "--metrics-lag-mode",
        args.metrics_lag_mode,
        "--log-level",
        "WARNING",
    ]
    if not faults:
        return common
    return [
        *common,
        "--faults",
        effective_faults(args),
        "--max-queued",
        str(4 * args.capacity),
    ]


def configure_log(path: Path | None) -> None:
    """The library's log: errors only (the table tells the story), or with ``--log`` its INFO lines in
    ``path`` (a run's every retry and breaker change, to tell what a slow or failed call met)."""
    library = logging.getLogger("resilient_llm")
    if path is None:
        library.setLevel(logging.ERROR)
        return
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False  # the file has them: the console keeps its table


def effective_faults(args: argparse.Namespace) -> str:
    """The faulty runs' ``--faults``: with ``--no-metrics`` every scrape is a 404, which replaces any
    other scrape fault of the mix (``metrics_frozen``: a scrape draws one fault at most)."""
    if not args.no_metrics:
        return str(args.faults)
    parts = [p for p in args.faults.split(",") if p.strip() and not p.strip().startswith("metrics_")]
    return ",".join([*parts, "metrics_missing=1"])


def fault_set(text: str) -> str:
    """``--faults``: a preset's mix (``incident``, ``every-kind``), or ``KIND=P,...`` as it is."""
    return FAULT_PRESETS.get(text, text)


def ideal_makespan(workload: Any, capacity: int) -> float:
    """Simulated seconds for the whole workload on a perfectly packed server: total work ÷ capacity."""
    from resilient_llm.testing import SimulatorConfig

    return float(workload.ideal_makespan(SimulatorConfig(capacity=capacity)))


async def run_profile(
    profile: Profile, server: RunningServer, workload: Any, args: argparse.Namespace, ideal: float
) -> dict[str, Any]:
    from resilient_llm.demo import run_workload

    scale = args.time_scale
    limit = max(args.limit_factor * ideal * scale, 5.0)
    async with open_profile(profile, server.base_url, scale) as call:
        result = await run_workload(
            call, workload, label=profile.label, stagger=profile.stagger * scale, limit=limit
        )
    await asyncio.sleep(0.5)  # let the simulator settle the token counts of aborted requests
    stats = server.get_json("/simulator/stats")
    assert isinstance(stats, dict)
    summary: dict[str, Any] = result.summary()
    delivered, wasted = int(stats.get("tokens_delivered", 0)), int(stats.get("tokens_wasted", 0))
    summary.update(
        client=profile.name,
        hung_or_not_run=summary["hung"] + summary["not_run"],
        makespan_simulated_s=round(result.makespan / scale, 1),
        ideal_simulated_s=round(ideal, 1),
        makespan_over_ideal=round(result.makespan / (ideal * scale), 2),
        tokens_delivered=delivered,
        tokens_wasted=wasted,
        wasted_pct=round(100 * wasted / max(1, delivered), 1),
        faults_injected=stats.get("faults_injected", {}),
        requests_received=stats.get("requests_received"),
        errors=first_errors(result.outcomes),
        # Every call, to trace a run's critical path: [task, round, index, answer tokens, started,
        # finished (simulated s), status].
        timeline=[
            [
                o.task,
                o.round,
                o.index,
                o.tokens,
                None if o.started is None else round(o.started / scale, 2),
                None if o.finished is None else round(o.finished / scale, 2),
                o.status,
            ]
            for o in result.outcomes
        ],
    )
    summary["slowest_task"] = slowest_task(summary["timeline"])
    return summary


def slowest_task(timeline: Sequence[Sequence[Any]]) -> dict[str, Any] | None:
    """The run's critical path: the task that ended last, each of its rounds' span and the call that
    ended the round (its answer length and how long it took, simulated s). ``None`` when a call of
    that task has no end (hung or not run)."""
    tasks: dict[int, dict[int, list[Sequence[Any]]]] = {}
    for row in timeline:
        tasks.setdefault(row[0], {}).setdefault(row[1], []).append(row)
    ends: dict[int, float] = {}
    for task, rounds in tasks.items():
        finished = [row[5] for calls in rounds.values() for row in calls]
        if any(f is None for f in finished):
            return None
        ends[task] = max(finished)
    if not ends:
        return None
    task = max(ends, key=lambda t: ends[t])
    rounds_out = []
    for number, calls in sorted(tasks[task].items()):
        start = min(row[4] for row in calls)
        last = max(calls, key=lambda row: row[5])
        rounds_out.append(
            {
                "round": number,
                "started": start,
                "ended": last[5],
                "last_call_tokens": last[3],
                "last_call_seconds": round(last[5] - last[4], 2),
            }
        )
    return {"task": task, "ended": ends[task], "rounds": rounds_out}


def describe_slowest(slowest: dict[str, Any]) -> str:
    """One line: the task that ended last, round by round."""
    rounds = "; ".join(
        f"round {r['round']} {r['ended'] - r['started']:.1f} s (last call {r['last_call_tokens']} tokens, "
        f"{r['last_call_seconds']:.1f} s)"
        for r in slowest["rounds"]
    )
    return f"task {slowest['task']} ended last at {slowest['ended']:.1f} s: {rounds}"


def first_errors(outcomes: Sequence[Any], count: int = 3) -> dict[str, int]:
    """The most frequent error types among failed calls, with their counts."""
    tally: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.status == "failed" and outcome.error:
            kind = outcome.error.split(":", 1)[0]
            tally[kind] = tally.get(kind, 0) + 1
    return dict(sorted(tally.items(), key=lambda item: -item[1])[:count])


def add_baseline_ratios(rows: Sequence[dict[str, Any]]) -> float | None:
    """Set each measured row's ``makespan_over_baseline``; the baseline's makespan (real s) or None."""
    base = next((r for r in rows if r.get("client") == BASELINE and "status" not in r), None)
    if base is None or base["limit_hit"] or not base["makespan_s"] > 0:
        return None
    for row in rows:
        if "status" not in row:
            row["makespan_over_baseline"] = round(row["makespan_s"] / base["makespan_s"], 2)
    return float(base["makespan_s"])


def verdict(rows: Sequence[dict[str, Any]], target: float) -> dict[str, Any] | None:
    """Did ``resilient_llm`` under faults meet the issue's target against the baseline? None when
    either run is missing."""
    row = next((r for r in rows if r.get("client") == "resilient_llm" and "status" not in r), None)
    if row is None or "makespan_over_baseline" not in row:
        return None
    all_ok = row["ok"] == row["calls"]
    none_hung = row["hung_or_not_run"] == 0 and not row["limit_hit"]
    ratio = row["makespan_over_baseline"]
    return {
        "all_ok": all_ok,
        "none_hung": none_hung,
        "makespan_over_baseline": ratio,
        "target": target,
        "met": all_ok and none_hung and ratio <= target,
    }


def kinds_not_drawn(faults: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The fault kinds of ``faults`` that no faulty run met (the draw is per attempt: a small
    probability can miss a run)."""
    from resilient_llm.testing import parse_faults

    wanted = [kind for kind, probability in parse_faults(faults).items() if probability > 0]
    drawn: set[str] = set()
    for row in rows:
        if row.get("client") != BASELINE and "status" not in row:
            drawn.update(kind for kind, count in row.get("faults_injected", {}).items() if count)
    return [kind for kind in wanted if kind not in drawn]


def verdict_line(result: dict[str, Any], row: dict[str, Any]) -> str:
    met = "MET" if result["met"] else "NOT MET"
    return (
        f"resilient_llm: {row['ok']}/{row['calls']} ok, {row['hung_or_not_run']} hung, makespan "
        f"{result['makespan_over_baseline']:.2f}x the baseline's (target <= {result['target']:.2f}x): {met}"
    )


def table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'client':<33} {'ok':>5} {'failed':>6} {'hung':>5} {'makespan (sim s)':>17} "
        f"{'÷ ideal':>8} {'÷ baseline':>10} {'wasted tokens':>20}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        if "status" in row:
            lines.append(f"{row['label']:<33} {row['status']}")
            continue
        plus = "+" if row["limit_hit"] else ""
        wasted = f"{row['tokens_wasted']:,} ({row['wasted_pct']:.1f}%)"
        makespan = f"{row['makespan_simulated_s']}{plus}"
        over_ideal = f"{row['makespan_over_ideal']}{plus}"
        ratio = row.get("makespan_over_baseline")
        over_base = "-" if ratio is None else f"{ratio:.2f}{plus}"
        lines.append(
            f"{row['label']:<33} {row['ok']:>5} {row['failed']:>6} {row['hung_or_not_run']:>5} "
            f"{makespan:>17} {over_ideal:>8} {over_base:>10} {wasted:>20}"
        )
    return "\n".join(lines)


def chart(rows: Sequence[dict[str, Any]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measured = [row for row in rows if "status" not in row]
    if not measured:
        return
    labels = [row["label"].replace(", ", ",\n") for row in measured]
    figure, axes = plt.subplots(1, 3, figsize=(13, 4.2), dpi=110)
    bottom = [0] * len(measured)
    for key, color in (("ok", "#27ae60"), ("failed", "#e67e22"), ("hung_or_not_run", "#c0392b")):
        values = [row[key] for row in measured]
        axes[0].bar(labels, values, bottom=bottom, color=color, label=key.replace("_or_not_run", ""))
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    axes[0].set_title("calls")
    axes[0].set_ylim(0, max(bottom) * 1.3)  # room for the legend above the bars
    axes[0].legend(fontsize=8, ncols=3, loc="upper center")
    axes[1].bar(labels, [row["makespan_over_ideal"] for row in measured], color="#34495e")
    axes[1].axhline(1.0, color="gray", linestyle="--", linewidth=1)
    axes[1].set_title("makespan ÷ ideal (lower is better; '+' runs hit the limit)")
    axes[2].bar(labels, [row["wasted_pct"] for row in measured], color="#8e44ad")
    axes[2].set_title("wasted tokens, % of delivered")
    for axis in axes:
        axis.tick_params(axis="x", labelsize=8)
    figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument(
        "--clients", nargs="+", choices=list(PROFILES), default=list(PROFILES), help="client profiles to run"
    )
    parser.add_argument("--time-scale", type=float, default=0.05, help="real seconds per simulated second")
    parser.add_argument(
        "--capacity", type=int, default=16, help="sequences the simulated server runs at once"
    )
    parser.add_argument(
        "--faults",
        type=fault_set,
        default="incident",
        help=f"simulator faults, KIND=P,... or a preset: {', '.join(FAULT_PRESETS)}",
    )
    parser.add_argument("--seed", type=int, default=1, help="the simulator's seed (same for every client)")
    parser.add_argument(
        "--metrics-lag",
        type=float,
        default=0.05,
        help="the simulator's /metrics lag, simulated seconds (in steps mode: per new request of a step)",
    )
    parser.add_argument(
        "--metrics-lag-mode",
        choices=("steps", "snapshot", "arrivals"),
        default="steps",
        help="steps: as vLLM counts requests (a burst of 64 counted over 3.2 simulated s); snapshot: a "
        "/metrics served that old (a cache in front of the server)",
    )
    parser.add_argument("--tasks", type=int, default=8, help="tasks started together")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of parallel calls per task")
    parser.add_argument("--calls-per-round", type=int, default=12, help="parallel calls per round")
    parser.add_argument("--median-tokens", type=int, default=350, help="median answer length")
    parser.add_argument("--max-answer-tokens", type=int, default=2500, help="longest answer")
    parser.add_argument(
        "--no-metrics",
        action="store_true",
        help="the simulator's /metrics answers 404 (the breaker's fallback)",
    )
    parser.add_argument(
        "--limit-factor", type=float, default=4.0, help="stop a run at this multiple of ideal"
    )
    parser.add_argument(
        "--target",
        type=float,
        help=f"resilient_llm's makespan ÷ the baseline's to meet (default {TARGET:g}, "
        f"{TARGET_NO_METRICS:g} with --no-metrics)",
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    parser.add_argument(
        "--log",
        type=Path,
        metavar="FILE",
        help="write the library's INFO log (retries, breaker, cut answers) to FILE; by default only its "
        "errors are shown",
    )
    parser.add_argument("--chart", type=Path, default=DEFAULT_CHART, help="PNG chart file")
    parser.add_argument("--no-chart", action="store_true", help="skip the PNG chart")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not (0 < args.time_scale <= 1):
        parser.error(f"--time-scale must be in (0, 1], got {args.time_scale}")
    if not args.limit_factor > 1:
        parser.error(f"--limit-factor must be > 1, got {args.limit_factor}")
    from resilient_llm import ConfigError
    from resilient_llm.testing import parse_faults

    try:
        parse_faults(effective_faults(args))
    except ConfigError as exc:
        parser.error(f"--faults {args.faults}: {exc}")
    missing = demo_available()
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    from resilient_llm.demo import ArcWorkload

    try:
        workload = ArcWorkload(
            tasks=args.tasks,
            rounds=args.rounds,
            calls_per_round=args.calls_per_round,
            median_tokens=args.median_tokens,
            max_answer_tokens=args.max_answer_tokens,
        )
    except ValueError as exc:
        parser.error(str(exc))
    configure_log(args.log)
    command = command_line(None if argv is None else [sys.argv[0], *argv])
    info = machine_info()
    ideal = ideal_makespan(workload, args.capacity)
    print(describe(info, command))
    print(
        f"workload: {workload.tasks} tasks x {workload.rounds} rounds x {workload.calls_per_round} calls "
        f"= {workload.calls} calls, {workload.total_tokens():,} tokens; faults {effective_faults(args)}; "
        f"capacity {args.capacity}; ideal makespan {ideal:.0f} simulated s; time scale {args.time_scale:g}; "
        f"/metrics lag {args.metrics_lag:g} s ({args.metrics_lag_mode}); runs stopped at {args.limit_factor:g}x ideal",
        flush=True,
    )
    server_cpus, _ = split_cpus()
    rows: list[dict[str, Any]] = []
    started = time.perf_counter()
    for name in args.clients:
        profile = PROFILES[name]
        extra = simulator_args(args, faults=profile.faults)
        try:
            with running_server("simulator", extra_args=extra, cpus=server_cpus) as server:
                rows.append(asyncio.run(run_profile(profile, server, workload, args, ideal)))
        except ServerUnavailable as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"  {profile.label}: done", file=sys.stderr, flush=True)
    baseline = add_baseline_ratios(rows)
    target = args.target if args.target is not None else TARGET_NO_METRICS if args.no_metrics else TARGET
    result = verdict(rows, target)
    print()
    print(table(rows))
    missed = kinds_not_drawn(effective_faults(args), rows)
    if missed:
        print(f"\nnote: no run met these fault kinds of the mix: {', '.join(missed)}")
    for row in rows:
        if row.get("slowest_task"):
            print(f"\n{row['label']}: {describe_slowest(row['slowest_task'])}")
    if result is not None:
        library = next(r for r in rows if r.get("client") == "resilient_llm")
        print(f"\n{verdict_line(result, library)}")
    elapsed = time.perf_counter() - started
    document = {
        "benchmark": "faults",
        "command": command,
        "machine": info,
        "settings": {
            "time_scale": args.time_scale,
            "capacity": args.capacity,
            "faults": effective_faults(args),
            "seed": args.seed,
            "metrics_lag": args.metrics_lag,
            "metrics_lag_mode": args.metrics_lag_mode,
            "workload": {
                "tasks": workload.tasks,
                "rounds": workload.rounds,
                "calls_per_round": workload.calls_per_round,
                "median_tokens": workload.median_tokens,
                "calls": workload.calls,
                "tokens": workload.total_tokens(),
            },
            "ideal_makespan_simulated_s": round(ideal, 1),
            "limit_factor": args.limit_factor,
            "no_metrics": args.no_metrics,
        },
        "elapsed_seconds": round(elapsed, 1),
        "baseline_makespan_simulated_s": None if baseline is None else round(baseline / args.time_scale, 1),
        "verdict": result,
        "fault_kinds_not_drawn": missed,
        "results": rows,
    }
    write_results(args.output, document)
    print(f"\n{elapsed:.0f} s in all\nresults: {args.output}")
    if not args.no_chart:
        chart(rows, args.chart, f"ARC-shaped workload, {workload.calls} calls, faults {args.faults}")
        print(f"chart: {args.chart}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
