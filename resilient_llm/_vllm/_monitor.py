"""The server monitor: a task of its own that reads a server's ``/metrics`` while calls are in flight.

Each poll scrapes the server, hands the load to the call pipeline (the breaker's queue-depth hold and
the limiter's admission), and runs the orphan rule (``_orphans.py``) over the attempts this client is
waiting on. Its collaborators are narrow, and given by whoever owns them:

* ``scrape`` — ``async () -> Scrape``: one read of ``/metrics`` (a load, or why there is none);
* ``on_load`` — called with each scrape's load (``None`` when it had none) and ``on_idle`` when polling
  stops: the pipeline's breaker input and limiter admission;
* ``watches`` — the registry of attempts waiting on this server (:class:`~resilient_llm._watch.Watches`);
* ``busy`` — whether calls are in flight or queued; ``clock``; ``hooks``; ``server`` (masked URL).

Lifecycle. :meth:`ServerMonitor.ensure_running`, called as each call starts, starts the task on the
running event loop — an asyncio task, or a trio system task (trio has no other way for a library to own
a task beyond its caller's nursery) — unless it runs there already. The task polls every
``poll_interval`` while ``busy()`` and for two more intervals after, then ends: an idle client sends no
polls. :meth:`stop` (``client.close()``) cancels it. Nothing it does can raise out of it: a failure is
logged and polling goes on.

Politeness to servers that are not vLLM. A scrape that gets a 404 (or another 4xx), a body that is not
Prometheus text, or Prometheus text without vLLM's gauges means the server has no vLLM metrics (OpenAI
itself, a gateway, a mock): that is said once at INFO, and the server is checked again only after a
minute, then after two, four... up to ten minutes — never more than a few requests an hour. In between
the task still runs while calls are in flight, without a request: it judges the answers' silences
against the server's pace (:meth:`ServerMonitor._cut_silent_answers`). A scrape
that fails or times out is a normal condition of a busy or restarting server: polling goes on.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
import sniffio

from .._clock import Clock
from .._events import EventHook, MetricsAvailability, OrphansAborted, emit
from .._hedge import MIN_PACE_READS, Pace
from .._load import ServerLoad
from .._policies._breaker_config import BreakerConfig
from .._watch import Finished, Watch, Watches
from ._lag import Ended, LagTracker
from ._orphans import OrphanDetector

logger = logging.getLogger("resilient_llm.monitor")

_running_loop = asyncio._get_running_loop  # None outside an asyncio loop; a C function, no exception

#: Polls go on this many intervals after the last call finished (the breaker's view stays fresh
#: for calls that come in bursts).
IDLE_POLLS: Final = 2
#: A server without vLLM metrics is checked again after this long, doubled each time up to the cap.
ABSENT_RECHECK: Final = 60.0
ABSENT_RECHECK_MAX: Final = 600.0
#: An answer silent mid-way for this many of the server's typical gaps between two reads is cut.
SILENT_READS: Final = 30
#: The overtaken rule: a streamed request that has shown nothing is cut once at least this many requests
#: sent after it (a poll interval or more later, with request bodies at least half its size) have started
#: answering, each within 1 / ``OVERTAKEN_WAIT`` of the time it has waited.
#: How long ``stop()`` lets a scrape in flight end before cancelling it (seconds).
SCRAPE_FINISH: Final = 0.5
OVERTAKERS: Final = 3
OVERTAKEN_WAIT: Final = 2.0


@dataclass(frozen=True, slots=True)
class Scrape:
    """One read of ``/metrics``: the load, or why there is none.

    ``absent`` says the server has no vLLM metrics at all (re-checked rarely), as opposed to a scrape
    that failed this time (``load is None``, ``absent`` False).
    """

    load: ServerLoad | None
    detail: str = "ok"
    absent: bool = False


class ServerMonitor:
    def __init__(
        self,
        *,
        config: BreakerConfig,
        server: str,
        scrape: Callable[[], Awaitable[Scrape]],
        on_load: Callable[[ServerLoad | None], None],
        on_idle: Callable[[], None],
        watches: Watches,
        busy: Callable[[], bool],
        clock: Clock,
        hooks: Sequence[EventHook] = (),
        pace: Pace | None = None,
    ) -> None:
        self._config = config
        self._pace = pace
        self._preemptions: int | None = None  # the server's running total at the last scrape
        self._preempted_at = -math.inf  # the last scrape that saw it grow
        self.server = server
        self._scrape = scrape
        self._on_load = on_load
        self._on_idle = on_idle
        self._watches = watches
        self._busy = busy
        self._clock = clock
        self._hooks = hooks
        graces = config.orphan_grace_range()
        self._longest = 0.0
        self._stale_until = -math.inf  # until then the server's counts are known to run behind its answers
        self._previous: ServerLoad | None = None  # the scrape before, judged at this one (``_learn``)
        self._detector: OrphanDetector[Watch] | None = None
        self._lag: LagTracker | None = None
        if graces is not None:
            shortest, longest = graces
            self._longest = longest
            self._detector = OrphanDetector(grace=longest)
            self._lag = LagTracker(min_grace=shortest, max_grace=longest, window=config.orphan_lag_window)
        self._owner: object | None = None  # the event loop (asyncio) or run (trio) the task lives in
        self._task: asyncio.Task[None] | None = None
        self._scope: anyio.CancelScope | None = None
        self._done: anyio.Event | None = None
        self._scraping: anyio.Event | None = None  # set when the scrape in flight ends
        self._available: bool | None = None
        self._absent_until = 0.0
        self._absent_wait = ABSENT_RECHECK
        self.scrapes = 0
        self.last_load: ServerLoad | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    def ensure_running(self) -> None:
        """Start polling on the running event loop unless it already runs there (cheap when it does)."""
        if self._done is not None and self._owner is _running_loop():
            return  # running in this asyncio loop: every call comes here, so no backend detection
        owner = _current_owner()
        if self._done is not None and owner is self._owner:
            return  # running in this loop (trio)
        if self._clock() < self._absent_until and self._pace is None:
            return  # a server without vLLM metrics: not before the next re-check
        self._owner = owner
        self._done = anyio.Event()
        if sniffio.current_async_library() == "asyncio":
            self._task = asyncio.get_running_loop().create_task(self._run(), name="resilient_llm monitor")
        else:
            import trio

            trio.lowlevel.spawn_system_task(self._run, name="resilient_llm monitor")

    async def stop(self) -> None:
        """Stop polling (``client.close()``); waits a moment for the task to end in this loop."""
        scope, done, scraping = self._scope, self._done, self._scraping
        here = _current_owner() is self._owner
        if scraping is not None and here:
            # A scrape cut while it connects can leave its socket to the garbage collector (httpcore on
            # trio does not close a connection whose TLS handshake is cancelled): let the one in flight
            # end first, for a moment (a local or refused connection takes milliseconds).
            with anyio.move_on_after(SCRAPE_FINISH):
                await scraping.wait()
        if scope is not None:
            scope.cancel()
        if done is not None and here:
            with anyio.move_on_after(2.0):
                await done.wait()

    # --- the task --------------------------------------------------------------------------------
    async def _run(self) -> None:
        done = self._done
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                await self._poll()
        except Exception:  # pragma: no cover - _poll catches; a bug must not kill a trio run
            logger.exception("server monitor for %s stopped", self.server)
        finally:
            self._scope = None
            if self._done is done:
                self._done = self._owner = self._task = None
            try:
                self._on_idle()  # without polls nobody renews the admission: never hold on a stale one
            finally:
                if done is not None:
                    done.set()

    async def _poll(self) -> None:
        interval = self._config.poll_interval
        idle = 0
        while idle <= IDLE_POLLS:
            try:
                if self._clock() >= self._absent_until:
                    await self._scrape_once()
                elif self._pace is not None:  # no metrics to read: the answers' pace is judged alone
                    self._cut_silent_answers(None, self._pace)
                if self._detector is not None and self._watches:
                    self._cut_overtaken()
            except Exception:  # a bug here must neither stop the monitor nor leave calls held
                logger.exception("server monitor for %s: handling a scrape failed", self.server)
                self._on_idle()
            idle = 0 if self._busy() else idle + 1
            await self._clock.sleep(interval)

    async def _scrape_once(self) -> None:
        scraping = self._scraping = anyio.Event()
        try:
            result = await self._scrape()
        finally:
            self._scraping = None
            scraping.set()
        self.scrapes += 1
        if result.absent:
            self._went_absent(result.detail)
            return
        self._absent_wait = ABSENT_RECHECK
        self._note_availability(result)
        self.last_load = result.load
        self._on_load(result.load)
        if result.load is not None:
            self._check_watches(result.load)

    def _went_absent(self, detail: str) -> None:
        wait = self._absent_wait
        self._absent_until = self._clock() + wait
        self._absent_wait = min(ABSENT_RECHECK_MAX, wait * 2)
        if self._available is not False:
            logger.info(
                "%s has no vLLM metrics (%s): the breaker works from failures alone; checking again in %gs",
                self.server,
                detail,
                wait,
            )
            if self._available is True and self._hooks:
                emit(self._hooks, MetricsAvailability(available=False, url=self.server, detail=detail))
        self._available = False
        self._on_load(None)

    def _note_availability(self, result: Scrape) -> None:
        """Hooks hear when metrics come and go; the first load and a return are logged at INFO."""
        available = result.load is not None
        if available == self._available or (not available and self._available is None):
            return
        was = self._available
        self._available = available
        if available:
            logger.info("reading the load of %s from its /metrics", self.server)
        if was is not None and self._hooks:
            emit(self._hooks, MetricsAvailability(available=available, url=self.server, detail=result.detail))

    # --- what the server knows of this client's attempts ---------------------------------------------
    @property
    def grace(self) -> float | None:
        """The orphan rule's grace in force (learned from the server's lag); ``None``: detection off."""
        if self._lag is None:
            return None
        stale = self.last_load is not None and self.last_load.scraped_at < self._stale_until
        return self._longest if stale else self._lag.grace

    @property
    def appear_lag(self) -> float | None:
        """How long the server takes to count this client's requests, as learned (``None``: not yet)."""
        return None if self._lag is None else self._lag.appear_lag

    @property
    def leave_lag(self) -> float | None:
        """How long a finished request stays counted, as learned (``None``: not yet)."""
        return None if self._lag is None else self._lag.leave_lag

    def server_restarted(self) -> None:
        """What was learned of the server's lag and deficits is void."""
        self._stale_until = -math.inf
        self._previous = None
        if self._lag is not None and self._detector is not None:
            self._lag.reset()
            self._detector.reset()

    def _check_watches(self, load: ServerLoad) -> None:
        finished = self._watches.drain_finished()
        if self._lag is not None and self._detector is not None:
            grace = self._learn(load, finished, self._lag)
            if self._watches:
                self._abort_orphans(load, self._detector, grace)
        if load.waiting and self._watches:
            self._excuse_queued(load)
        if self._pace is not None:
            self._cut_silent_answers(load, self._pace)

    def _cut_silent_answers(self, load: ServerLoad | None, pace: Pace) -> None:
        """Answers that stopped mid-way while the server's others kept coming: cut, to be retried.

        vLLM sends each running request's tokens as it makes them, so an answer that started and then
        went silent for ``SILENT_READS`` of the server's typical gaps between two reads (at least two
        polls), while the server's other answers were read well after it went silent, was forgotten
        mid-way (a ghost: generated, never sent) — unless the server preempted it back to its queue,
        which its ``vllm:num_preemptions`` counter shows: no answer silent since a preemption is cut.
        A server that pauses as a whole (a long prefill step) pauses every answer: nothing is cut.
        Only answers nobody has seen yet (non-streaming calls, streamed under the hood) are judged.
        Without ``/metrics`` (``load`` None: a server that has none) the rule runs at each poll
        interval all the same, with no preemption to go by.
        """
        if load is not None:
            previous, self._preemptions = self._preemptions, load.preemptions
            if previous is not None and load.preemptions is not None and load.preemptions > previous:
                self._preempted_at = load.scraped_at
        read_gap = pace.read_gap
        if read_gap is None or pace.reads < MIN_PACE_READS or not self._watches:
            return
        poll = self._config.poll_interval
        limit = max(SILENT_READS * read_gap, 2 * poll)
        now = self._clock()
        cut = 0
        for w in self._watches:
            if not w.paced or w.first_byte_at is None or w.orphaned or w.cut_after is not None:
                continue
            silent_for = now - w.silent_since
            if (
                silent_for >= limit
                and pace.last_at - w.silent_since >= limit / 2
                and self._preempted_at < w.silent_since - poll
            ):
                w.cut_silent(silent_for)
                cut += 1
        if cut:
            logger.info(
                "%s: %d answer(s) silent for over %.2fs mid-way while its others kept coming: cut to retry",
                self.server,
                cut,
                limit,
            )

    def _cut_overtaken(self) -> None:
        """Requests the server lost before their first token, found by the order it serves them in.

        vLLM schedules waiting requests first come, first served, and a streamed answer's first event
        comes with its first token. So a streamed request that has shown nothing while ``OVERTAKERS``
        requests sent after it (at least a poll interval later, so that the network cannot have
        reordered them) have started answering — each within half the time it has waited, and each
        with a request body at least half the size of its own (a long prompt takes longer to prefill) —
        was lost (or answered and never sent: a ghost). It is cut and retried.

        It needs no ``/metrics``: without them, such a request would otherwise be found only by the
        stall limit; with them, by the orphan rule, which a busy queue's churn can hide. A server that
        does not serve in order (priority scheduling, several engines or servers behind one URL, where
        the orphan rule is off too) can mislead it: so each call is cut by it once at most, and never
        when ``/metrics`` shows several engines.

        Cost: each silent request against every started one (at most those in flight plus
        ``Watches.MAX_RECENT_STARTS``), once a poll: about 5 ms on this project's 2-core machine with
        744 requests waiting in the server's queue and 320 started, so no index is kept.
        """
        load = self.last_load
        if load is not None and load.engines > 1:
            return
        poll = self._config.poll_interval
        now = self._clock()
        watches = list(self._watches)
        victims = [
            w
            for w in watches
            if w.streams
            and w.may_overtake
            and w.first_byte_at is None
            and not w.orphaned
            and now - w.sent_at >= 2 * poll
        ]
        if not victims:
            return
        started = [
            (w.sent_at, w.first_byte_at - w.sent_at, w.size) for w in watches if w.first_byte_at is not None
        ]
        started += [(sent, first - sent, size) for sent, first, size in self._watches.recent_starts]
        cut = 0
        for w in victims:
            waited = now - w.sent_at
            later, least = w.sent_at + poll, w.size / 2
            overtakers = sum(
                1
                for sent, ttft, size in started
                if sent >= later and size >= least and OVERTAKEN_WAIT * ttft <= waited
            )
            if overtakers >= OVERTAKERS:
                w.cut_overtaken(overtakers, len(watches))
                cut += 1
        if cut:
            logger.info(
                "%s: %d request(s) silent while requests sent after them started answering: cut to retry",
                self.server,
                cut,
            )

    def _learn(self, load: ServerLoad, finished: Sequence[Finished], lag: LagTracker) -> float:
        """One scrape for the lag tracker: the grace the orphan rule gets for it (``_vllm/_lag.py``).

        The tracker relies on vLLM counting a request by the time its first token exists. A server
        whose ``/metrics`` run behind its answers (a cached or scraped-through endpoint) shows fewer
        running requests than this client had answers arriving; then nothing it counts is trusted to
        be fresh, and the longest grace holds for a window.

        Which answers were arriving at a scrape is judged at the next one, from what came after it: an
        answer that had started a quarter of a poll interval before the scrape was sent and still sent
        bytes as long after its answer arrived was being generated when the server took its counts.
        Judged at the scrape itself, an answer whose last token the server had just made (no longer
        running) looks the same as one still running, and with many short answers one of those is at
        almost every scrape.

        The tracker itself dates a scrape by its arrival: a request sent while the scrape was on its
        way counts as open at it, which can only make the lag it learns longer.
        """
        at = load.scraped_at
        attempts = [
            (w.sent_at, w.first_byte_at if w.first_byte_at is not None and w.first_byte_at <= at else None)
            for w in self._watches
            if w.sent_at <= at
        ]
        ended = [Ended(f.sent_at, f.ended_at, f.started_at, f.abandoned) for f in finished]
        grace = lag.observe(load, attempts, ended=ended)
        previous, self._previous = self._previous, load
        if previous is not None and previous.scraped_at < at:
            sent, came, margin = previous.earliest_at, previous.scraped_at, self._config.poll_interval / 4
            arriving = sum(
                1
                for w in self._watches
                if w.first_byte_at is not None
                and w.first_byte_at <= sent - margin
                and w.silent_since >= came + margin
            )
            if arriving > previous.running:
                self._stale_until = at + self._config.orphan_lag_window
        if at < self._stale_until:
            return max(grace, self._longest)
        return grace

    def _excuse_queued(self, load: ServerLoad) -> None:
        """vLLM sends nothing while a request waits to be scheduled: that silence is no stall.

        Up to ``load.waiting`` of this client's attempts that have received no byte yet get their
        silence clock restarted, newest first (in a FIFO queue the newest wait longest). The rest are
        left to the stall limit and the orphan rule.
        """
        now = self._clock()
        unstarted = [w for w in self._watches if not w.started and not w.orphaned]
        for w in unstarted[-load.waiting :]:
            w.excuse_silence(now)

    def _abort_orphans(self, load: ServerLoad, detector: OrphanDetector[Watch], grace: float) -> None:
        watches = list(self._watches)
        silent = [(w, w.silent_since) for w in watches]
        # Attempts this scrape must count: sent long enough before the scrape was sent to be past the
        # metrics lag, or already answering then (a request streaming its answer is scheduled, hence
        # counted). Not its arrival: the counts may have been taken as soon as it was sent.
        scraped = load.earliest_at
        settled = scraped - grace
        known = sum(
            1
            for w in watches
            if w.sent_at <= settled or (w.first_byte_at is not None and w.first_byte_at <= scraped)
        )
        streaming = [w for w in watches if w.first_byte_at is not None and w.first_byte_at <= scraped]
        victims: list[Any] = detector.observe(
            load, silent, self._clock(), known=known, streaming=streaming, grace=grace
        )
        if not victims:
            return
        for w in victims:
            w.abort_orphan(load.active, len(silent))
        logger.warning(
            "%s reports %d running+waiting request(s) while this client waits on %d: aborting %d orphan(s)",
            self.server,
            load.active,
            len(silent),
            len(victims),
        )
        if self._hooks:
            emit(
                self._hooks,
                OrphansAborted(
                    count=len(victims),
                    server_active=load.active,
                    client_waiting=len(silent),
                    replica=self.server,
                ),
            )


def _current_owner() -> object:
    """What a background task belongs to: the asyncio loop, or the trio run (its root task)."""
    if sniffio.current_async_library() == "asyncio":
        return asyncio.get_running_loop()
    import trio

    return trio.lowlevel.current_root_task()


__all__ = ["Scrape", "ServerMonitor"]
