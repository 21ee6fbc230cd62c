"""``client.stats()``: a snapshot of what the client is doing and has done."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(slots=True)
class Counters:
    """Running totals since the client was created (shared by ``with_options`` copies)."""

    calls: int = 0
    calls_ok: int = 0
    calls_failed: int = 0
    calls_cancelled: int = 0
    attempts: int = 0
    retries: int = 0
    deadlines_exceeded: int = 0
    stalls: int = 0
    orphans: int = 0
    circuit_open_rejections: int = 0
    budget_exhausted: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """One immutable snapshot.

    ``in_flight``: calls holding a limiter slot; ``queued``: calls waiting for one; ``held_by_breaker``:
    of those, how many the breaker keeps out; ``capacity``: how many may be in flight right now (the
    smallest of max_concurrency, the ramp's limit and the breaker's allowance); ``ramp_level``: 0..1;
    ``retry_budget_available``: retries that may start now. From the server's ``/metrics``:
    ``server_capacity``, its batch capacity once seen (``running`` while requests waited);
    ``metrics_lag``, how long it takes to count this client's requests, as learned (seconds; ``None``
    until learned); ``metrics_leave_lag``, how long a finished one stays counted; ``orphan_grace``, the
    orphan rule's grace sized from that lag (``None``: detection off). The rest are totals (see
    :class:`Counters`).
    """

    in_flight: int
    queued: int
    held_by_breaker: int
    capacity: int
    ramp_level: float
    retry_budget_available: float
    breaker_state: str
    breaker_reason: str
    metrics_available: bool
    server_capacity: int | None = None
    metrics_lag: float | None = None
    metrics_leave_lag: float | None = None
    orphan_grace: float | None = None
    calls: int
    calls_ok: int
    calls_failed: int
    calls_cancelled: int
    attempts: int
    retries: int
    deadlines_exceeded: int
    stalls: int
    orphans: int
    circuit_open_rejections: int
    budget_exhausted: int

    @classmethod
    def snapshot(cls, counters: Counters, **live: Any) -> Stats:
        totals = {f.name: getattr(counters, f.name) for f in fields(Counters)}
        return cls(**totals, **live)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
