"""``resilient-llm demo``: the incident, replayed against the simulator, before and after.

1. The incident's settings: the official openai client (``timeout=2500`` per attempt, ``max_retries=2``,
   a process-wide semaphore of 100, tasks staggered by ``i * 2`` seconds).
2. This library's defaults (one import changed; no stagger, no semaphore).

Both run the same ARC-shaped workload against a fresh simulated vLLM with the incident's faults
(ghosted and lost answers, dropped connections, 503s from a bounded queue). Every duration — the
simulator's and every setting of both clients — is multiplied by the time scale, so minutes of
simulated serving run in seconds; the report gives simulated seconds.

A run still going at the cut-off (``limit_factor`` × the ideal makespan) is stopped. Its calls that
were waiting on an answer count as *hung*, those never started because an earlier call of their task
hung count as *not run*: the table, ``demo.json`` and the chart use the same two numbers.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import anyio
import openai
from openai.types.chat import ChatCompletionMessageParam
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import (
    DEFAULT_DEADLINE,
    DEFAULT_RAMP_UP,
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_TIMEOUT,
    AsyncOpenAI,
    Backoff,
    BreakerConfig,
    RetryBudgetConfig,
)
from ..testing import SimulatorConfig, SimulatorThread
from ._workload import ArcWorkload, CallOutcome, RunResult, run_workload

#: The faults of the incident: answers generated and never sent, requests never answered, dropped
#: connections; 503s come from the bounded queue (``max_queued``) as vLLM's --max-num-queued-reqs gives.
INCIDENT_FAULTS = {"ghost": 0.03, "lost": 0.02, "drop": 0.02, "503": 0.01}
MODEL = "openai/gpt-oss-20b"


@dataclass(frozen=True, kw_only=True)
class DemoConfig:
    scale: float = 0.05
    capacity: int = 16
    workload: ArcWorkload = field(default_factory=ArcWorkload)
    faults: dict[str, float] | None = None
    seed: int = 1
    #: A run still going at this multiple of the ideal makespan is stopped (its pending calls: hung).
    limit_factor: float = 4.0
    out_dir: Path = Path("demo-out")
    chart: bool = True

    @classmethod
    def quick(cls) -> DemoConfig:
        """A smoke test: 2 rounds of 4 calls per task (64 calls). A small workload is dominated by
        its slowest round, so the cut-off is 6 × ideal instead of 4."""
        return cls(workload=ArcWorkload(rounds=2, calls_per_round=4), limit_factor=6.0)

    def simulator(self) -> SimulatorConfig:
        return SimulatorConfig(
            model=MODEL,
            capacity=self.capacity,
            time_scale=self.scale,
            tick=0.005,
            seed=self.seed,
            faults=INCIDENT_FAULTS if self.faults is None else self.faults,
            max_queued=4 * self.capacity,
            # As vLLM counts requests: from the end of the engine step that first sees them (a step
            # 0.05 s per new request), as bench_faults.py. A /metrics served 2 s stale through a cache
            # (the earlier setting, "snapshot" mode) makes the library hold its longest orphan grace.
            metrics_lag=0.05,
            metrics_lag_mode="steps",
            sample_interval=1.0,
        )

    def ideal_makespan(self) -> float:
        """Simulated seconds for the whole workload on a perfectly packed server (work ÷ capacity)."""
        return self.workload.ideal_makespan(self.simulator())

    def cutoff(self) -> float:
        """Simulated seconds after which a run is stopped: ``limit_factor`` × the ideal makespan."""
        return self.limit_factor * self.ideal_makespan()


def library_settings(scale: float) -> dict[str, Any]:
    """This library's defaults with every duration multiplied by ``scale`` (counts stay as they are).

    Rates scale the other way: the retry budget's window shrinks with time and its reserve per second
    grows, so it allows the same retries per simulated second as the real budget per real second.
    """
    backoff, breaker, budget = Backoff(), BreakerConfig(), RetryBudgetConfig()
    return {
        "retry_budget": RetryBudgetConfig(
            ratio=budget.ratio, min_per_second=budget.min_per_second / scale, ttl=budget.ttl * scale
        ),
        "deadline": DEFAULT_DEADLINE * scale,
        "stall_timeout": DEFAULT_STALL_TIMEOUT * scale,
        "timeout": DEFAULT_TIMEOUT.read * scale if DEFAULT_TIMEOUT.read else None,
        "ramp_up": DEFAULT_RAMP_UP * scale,
        "backoff": Backoff(base=backoff.base * scale, cap=backoff.cap * scale, jitter=backoff.jitter),
        "breaker": replace(
            breaker,
            poll_interval=max(0.02, breaker.poll_interval * scale),
            orphan_grace=None if breaker.orphan_grace is None else breaker.orphan_grace * scale,
            orphan_grace_min=breaker.orphan_grace_min * scale,
            orphan_lag_window=breaker.orphan_lag_window * scale,
            stale_after=max(0.1, breaker.stale_after * scale),
            open_cooldown=breaker.open_cooldown * scale,
            max_cooldown=breaker.max_cooldown * scale,
            outage_wait=breaker.outage_wait * scale,
            wait_for_server=breaker.wait_for_server * scale,
        ),
    }


def prompt_for(tokens: int) -> list[ChatCompletionMessageParam]:
    return [
        {"role": "system", "content": "You solve ARC puzzles. Answer with a JSON object."},
        {"role": "user", "content": f"Describe the transformation ({tokens} tokens of reasoning)."},
    ]


def incident_call(
    base_url: str, scale: float
) -> tuple[Callable[[int, int], Awaitable[str | None]], openai.AsyncOpenAI, str]:
    """The incident's client: the official ``openai.AsyncOpenAI``, set up as the pipeline set it up."""
    semaphore = anyio.Semaphore(100)  # the pipeline's MAX_CONCURRENCY
    client = openai.AsyncOpenAI(api_key="EMPTY", base_url=base_url, timeout=2500 * scale, max_retries=2)
    name = f"openai {openai.__version__}"

    async def call(tokens: int, max_tokens: int) -> str | None:
        async with semaphore:
            r = await client.chat.completions.create(
                model=MODEL,
                messages=prompt_for(tokens),
                response_format={"type": "json_object"},
                max_tokens=max_tokens,
                temperature=0.3,
                extra_body={"skip_special_tokens": True, "simulator": {"output_tokens": tokens}},
            )
        content: str | None = r.choices[0].message.content
        return content

    return call, client, name


def library_call(
    base_url: str, scale: float
) -> tuple[Callable[[int, int], Awaitable[str | None]], AsyncOpenAI]:
    client = AsyncOpenAI(api_key="EMPTY", base_url=base_url, **library_settings(scale))

    async def call(tokens: int, max_tokens: int) -> str | None:
        r = await client.chat.completions.create(
            model=MODEL,
            messages=prompt_for(tokens),
            response_format={"type": "json_object"},
            max_tokens=max_tokens,
            temperature=0.3,
            extra_body={"skip_special_tokens": True, "simulator": {"output_tokens": tokens}},
        )
        content: str | None = r.choices[0].message.content
        return content

    return call, client


async def _one_run(
    cfg: DemoConfig, label: str, which: str, progress: Progress, console: Console
) -> tuple[RunResult, list[dict[str, Any]]]:
    ideal_real = cfg.ideal_makespan() * cfg.scale
    limit = cfg.cutoff() * cfg.scale
    client: openai.AsyncOpenAI | AsyncOpenAI
    # The server on a thread and event loop of its own, as a real one would be: on the client's loop
    # its steps and the client's reads would delay each other.
    with SimulatorThread(cfg.simulator()) as sim:
        if which == "incident":
            call, client, name = incident_call(sim.base_url, cfg.scale)
            stagger = 2 * cfg.scale
        else:
            call, client = library_call(sim.base_url, cfg.scale)
            name, stagger = "resilient_llm defaults", 0.0
        bar = progress.add_task(f"{label:<23}", total=cfg.workload.calls, info="")
        done = {"ok": 0, "failed": 0}

        def on_progress(outcome: CallOutcome) -> None:
            done["ok" if outcome.status == "ok" else "failed"] += 1
            progress.advance(bar)

        async def ticker() -> None:
            while True:
                progress.update(
                    bar,
                    info=f"ok {done['ok']}  failed {done['failed']}  "
                    f"server running {sim.running} waiting {sim.waiting}",
                )
                await anyio.sleep(0.2)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            result = await run_workload(
                call, cfg.workload, label=label, stagger=stagger, limit=limit, on_progress=on_progress
            )
            tg.cancel_scope.cancel()
        progress.update(
            bar,
            info=f"ok {done['ok']}  failed {done['failed']}  hung {result.count('hung')}  "
            f"not run {result.count('not_run')}" + ("  (stopped at the cut-off)" if result.limit_hit else ""),
        )
        samples = [
            {"t": s.elapsed / cfg.scale, "running": s.running, "waiting": s.waiting} for s in sim.samples()
        ]
        await _close(client)
        await anyio.sleep(0.1)  # let aborted requests settle their token counts
        stats = sim.stats()
        result.extra.update(
            client=name,
            makespan_simulated_s=round(result.makespan / cfg.scale, 1),
            ideal_simulated_s=round(cfg.ideal_makespan(), 1),
            makespan_over_ideal=round(result.makespan / ideal_real, 2),
            tokens_delivered=stats.tokens_delivered,
            tokens_wasted=stats.tokens_wasted,
            wasted_pct=round(100 * stats.tokens_wasted / max(1, stats.tokens_delivered), 1),
            faults_injected=dict(stats.faults_injected),
            peak_waiting=stats.peak_waiting,
        )
        if isinstance(client, AsyncOpenAI):  # the library's run
            result.extra["client_stats"] = client.stats().as_dict()
    return result, samples


async def _close(client: Any) -> None:
    close = getattr(client, "close", None)
    if close is not None:
        with anyio.move_on_after(5):
            await close()


def _table(results: list[RunResult], cfg: DemoConfig) -> Table:
    table = Table(
        title=f"ARC-shaped workload, {cfg.workload.calls} calls, faults "
        f"{', '.join(f'{k} {v:.0%}' for k, v in (cfg.faults or INCIDENT_FAULTS).items())}",
        caption=(
            "hung: waiting on an answer when the run was stopped; not run: held behind a hung call of its "
            f"task. makespan in simulated seconds; + : stopped at the cut-off, {cfg.limit_factor:g} × ideal "
            f"= {cfg.cutoff():.0f} s"
        ),
    )
    for col in ("run", "ok", "failed", "hung", "not run", "makespan", "÷ ideal", "wasted tokens"):
        table.add_column(col, justify="left" if col == "run" else "right", no_wrap=True)
    for r in results:
        s = r.summary()
        cut = "+" if r.limit_hit else ""
        table.add_row(
            r.label,
            str(s["ok"]),
            str(s["failed"]),
            f"[bold red]{s['hung']}[/]" if s["hung"] else "0",
            f"[bold red]{s['not_run']}[/]" if s["not_run"] else "0",
            f"{s['makespan_simulated_s']:.0f}{cut}",
            f"{s['makespan_over_ideal']:.2f}{cut}",
            f"{s['tokens_wasted']:,} ({s['wasted_pct']:.1f}%)",
        )
    return table


async def run_demo(cfg: DemoConfig, console: Console | None = None) -> list[RunResult]:
    if console is None:
        console = Console()
        if not console.is_terminal and console.width < 120:  # a log file or CI: room for bars and table
            console = Console(width=120)
    quiet = logging.getLogger("resilient_llm")
    level = quiet.level
    quiet.setLevel(logging.ERROR)  # the progress bars and the table tell the story; restored below
    try:
        return await _run_all(cfg, console)
    finally:
        quiet.setLevel(level)


async def _run_all(cfg: DemoConfig, console: Console) -> list[RunResult]:
    console.print(
        f"[bold]resilient-llm demo[/]: a simulated vLLM (capacity {cfg.capacity}) with the incident's faults; "
        f"time scale {cfg.scale:g} (1 simulated second = {cfg.scale * 1000:.0f} ms); "
        f"ideal makespan {cfg.ideal_makespan():.0f} simulated s. A run still going at the cut-off, "
        f"{cfg.limit_factor:g} × ideal = {cfg.cutoff():.0f} simulated s, is stopped: its calls waiting on "
        "an answer count as hung, those held behind them as not run."
    )
    runs = [("incident settings", "incident"), ("resilient_llm defaults", "library")]
    results: list[RunResult] = []
    all_samples: dict[str, list[dict[str, Any]]] = {}
    started = time.monotonic()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(bar_width=24),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"),
        console=console,
    ) as progress:
        for label, which in runs:
            result, samples = await _one_run(cfg, label, which, progress, console)
            results.append(result)
            all_samples[label] = samples
    console.print(_table(results, cfg))
    cfg.out_dir.mkdir(parents=True, exist_ok=True)
    report = {
        "time_scale": cfg.scale,
        "capacity": cfg.capacity,
        "workload": cfg.workload.__dict__,
        "faults": cfg.faults or INCIDENT_FAULTS,
        "ideal_makespan_simulated_s": round(cfg.ideal_makespan(), 1),
        "limit_factor": cfg.limit_factor,
        "cutoff_simulated_s": round(cfg.cutoff(), 1),
        "runs": [r.summary() for r in results],
        "queue_samples": all_samples,
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    json_path = cfg.out_dir / "demo.json"
    json_path.write_text(json.dumps(report, indent=2, default=str))
    console.print(f"wrote {json_path}")
    if cfg.chart:
        from ._chart import write_chart

        png = write_chart(report, cfg.out_dir / "demo.png")
        console.print(f"wrote {png}")
    return results
