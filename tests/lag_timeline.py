"""Timelines for the lag tracker and the orphan rule: model servers, a client, and the monitor's wiring.

No clock, no I/O: a server model says, for explicit times, what ``/metrics`` shows and what the client
receives; :func:`run` scrapes it every ``interval`` seconds and feeds :class:`LagTracker` and
:class:`OrphanDetector` exactly as the monitor is to do, aborting and retrying the attempts they pick.

Two models:

- :class:`StepServer`, vLLM's engine loop as ``docs/real-vllm.md`` describes it: steps run back to back;
  a step admits every request that arrived before it started (up to ``capacity`` running, the rest
  wait, counted), lasts ``overhead + per_decode × running`` plus, when it admits any,
  ``prefill_overhead + per_prefill × admitted``, and the gauges are
  written when it ends. A request is counted from the end of the step that first sees it, gets one token
  per step (its first at that step's end), and leaves the gauges when it finishes. A burst on an idle
  engine thus shows ``running 1`` while its other requests are prefilled in one long step, as measured.
- :class:`IntervalServer`: each request is counted from ``sent + appear(request)`` to ``done + leave``
  and streams from the first instant to ``done``: fixed or burst-shaped lags with exact times.

Faults per request: ``"lost"`` (never reaches the server), ``"ghost"`` (served, but the client receives
nothing after ``ghost_after`` tokens), ``"forget"`` is a server event (:meth:`StepServer.forget`, the
incident's ``Running: 0`` while connections stay open).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from resilient_llm._load import ServerLoad
from resilient_llm._vllm._lag import Ended, LagTracker
from resilient_llm._vllm._orphans import OrphanDetector

US, OTHER = "us", "other"


@dataclass(eq=False)
class Request:
    sent: float
    tokens: int = 50
    fault: str | None = None  # None, "lost", "ghost"
    ghost_after: int = 0  # tokens the client receives before a ghost goes silent
    owner: str = US
    # what the client sees
    first_byte: float | None = None
    last_byte: float | None = None
    ended: float | None = None  # the answer's end reached the client
    failed: float | None = None  # a connection error (restart)
    aborted: float | None = None  # by the orphan rule
    # what the server did
    counted: float | None = None
    done: float | None = None
    dropped: float | None = None  # forgotten by the server (forget / restart)
    generated: int = 0

    def receives(self) -> bool:
        return self.fault != "ghost" or self.generated <= self.ghost_after

    def open_at(self, t: float) -> bool:
        return self.sent <= t and all(x is None or x > t for x in (self.ended, self.failed, self.aborted))

    def silent_since(self) -> float:
        return self.last_byte if self.last_byte is not None else self.sent

    def orphan_since(self) -> float | None:
        """Since when the server no longer holds this request while the client still waits on it."""
        if self.fault == "lost":
            return self.sent
        return self.dropped if self.dropped is not None else self.done if self.fault == "ghost" else None


class StepServer:
    """vLLM's engine loop, step by step (module docstring)."""

    def __init__(
        self,
        *,
        overhead: float,
        per_prefill: float,
        per_decode: float,
        prefill_overhead: float = 0.0,
        capacity: int = 256,
        arrival_delay: float = 0.0,
    ) -> None:
        self.overhead, self.per_prefill, self.per_decode = overhead, per_prefill, per_decode
        self.prefill_overhead = prefill_overhead
        self.capacity, self.arrival_delay = capacity, arrival_delay
        self.inbox: list[Request] = []  # not yet seen by a step
        self.waiting: list[Request] = []
        self.running: list[Request] = []
        self.clock = 0.0  # end of the last step
        self.shown = (0, 0)  # the gauges, as written at the end of the last step
        self.slowdown: list[tuple[float, float]] = []  # (from, factor): step durations scale

    def submit(self, req: Request) -> None:
        if req.fault != "lost":
            self.inbox.append(req)

    def cancel(self, req: Request, t: float) -> None:
        """A client disconnect: the engine drops the request at its next step."""
        req.dropped = req.dropped if req.dropped is not None else t

    def forget(self, t: float) -> None:
        """The incident: the engine loses every request it holds; connections stay open, silent."""
        self.advance(t)
        for req in [*self.inbox, *self.waiting, *self.running]:
            req.dropped = t
        self.inbox, self.waiting, self.running = [], [], []
        self.shown, self.clock = (0, 0), max(self.clock, t)

    def _factor(self, t: float) -> float:
        return math.prod(f for since, f in self.slowdown if since <= t)

    def _arrival(self, req: Request) -> float:
        return req.sent + self.arrival_delay

    def advance(self, until: float) -> None:
        """Run every step that ends by ``until``."""
        while True:
            self.inbox = [r for r in self.inbox if r.dropped is None]
            held = len(self.running) + len(self.waiting)
            self.running = [r for r in self.running if r.dropped is None]
            self.waiting = [r for r in self.waiting if r.dropped is None]
            if self.running or self.waiting:
                begin = self.clock
            elif self.inbox and min(map(self._arrival, self.inbox)) <= until:
                begin = max(self.clock, min(map(self._arrival, self.inbox)))
            else:
                if held:  # the last requests were dropped while nothing ran: the gauges say so
                    self.shown = (0, 0)
                return
            seen = sorted((r for r in self.inbox if self._arrival(r) <= begin), key=self._arrival)
            queue = self.waiting + seen
            admitted = queue[: max(0, self.capacity - len(self.running))]
            work = self.overhead + self.per_decode * len(self.running)
            if admitted:
                work += self.prefill_overhead + self.per_prefill * len(admitted)
            end = begin + work * self._factor(begin)
            if end > until:
                return
            self.clock = end
            self.inbox = [r for r in self.inbox if r not in seen]
            self.waiting = queue[len(admitted) :]
            for r in admitted:
                r.counted = end
            still = []
            for r in self.running + admitted:
                r.generated += 1
                if r.receives() and r.owner == US:
                    r.first_byte = end if r.first_byte is None else r.first_byte
                    r.last_byte = end
                if r.generated < r.tokens:
                    still.append(r)
                    continue
                r.done = end
                if r.receives():
                    r.ended = end
            self.running = still
            self.shown = (len(self.running), len(self.waiting))

    def gauges(self, t: float) -> tuple[int, int]:
        self.advance(t)
        return self.shown

    def holds(self, req: Request, t: float) -> bool:
        """Would still answer ``req`` (aborting it would be a false orphan)."""
        self.advance(t)
        return req.dropped is None and req.fault != "lost" and req.done is None


class EarlyAnswers(StepServer):
    """Not vLLM: answers start when a step admits a request, but ``/metrics`` counts it only ``lag``
    after it arrived (the simulator's ``"arrivals"`` mode; a stale ``/metrics`` behind a cache)."""

    def __init__(self, lag: float, **params: float) -> None:
        super().__init__(**params)  # type: ignore[arg-type]
        self.lag = lag

    def gauges(self, t: float) -> tuple[int, int]:
        self.advance(t)
        shown = t - self.lag - self.arrival_delay
        queued = [*self.waiting, *(r for r in self.inbox if r.dropped is None)]
        return sum(r.sent <= shown for r in self.running), sum(r.sent <= shown for r in queued)


class IntervalServer:
    """Each request counted from ``sent + appear(req)`` until ``done + leave``; it streams from then."""

    def __init__(
        self,
        *,
        appear: Callable[[Request, list[Request]], float],
        token_time: float = 0.05,
        leave: float = 0.0,
    ) -> None:
        self.appear, self.token_time, self.leave = appear, token_time, leave
        self.requests: list[Request] = []

    def submit(self, req: Request) -> None:
        if req.fault == "lost":
            return
        lag = self.appear(req, self.requests)
        self.requests.append(req)
        req.counted = req.sent + lag
        req.done = req.counted + req.tokens * self.token_time
        if req.owner == US:
            if req.fault != "ghost" or req.ghost_after > 0:
                req.first_byte = req.counted
            if req.fault != "ghost":
                req.ended = req.done

    def cancel(self, req: Request, t: float) -> None:
        if req.dropped is None and (req.done is None or req.done > t):
            req.dropped = t
            req.done = min(req.done or t, t)
            req.ended = None

    def advance(self, until: float) -> None:
        for req in self.requests:
            if req.owner != US or req.first_byte is None or req.fault == "lost":
                continue
            assert req.counted is not None and req.done is not None  # set by submit
            stop = req.done if req.fault != "ghost" else req.counted + req.ghost_after * self.token_time
            req.last_byte = min(until, stop) if until >= req.first_byte else None

    def gauges(self, t: float) -> tuple[int, int]:
        counted = 0
        for r in self.requests:
            if r.counted is None or r.counted > t:
                continue
            gone = r.dropped if r.dropped is not None else (r.done or math.inf) + self.leave
            if t < gone:
                counted += 1
        return counted, 0

    def holds(self, req: Request, t: float) -> bool:
        return req.fault != "lost" and req.dropped is None and (req.done is None or req.done > t)


def fixed_lag(lag: float) -> Callable[[Request, list[Request]], float]:
    return lambda req, earlier: lag


@dataclass
class Outcome:
    aborted: list[Request] = field(default_factory=list)
    false_orphans: list[Request] = field(default_factory=list)
    early: list[Request] = field(default_factory=list)  # ghosts aborted while the server still ran them
    delays: list[float] = field(default_factory=list)  # abort time − orphan_since, true orphans
    graces: list[tuple[float, float]] = field(default_factory=list)  # (scrape, grace)
    missed: list[Request] = field(default_factory=list)  # orphans not found in 2 x max_grace
    requests: list[Request] = field(default_factory=list)


Server = StepServer | IntervalServer


def run(
    server: Server,
    workload: Iterable[Request],
    *,
    until: float,
    interval: float = 0.5,
    tick: float = 0.05,
    cap: int | None = 64,
    tracker: LagTracker | None = None,
    max_grace: float = 10.0,
    learn: bool = True,
    events: Iterable[tuple[float, Callable[[float], None]]] = (),
    down: Iterable[tuple[float, float]] = (),
    reset_on_restart: bool = False,
) -> Outcome:
    """Run the client and the server from 0 to ``until`` in steps of ``tick``, scraping every
    ``interval`` and running the orphan rule as the monitor is to do; each abort is retried at once.

    Requests are sent at the first tick at or after their ``sent`` (which is updated) when ``cap``, the
    bound on this client's attempts in flight (the library's limiter; ``None``: none), leaves room.
    ``events`` are ``(time, action)``, applied at the first tick at or after ``time``. ``down`` are
    ``(from, to)`` spans when the server is unreachable (a restart): it forgets everything at ``from``,
    every open attempt of ours fails then and is re-sent at ``to``, and no scrape succeeds in between;
    with ``reset_on_restart`` the tracker and the detector forget what they learned.
    """
    tracker = tracker if tracker is not None else LagTracker(max_grace=max_grace)
    detector: OrphanDetector[Request] = OrphanDetector(grace=max_grace)
    due = sorted(workload, key=lambda r: r.sent)
    todo = sorted(events, key=lambda e: e[0])
    outages = sorted(down)
    ours: list[Request] = []
    out = Outcome(requests=ours)
    live: list[Request] = []  # ours not yet reported ended to the tracker
    per_scrape = max(1, round(interval / tick))
    outage: tuple[float, float] | None = None
    i = 0
    while (t := round(i * tick, 9)) <= until + 1e-9:
        i += 1
        while todo and todo[0][0] <= t:
            when, action = todo.pop(0)
            action(when)
        if outages and outages[0][0] <= t:
            outage = outages.pop(0)
            if isinstance(server, StepServer):
                server.forget(outage[0])
            for req in live:
                if req.open_at(outage[0]):
                    req.failed = outage[0]
                    due.append(Request(sent=outage[1], tokens=req.tokens))
            due.sort(key=lambda r: r.sent)
            if reset_on_restart:
                tracker.reset()
                detector.reset()
        if outage is not None and t >= outage[1]:
            outage = None
        server.advance(t)
        in_flight = sum(1 for r in live if r.open_at(t))
        while due and due[0].sent <= t and (due[0].owner != US or cap is None or in_flight < cap):
            req = due.pop(0)
            req.sent = t  # sends happen on the tick grid, never before the server's present
            server.submit(req)
            if req.owner == US:
                ours.append(req)
                live.append(req)
                in_flight += 1
        if outage is not None or (i - 1) % per_scrape:
            continue
        live[:] = _scrape(server, t, live, tracker, detector, learn, max_grace, out)
    # Orphans the rule had time to find whatever the grace: 2 x max_grace and two scrapes before the end.
    due_by = until - 2 * max_grace - 2 * interval
    out.missed = [r for r in ours if r.open_at(until) and (s := r.orphan_since()) is not None and s <= due_by]
    return out


def _scrape(
    server: Server,
    t: float,
    live: list[Request],
    tracker: LagTracker,
    detector: OrphanDetector[Request],
    learn: bool,
    max_grace: float,
    out: Outcome,
) -> list[Request]:
    """One poll of the monitor: what it is to pass to the tracker and the detector, and what it does.
    Returns the attempts still to report."""
    running, waiting = server.gauges(t)
    load = ServerLoad(running=running, waiting=waiting, kv_cache_usage=None, engines=1, scraped_at=t)
    ended: list[Ended] = []
    still: list[Request] = []
    for r in live:
        gave_up = r.aborted if r.aborted is not None else r.failed
        if gave_up is not None and gave_up <= t:
            ended.append(Ended(r.sent, gave_up, r.first_byte, abandoned=True))
        elif r.ended is not None and r.ended <= t:
            ended.append(Ended(r.sent, r.ended, r.first_byte))
        else:
            still.append(r)
    opened = [r for r in still if r.open_at(t)]
    started = [r for r in opened if r.first_byte is not None and r.first_byte <= t]
    grace = max_grace
    if learn:
        attempts = [(r.sent, r.first_byte if r in started else None) for r in opened]
        grace = tracker.observe(load, attempts, ended=ended)
    out.graces.append((t, grace))
    known = sum(1 for r in opened if r.sent <= t - grace or r in started)
    silent = [(r, r.silent_since()) for r in opened]
    for victim in detector.observe(load, silent, t, known=known, streaming=started, grace=grace):
        victim.aborted = t
        out.aborted.append(victim)
        since = victim.orphan_since()
        if since is not None and since <= t:
            out.delays.append(t - since)
        elif victim.fault is None:
            out.false_orphans.append(victim)  # a healthy attempt: its answer would have come
        else:
            out.early.append(victim)  # a ghost the server still runs: doomed, no loss
        server.cancel(victim, t)
        again = Request(sent=t, tokens=victim.tokens)
        server.submit(again)
        out.requests.append(again)
        still.append(again)
    return still


def burst(at: float, count: int, *, tokens: int = 50, owner: str = US, spread: float = 0.0) -> list[Request]:
    """``count`` requests sent at ``at`` (evenly over ``spread`` seconds)."""
    step = spread / count if count else 0.0
    return [Request(sent=at + i * step, tokens=tokens, owner=owner) for i in range(count)]


def cpu_server(**kwargs: float) -> StepServer:
    """The CPU vLLM of ``docs/real-vllm.md``, rounded up as the brief has it: one request alone is counted
    after about 0.9 s, a burst of 64 on an idle engine after about 14 s; decoding 64 takes 0.5 s a step
    (130 tokens/s), one alone 0.06 s (17 tokens/s)."""
    params = {
        "overhead": 0.05,
        "prefill_overhead": 0.6,
        "per_prefill": 0.2,
        "per_decode": 0.007,
        "arrival_delay": 0.05,
    }
    params.update(kwargs)
    return StepServer(**params)  # type: ignore[arg-type]


def fast_server(**kwargs: float) -> StepServer:
    """A GPU-like server: steps of milliseconds to tens of them; a burst of 64 is counted in 0.2 s."""
    params = {
        "overhead": 0.01,
        "prefill_overhead": 0.02,
        "per_prefill": 0.002,
        "per_decode": 0.0002,
        "arrival_delay": 0.02,
    }
    params.update(kwargs)
    return StepServer(**params)  # type: ignore[arg-type]
