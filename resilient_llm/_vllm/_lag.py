"""The ``/metrics`` lag, learned at run time: how long the orphan rule must wait before it trusts a count.

The orphan rule (``_orphans.py``) takes an attempt for forgotten when the server's count of requests
(``running + waiting``) stays below this client's attempts for ``grace`` seconds. A fixed grace must cover
the worst lag any server shows, so on a fast server an orphan costs ``2 × grace`` = 20 s. The
:class:`LagTracker` learns from the server's own counts how long *this* server takes to count *this*
client's requests, at the load it is under, and sizes the grace from that.

What the lag is
---------------
vLLM writes its gauges when an engine step ends and counts a request from the end of the first step that
sees it (``docs/real-vllm.md``): after the step in progress and its own. That is well under a second for
one request, and seconds when a CPU prefills a burst in one step (64 requests: 6-8 s, 13.5 s with the CPU
shared; one alone: 0.2-0.6 s). So the lag grows with the *load*: the requests to prefill (a burst) and
the requests running (each step decodes them all). Steps see arrivals in order, so on one engine the
requests not yet counted are the newest. Finished requests leave the gauges at once on vLLM; a proxy or
an older server may keep them a while (the *leave lag*).

The rule
--------
One call per scrape at ``T``: ``A = running + waiting``; ``(sent, started)`` of this client's ``n``
attempts open at the scrape; the attempts that ended since the previous call, answered by the server
(with an answer or an error) or *abandoned* by the client (orphan aborts, stalls, deadlines, transport
errors).

1. *Ends that may still be counted.* ``F``: the ends within the leave bound of ``T`` (or after it):
   answered ones within ``leave_lag`` (``max_grace`` until one is learned), abandoned ones within
   ``max(leave_lag, min_grace)`` (a server notices a disconnect at its next step).
2. *Leave lag.* A scrape with ``running <= started`` shows that no ended attempt of this client is still
   counted (each started one runs, and others only add), so the latest answered end ``f`` not yet
   confirmed left within ``T − f``: a sample. ``leave_lag`` is the median sample in the window: a bound
   for most requests when they leave alike (vLLM at once, a lagging snapshot after its delay), which one
   odd scrape (a ghost or a preempted answer taken for a running one) cannot pull down.
3. *Other clients.* ``A − n − F > 0`` can only be other clients' requests; ``E`` is the largest such
   excess in the window. They hide deficits (safe), and may send bursts this client cannot see, so ``E``
   counts as pending load in rule 5.
4. *Samples.* At least ``r = A − F − E`` open attempts of this client are counted. On one engine they
   include the oldest ``r``: steps see arrivals in order, and an orphan can only take a counted place
   from a newer attempt, which is then credited later (its lag over-, never under-estimated). Attempts
   cross this *frontier* in send order (with several engines, whose order is unknown, only at a scrape
   where ``r ≥ n``). A crossing attempt was counted by ``min(T, started)`` (a started answer has been
   scheduled); one not started yet is in doubt (an orphan may have held its place) until it starts, and
   is dropped if abandoned, as is any unstarted one sent before an abandoned attempt. The ``k`` confirmed
   attempts of one crossing, with those answered since the frontier last moved, make a *sample* at server
   load ``a = A``: each was counted within ``hi`` (since it was sent), and not before the previous scrape
   if it had neither crossed nor started by then (``lo``); ``b`` is the largest ``max(hi, headroom ×
   lo)``: ``hi`` has up to a scrape interval of slack, ``headroom`` covers run-to-run variation of long
   lags (6-8 s for the same burst). Samples are forgotten after ``window`` seconds, so a server that got
   faster is trusted again.
5. *Load.* A scrape has ``P = max(0, n + F − A) + E`` requests possibly pending (this client's uncounted
   ones, plus a foreign burst as large as seen) and ``W = A + max(0, n + F − A)`` to run once they are
   counted. The model: the lag does not grow when neither grows, and at most in proportion to the larger
   growth, ``lag(ρP, ρW) ≤ ρ · lag(P, W)`` for ``ρ ≥ 1`` (a step is prefill plus decode work; batching
   only saves).
6. *Bound.* A sample ``(k, a, b)`` *covers* ``(P, W)`` when ``k ≥ P`` and ``a ≥ W``; the covering samples
   of the nearest size (``k`` within twice the smallest) give their largest ``b``; every other sample
   gives ``b · max(P/k, W/a)``. ``appear_lag`` is the smallest of these; with no sample, none.
7. *Grace.* ``clamp(appear_lag, min_grace, max_grace)``; ``max_grace`` without a bound: before any
   evidence, and at a larger load than any seen (extrapolated past it). A grace drawn from evidence
   never decreases while ``A < n + F + E``; a scrape where every open attempt is counted ends that run,
   as it ends the orphan rule's (whose deficit is at most ``n − A ≤ 0`` then). The ``max_grace`` given
   before any evidence binds no later scrape: once evidence comes in, the grace drawn from it applies.

Guarantees
----------
With the orphan rule given this grace at every scrape (for ``known``, eligibility and persistence):

- No false orphan while every attempt of this client is counted within the grace in force, nor for a
  batch sent within ``σ`` seconds whose lag is under ``2 × grace − σ`` (``_orphans.py``, rule 6). Before
  any evidence that is today's rule: ``max_grace = 10`` s covers the 13.5 s burst. After, the grace is at
  least ``b`` of a covering sample, or rule 6's extrapolation: a false orphan needs the server to be
  over twice as slow as it showed at a load at least as large, or slower than the model extrapolates.
- An attempt the server forgot (lost, or ghosted: finished while the client heard nothing) is aborted
  within ``2 × grace + Δ`` of going silent (``Δ``: the scrape interval; ``grace``: the largest of its run,
  at most ``max_grace``) when the server counts no other request than this client's other attempts, all
  counted. Where a sample covers the run's load and its requests were counted within ``lag``, ``grace ≤
  max(min_grace, lag + Δ, headroom × lag)``: on a server that counts within 0.2 s, under 2 s at
  ``Δ = 0.5`` s, against 20 s for a fixed 10 s. Other requests the server counts (another client's, or
  this client's newest, counted but not yet ``grace`` old) hide the orphan and delay it, as for any grace.
- On the model servers of the tests, it never aborts a healthy request where a fixed ``max_grace`` would
  not (a property over random bursts, faults and server speeds).

``tests/test_lag.py`` drives tracker and orphan rule together, scrape by scrape, over fast, CPU-like,
shared, restarting, snapshot-lagged and forgetting servers and the recorded vLLM bursts, and checks both.

What it cannot see: a burst of another client whose requests it never saw counted (nothing bounds its
size), and a server more than twice as slow as it showed at the same load (a second tenant on its GPU).
It assumes, as the orphan rule does, that a started answer has been counted: true of vLLM, whose gauges
are written by the step that makes the first token; false of a server that streams before its
``/metrics`` counts (a stale ``/metrics`` behind a cache, the simulator's ``"arrivals"`` and
``"snapshot"`` lag modes, not its ``"steps"`` mode), where it learns a lag too short.
The monitor calls :meth:`LagTracker.reset` when the server restarts or the URL changes. The tracker is
pure: no clock, no I/O, no logging; the caller passes the times.
"""

from __future__ import annotations

import math
import statistics
from bisect import bisect_right, insort
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .._load import ServerLoad
from .._policies._validate import check_number

__all__ = [
    "DEFAULT_HEADROOM",
    "DEFAULT_MAX_GRACE",
    "DEFAULT_MIN_GRACE",
    "DEFAULT_WINDOW",
    "Ended",
    "LagTracker",
]

DEFAULT_MIN_GRACE = 0.5  # about one poll interval
DEFAULT_MAX_GRACE = 10.0  # today's fixed grace: tolerates the 13.5 s CPU burst (rule 6 of _orphans.py)
DEFAULT_WINDOW = 300.0
DEFAULT_HEADROOM = 1.5  # the same 64-request burst took 5.9-8.1 s warm on one CPU server
_MAX_KEPT = 1024  # observations of each kind; at most one per scrape


class Ended(NamedTuple):
    """An attempt that ended since the previous scrape (times on the scrapes' clock).

    ``started_at``: when its answer started arriving (``None``: it never did); ``abandoned``: the client
    gave up on it or its connection broke (an orphan abort, a stall, a deadline, a cancellation, a
    transport error), rather than the server answering it (with an answer or an error status).
    """

    sent_at: float
    ended_at: float
    started_at: float | None = None
    abandoned: bool = False


@dataclass(slots=True)
class _Cohort:
    """Attempts that crossed the frontier at one scrape; a sample once none of them is in doubt."""

    at: float
    previous: float | None  # the scrape before
    load: int
    within: list[tuple[float, float]]  # (upper, lower) bounds of each confirmed one's lag
    doubtful: list[float]  # send times of those that had not started: an orphan may hold a place

    def confirm(self, sent: float, started: float) -> None:
        """An attempt sent at ``sent`` crossed at ``at`` and has started (at ``started``): it was counted
        by whichever came first, and, if it had neither crossed nor started by the previous scrape,
        not before that (FIFO)."""
        counted_by = min(self.at, started)
        waited = 0.0
        if self.previous is not None and sent <= self.previous < started:
            waited = self.previous - sent
        self.within.append((counted_by - sent, min(waited, counted_by - sent)))


@dataclass(frozen=True, slots=True)
class _Sample:
    at: float  # the scrape that took it
    cohort: int  # k: attempts of this client it covers
    load: int  # a: the server's running + waiting then
    bound: float  # b: seconds they took, at most, to be counted (with headroom)


class LagTracker:
    """Learns how long the server takes to count this client's requests; see the module docstring.

    ``min_grace`` and ``max_grace`` bound the grace (seconds, ``0 <= min_grace <= max_grace``; equal, the
    grace is fixed); ``window`` is how long an observation counts; ``headroom`` (``>= 1``) multiplies an
    observed lag's lower bound.
    """

    __slots__ = (
        "_abandoned",
        "_answered",
        "_appear",
        "_cohorts",
        "_frontier",
        "_grace",
        "_headroom",
        "_last_scrape",
        "_leave",
        "_max",
        "_min",
        "_others",
        "_run_grace",
        "_samples",
        "_served",
        "_unconfirmed",
        "_void_until",
        "_window",
    )

    def __init__(
        self,
        *,
        min_grace: float = DEFAULT_MIN_GRACE,
        max_grace: float = DEFAULT_MAX_GRACE,
        window: float = DEFAULT_WINDOW,
        headroom: float = DEFAULT_HEADROOM,
    ) -> None:
        name = "LagTracker"
        self._min = check_number(name, "min_grace", min_grace, at_least=0)
        self._max = check_number(name, "max_grace", max_grace, at_least=self._min)
        self._window = check_number(name, "window", window, above=0)
        self._headroom = check_number(name, "headroom", headroom, at_least=1)
        self._samples: deque[_Sample] = deque(maxlen=_MAX_KEPT)
        self._leave: deque[tuple[float, float]] = deque(maxlen=_MAX_KEPT)  # (at, seconds)
        self._others: deque[tuple[float, int]] = deque(maxlen=_MAX_KEPT)  # (at, excess)
        # Recent ends, answered and abandoned, each sorted by ``ended_at``: a scrape counts and drops them
        # by bisection (at a thousand calls a second, scanning them all at every scrape cost the most).
        self._answered: list[float] = []
        self._abandoned: list[float] = []
        self._unconfirmed: list[float] = []  # answered ends not yet seen gone from the count
        self._served: list[tuple[float, float]] = []  # (sent, started) of answered ends not yet sampled
        self._cohorts: list[_Cohort] = []  # crossed, with attempts in doubt
        self._frontier = -math.inf  # attempts sent before it have been sampled (or left out)
        self._void_until = -math.inf  # unstarted attempts sent before it give no sample
        self._last_scrape: float | None = None
        self._run_grace: float | None = None  # the largest grace since every attempt was last counted
        self._grace = self._max
        self._appear: float | None = None

    # --- what the monitor reads ---------------------------------------------------------------------

    @property
    def grace(self) -> float:
        """The grace in force after the last scrape (``max_grace`` before any)."""
        return self._grace

    @property
    def appear_lag(self) -> float | None:
        """The bound behind :attr:`grace` (rule 6): how long the server may take to count this client's
        pending requests at the last scrape's load; ``None`` without evidence."""
        return self._appear

    @property
    def leave_lag(self) -> float | None:
        """How long an ended request may stay counted (rule 2); ``None`` until a scrape has shown it."""
        return statistics.median_high(seconds for _, seconds in self._leave) if self._leave else None

    # --- the rule -----------------------------------------------------------------------------------

    def observe(
        self,
        load: ServerLoad,
        attempts: Iterable[tuple[float, float | None]],
        *,
        ended: Iterable[Ended] = (),
    ) -> float:
        """Feed one scrape; return the grace for it (also :attr:`grace`).

        ``attempts``: ``(sent_at, started_at)`` of each attempt of this client open at the scrape,
        ``started_at`` being when its answer started arriving (``None``: not yet); any sent after
        ``load.scraped_at`` are left out. ``ended``: the attempts that ended since the previous call.
        """
        now = load.scraped_at
        opened = sorted(((sent, started) for sent, started in attempts if sent <= now), key=lambda a: a[0])
        for end in ended:
            insort(self._abandoned if end.abandoned else self._answered, end.ended_at)
            if end.abandoned:
                self._void_until = max(self._void_until, end.ended_at)
                self._settle(end.sent_at, None)
            elif end.started_at is not None:
                self._unconfirmed.append(end.ended_at)
                if not self._settle(end.sent_at, end.started_at):
                    self._served.append((end.sent_at, end.started_at))
        for sent, started in opened:
            if started is not None and started <= now:
                self._settle(sent, started)
        previous = self._last_scrape
        if previous is not None and now <= previous:
            return self._grace  # the same scrape again, or an older one
        self._last_scrape = now
        self._forget_before(now)
        self._commit()

        n, active = len(opened), load.active
        if load.running <= sum(1 for _, at in opened if at is not None and at <= now):  # rule 2
            self._confirm_leaves(now)
        leave = min(self._max, self._max if self.leave_lag is None else self.leave_lag)
        leave_abandoned = max(leave, self._min)
        recent = _count_after(self._answered, now - leave) + _count_after(
            self._abandoned, now - leave_abandoned
        )
        if active - n - recent > 0:  # rule 3
            self._others.append((now, active - n - recent))
        foreign = max((excess for _, excess in self._others), default=0)

        counted = max(0, active - recent - foreign)  # rule 4
        if counted >= n:
            self._advance(now, previous, opened, math.inf, active)
        elif load.engines == 1:
            self._advance(now, previous, opened, opened[counted][0], active)

        if counted >= n:  # rule 7: every open attempt counted, the run (if any) is over
            self._run_grace = None
            self._grace, self._appear = self._grace_for(1 + foreign, active + 1)
            return self._grace
        own = max(0, n + recent - active)
        grace, appear = self._grace_for(own + foreign, active + own)
        if appear is None:  # no evidence yet: the longest grace, a default that binds no later scrape
            self._grace, self._appear = grace, None
            return grace
        if self._run_grace is None or grace >= self._run_grace:
            self._run_grace, self._appear = grace, appear
        self._grace = self._run_grace
        return self._grace

    def grace_for(self, pending: int, load: int) -> float:
        """The grace rules 6 and 7 give ``pending`` requests with ``load`` to run, outside a run."""
        return self._grace_for(pending, load)[0]

    def reset(self) -> None:
        """Forget everything learned (the server restarted, or the URL changed)."""
        for kept in (self._samples, self._leave, self._others):
            kept.clear()
        self._answered.clear()
        self._abandoned.clear()
        self._unconfirmed.clear()
        self._served.clear()
        self._cohorts.clear()
        self._frontier = self._void_until = -math.inf
        self._last_scrape = self._run_grace = self._appear = None
        self._grace = self._max

    def __repr__(self) -> str:
        def seconds(value: float | None) -> str:
            return "None" if value is None else f"{value:.3g}"

        return (
            f"LagTracker(grace={self._grace:.3g}, appear_lag={seconds(self._appear)}, "
            f"leave_lag={seconds(self.leave_lag)}, samples={len(self._samples)})"
        )

    # --- steps ----------------------------------------------------------------------------------------

    def _forget_before(self, now: float) -> None:
        horizon = now - self._window
        while self._samples and self._samples[0].at < horizon:
            self._samples.popleft()
        for kept in (self._leave, self._others):
            while kept and kept[0][0] < horizon:
                kept.popleft()
        for ends in (self._answered, self._abandoned):
            del ends[: bisect_right(ends, now - self._max)]
        self._unconfirmed = [at for at in self._unconfirmed if at >= horizon]
        self._served = [(sent, started) for sent, started in self._served if sent >= horizon]
        self._cohorts = [cohort for cohort in self._cohorts if cohort.at >= horizon]

    def _confirm_leaves(self, now: float) -> None:
        gone = [at for at in self._unconfirmed if at <= now]
        if gone:
            self._leave.append((now, now - max(gone)))
            self._unconfirmed = [at for at in self._unconfirmed if at > now]

    def _advance(
        self,
        now: float,
        previous: float | None,
        opened: list[tuple[float, float | None]],
        frontier: float,
        active: int,
    ) -> None:
        """Rule 4: the attempts sent before ``frontier`` (and after the last one) cross it."""
        if frontier <= self._frontier:
            return
        crossing = [
            (sent, started) for sent, started in (*opened, *self._served) if self._frontier <= sent < frontier
        ]
        self._served = [(sent, started) for sent, started in self._served if sent >= frontier]
        # Past a scrape where all were counted, the frontier moves just after it: an attempt sent at
        # that very instant was among them.
        self._frontier = min(frontier, math.nextafter(now, math.inf))
        cohort = _Cohort(now, previous, max(1, active), [], [])
        for sent, started in crossing:
            if started is not None:
                cohort.confirm(sent, started)
            elif sent > self._void_until:  # an unstarted attempt sent before an abandoned one may have
                cohort.doubtful.append(sent)  # crossed in its place: none of those is trusted
        if cohort.within or cohort.doubtful:
            self._cohorts.append(cohort)
            self._commit()

    def _settle(self, sent: float, started: float | None) -> bool:
        """An attempt in doubt (sent at ``sent``) started (at ``started``) or was abandoned (``None``)."""
        for cohort in self._cohorts:
            if sent in cohort.doubtful and (started is None or started > cohort.at):
                cohort.doubtful.remove(sent)
                if started is not None:
                    cohort.confirm(sent, started)
                return True
        return False

    def _commit(self) -> None:
        """Cohorts with no attempt in doubt become samples (the server's load: the one when they crossed,
        which they ran in)."""
        for cohort in [c for c in self._cohorts if not c.doubtful]:
            self._cohorts.remove(cohort)
            if cohort.within:
                bound = max(max(hi, self._headroom * lo) for hi, lo in cohort.within)
                self._samples.append(_Sample(cohort.at, len(cohort.within), cohort.load, bound))

    def _grace_for(self, pending: int, load: int) -> tuple[float, float | None]:
        bound = self._bound(max(1, pending), max(1, load))
        if bound is None:
            return self._max, None
        return min(self._max, max(self._min, bound)), bound

    def _bound(self, pending: int, load: int) -> float | None:
        """Rule 6: the smallest bound the samples give on the lag of ``pending`` requests at ``load``."""
        covering: list[_Sample] = []
        bounds: list[float] = []
        for s in self._samples:
            if s.cohort >= pending and s.load >= load:
                covering.append(s)
            else:
                bounds.append(s.bound * max(pending / s.cohort, load / s.load))
        if covering:
            nearest = 2 * min(s.cohort for s in covering)
            bounds.append(max(s.bound for s in covering if s.cohort <= nearest))
        return min(bounds, default=None)


def _count_after(ends: list[float], since: float) -> int:
    """How many of ``ends`` (sorted) are later than ``since``."""
    return len(ends) - bisect_right(ends, since)
