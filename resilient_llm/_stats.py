"""``client.stats()``: a snapshot of what the client is doing and has done."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

#: Whether the limits are shared with other processes: ``"shared"`` (through Redis), ``"local"``
#: (coordination is on but Redis does not answer, or not yet: each process on its fair share) or
#: ``"off"`` (no ``coordination`` given).
CoordinationMode = Literal["shared", "local", "off"]


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
    hedges: int = 0
    hedges_won: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaStats:
    """One server of the client, as :attr:`Stats.replicas` lists them (one entry without ``replicas=``).

    ``url``: its base URL, credentials masked; ``in_flight`` / ``capacity``: this client's calls there
    and how many may be now (its own ``max_concurrency``, ramp, breaker and server cap);
    ``running`` / ``waiting`` / ``kv_cache_usage``: its last fresh ``/metrics`` (``None`` when none);
    ``models``: what its ``/v1/models`` lists (``None``: not known, so any); ``attempts`` /
    ``failures``: attempts sent there and those that failed, since the client was created;
    ``server_capacity``, ``metrics_lag``, ``metrics_leave_lag``, ``orphan_grace``: as in :class:`Stats`,
    for this server.
    """

    url: str
    in_flight: int
    capacity: int
    ramp_level: float
    breaker_state: str
    breaker_reason: str
    metrics_available: bool
    running: int | None
    waiting: int | None
    kv_cache_usage: float | None
    models: tuple[str, ...] | None
    attempts: int
    failures: int
    server_capacity: int | None = None
    metrics_lag: float | None = None
    metrics_leave_lag: float | None = None
    orphan_grace: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Stats:
    """One immutable snapshot.

    ``in_flight``: calls holding a limiter slot; ``queued``: calls waiting for one; ``held_by_breaker``:
    of those, how many the breaker keeps out; ``capacity``: how many may be in flight right now (the
    smallest of max_concurrency, the ramp's limit and the breaker's allowance); ``ramp_level``: 0..1;
    ``retry_budget_available``: retries that may start now (the fleet's, with coordination). From the
    server's ``/metrics``: ``server_capacity``, its batch capacity once seen (``running`` while
    requests waited); ``metrics_lag``, how long it takes to count this client's requests, as learned
    (seconds; ``None`` until learned); ``metrics_leave_lag``, how long a finished one stays counted;
    ``orphan_grace``, the orphan rule's grace sized from that lag (``None``: detection off). The rest
    are totals (see :class:`Counters`); ``hedges`` counts hedged copies sent for answers that arrived
    far slower than the server's others, ``hedges_won`` those whose answer was used.

    With several replicas the first fields cover them all: ``capacity``, ``in_flight`` and
    ``server_capacity`` are sums, ``ramp_level`` the mean, the lags and the grace the longest,
    ``breaker_state`` the state of the replica most open to calls (``"closed"`` while any is) and
    ``breaker_reason`` how many are closed; ``replicas`` has each one's own (:class:`ReplicaStats`).
    ``coordination`` says whether limits are shared with other processes.
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
    hedges: int = 0
    hedges_won: int = 0
    coordination: CoordinationMode = "off"
    replicas: tuple[ReplicaStats, ...] = ()

    @classmethod
    def snapshot(cls, counters: Counters, **live: Any) -> Stats:
        totals = {f.name: getattr(counters, f.name) for f in fields(Counters)}
        return cls(**totals, **live)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
