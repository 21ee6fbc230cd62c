"""An ARC-shaped workload: tasks started together, rounds of parallel calls, long-tailed answers.

This is the shape of the pipeline in the incident report: every task runs several rounds; each round
fires a handful of calls at once and gathers them with ``return_exceptions=True`` (so a failed call
does not stop the round, and a hung call stops the whole task). Answer lengths are drawn from a seeded
log-normal distribution and sent to the simulator in ``extra_body={"simulator": {"output_tokens": n}}``.

A run is bounded: after ``limit`` seconds everything still pending is cancelled and counted as *hung*
(started, never answered) or *not run* (queued behind a hung call of its task).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio

from ..testing import SimulatorConfig

Status = Literal["ok", "failed", "hung", "not_run"]

#: The JSON object an ARC call must return (the keys the pipeline's structures read).
ARC_KEYS = ("instructions", "grid", "reasoning_for_why_old_instructions_are_wrong", "revised_instructions")


@dataclass(frozen=True, kw_only=True)
class ArcWorkload:
    """How much work: ``tasks`` × ``rounds`` × ``calls_per_round`` calls of long-tailed length."""

    tasks: int = 8
    rounds: int = 3
    calls_per_round: int = 12
    median_tokens: int = 350
    sigma: float = 0.7
    max_answer_tokens: int = 2500
    seed: int = 7

    def __post_init__(self) -> None:
        for name in ("tasks", "rounds", "calls_per_round", "median_tokens", "max_answer_tokens"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not (math.isfinite(self.sigma) and self.sigma >= 0):
            raise ValueError(f"sigma must be a finite number >= 0, got {self.sigma!r}")

    def plan(self) -> list[list[list[int]]]:
        """Answer length of every call: ``plan[task][round][call]``, the same for a given seed."""
        rng = random.Random(self.seed)
        return [
            [
                [
                    max(
                        16,
                        min(
                            self.max_answer_tokens,
                            round(self.median_tokens * math.exp(self.sigma * rng.gauss(0, 1))),
                        ),
                    )
                    for _ in range(self.calls_per_round)
                ]
                for _ in range(self.rounds)
            ]
            for _ in range(self.tasks)
        ]

    @property
    def calls(self) -> int:
        return self.tasks * self.rounds * self.calls_per_round

    def total_tokens(self) -> int:
        return sum(n for task in self.plan() for rnd in task for n in rnd)

    def ideal_makespan(self, sim: SimulatorConfig, *, prompt_tokens: int = 100) -> float:
        """Simulated seconds on a perfectly packed server: total work ÷ capacity.

        Work per call is its prefill plus its tokens at the per-token time of a full batch.
        """
        per_token = sim.token_time * (1 + sim.batch_slowdown * (sim.capacity - 1))
        prompt = prompt_tokens * sim.prefill_time_per_token
        work = sum(prompt + n * per_token for task in self.plan() for rnd in task for n in rnd)
        return work / (sim.capacity * sim.engines)


@dataclass(slots=True)
class CallOutcome:
    task: int
    round: int
    index: int
    tokens: int
    status: Status = "not_run"
    error: str | None = None
    started: float | None = None
    finished: float | None = None


@dataclass
class RunResult:
    label: str
    outcomes: list[CallOutcome]
    makespan: float  # real seconds from start to the last call's end (or to the limit when calls hung)
    limit_hit: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def count(self, status: Status) -> int:
        return sum(1 for o in self.outcomes if o.status == status)

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "calls": len(self.outcomes),
            "ok": self.count("ok"),
            "failed": self.count("failed"),
            "hung": self.count("hung"),
            "not_run": self.count("not_run"),
            "makespan_s": round(self.makespan, 3),
            "limit_hit": self.limit_hit,
            **self.extra,
        }


CallFn = Callable[[int, int], Awaitable[str | None]]
"""``call(output_tokens, max_tokens) -> content``: one chat call of the client under test."""


def check_arc_json(content: str | None) -> None:
    """Raise ``ValueError`` unless ``content`` is the JSON object the pipeline's structures accept."""
    if not content:
        raise ValueError("empty content")
    data = json.loads(content)
    if not isinstance(data, dict) or any(key not in data for key in ARC_KEYS):
        raise ValueError(
            f"JSON without the expected keys: {sorted(data) if isinstance(data, dict) else type(data)}"
        )


async def run_workload(
    call: CallFn,
    workload: ArcWorkload,
    *,
    label: str,
    stagger: float = 0.0,
    limit: float,
    on_progress: Callable[[CallOutcome], None] | None = None,
) -> RunResult:
    """Run every task at once (task ``i`` first sleeps ``i * stagger``), bounded by ``limit`` seconds."""
    plan = workload.plan()
    outcomes = [
        CallOutcome(task=t, round=r, index=i, tokens=n)
        for t, rounds in enumerate(plan)
        for r, calls in enumerate(rounds)
        for i, n in enumerate(calls)
    ]
    by_key = {(o.task, o.round, o.index): o for o in outcomes}
    start = time.monotonic()

    async def one(outcome: CallOutcome) -> None:
        outcome.started = time.monotonic() - start
        outcome.status = "hung"  # until it ends
        try:
            content = await call(outcome.tokens, workload.max_answer_tokens + 64)
            check_arc_json(content)
            outcome.status = "ok"
        except Exception as exc:
            outcome.status = "failed"
            outcome.error = f"{type(exc).__name__}: {exc}"[:300]
        outcome.finished = time.monotonic() - start
        if on_progress is not None:
            on_progress(outcome)

    async def task(t: int) -> None:
        if stagger:
            await anyio.sleep(t * stagger)
        for r in range(workload.rounds):
            async with anyio.create_task_group() as tg:  # gather(..., return_exceptions=True)
                for i in range(workload.calls_per_round):
                    tg.start_soon(one, by_key[(t, r, i)])

    limit_hit = True
    with anyio.move_on_after(limit):
        async with anyio.create_task_group() as tg:
            for t in range(workload.tasks):
                tg.start_soon(task, t)
        limit_hit = False
    ends = [o.finished for o in outcomes if o.finished is not None]
    makespan = limit if limit_hit else (max(ends) if ends else 0.0)
    return RunResult(label=label, outcomes=outcomes, makespan=makespan, limit_hit=limit_hit)
