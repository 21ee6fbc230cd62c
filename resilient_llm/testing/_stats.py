"""What the simulator counts, for tests, the demo and ``GET /simulator/stats``."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["InFlightGauge", "QueueSample", "SimulatorStats", "StatsRecorder"]


@dataclass(frozen=True, slots=True)
class QueueSample:
    """Queue depth at one moment; ``elapsed`` is real seconds since the simulator started."""

    elapsed: float
    running: int
    waiting: int
    kv_cache_usage: float


@dataclass(frozen=True, kw_only=True)
class SimulatorStats:
    """A snapshot of the simulator's counters (they survive restarts).

    ``tokens_wasted`` counts tokens the engine generated that never reached a client (ghosts,
    aborted and dropped requests, cut streams); it is settled when a request's handler ends, so
    ``tokens_generated == tokens_delivered + tokens_wasted`` once no request is in flight.

    ``peak_in_flight``: the most generation requests (chat, completions, embeddings) that were being
    handled at once, from arrival to the end of their handler, refused ones included — what a global
    concurrency limit in front of the server must keep at or below its limit.
    """

    requests_received: int = 0
    requests_completed: int = 0
    requests_aborted: int = 0
    faults_injected: dict[str, int] = field(default_factory=dict)
    tokens_generated: int = 0
    tokens_delivered: int = 0
    tokens_wasted: int = 0
    peak_waiting: int = 0
    peak_running: int = 0
    peak_in_flight: int = 0
    restarts: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class InFlightGauge:
    """Requests in flight now and the most at once; one per simulator, or shared by several replicas."""

    __slots__ = ("current", "peak")

    def __init__(self) -> None:
        self.current = 0
        self.peak = 0

    def enter(self) -> None:
        self.current += 1
        if self.current > self.peak:
            self.peak = self.current

    def exit(self) -> None:
        self.current -= 1


class StatsRecorder:
    """The mutable counters behind :class:`SimulatorStats`; one per simulator."""

    def __init__(self) -> None:
        self.requests_received = 0
        self.requests_completed = 0
        self.requests_aborted = 0
        self.faults: Counter[str] = Counter()
        self.tokens_generated = 0
        self.tokens_delivered = 0
        self.tokens_wasted = 0
        self.peak_waiting = 0
        self.peak_running = 0
        self.in_flight = InFlightGauge()
        self.restarts = 0

    def observe_queue(self, running: int, waiting: int) -> None:
        if running > self.peak_running:
            self.peak_running = running
        if waiting > self.peak_waiting:
            self.peak_waiting = waiting

    def settle(self, generated: int, delivered: int) -> None:
        """Account one finished request: what it generated, what reached its client."""
        self.tokens_generated += generated
        self.tokens_delivered += delivered
        self.tokens_wasted += generated - delivered

    def snapshot(self) -> SimulatorStats:
        return SimulatorStats(
            requests_received=self.requests_received,
            requests_completed=self.requests_completed,
            requests_aborted=self.requests_aborted,
            faults_injected=dict(sorted(self.faults.items())),
            tokens_generated=self.tokens_generated,
            tokens_delivered=self.tokens_delivered,
            tokens_wasted=self.tokens_wasted,
            peak_waiting=self.peak_waiting,
            peak_running=self.peak_running,
            peak_in_flight=self.in_flight.peak,
            restarts=self.restarts,
        )
