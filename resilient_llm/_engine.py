"""The call pipeline, and the state every copy of one client shares.

One call, top-down (:meth:`Engine.call`)::

    deadline scope (whole call) ─┬─ limiter.acquire      FIFO; the head gets a slot on the best replica with
                                 │                       room (ramp, breaker, caps shape each one's capacity)
                                 ├─ global slot, token   with coordination: a lease and a token through Redis
                                 ├─ attempt              _attempt.py: send, read under the silence limit
                                 ├─ classify failure     retryable? breaker feedback; Retry-After
                                 ├─ retry budget         no retry storms against a dead server
                                 └─ backoff sleep        never one that would end past the deadline

The engine owns the transport, the limiter, the retry budget and the stats, and one
:class:`~resilient_llm._replica.Replica` per server it sends to (its lane in the limiter, breaker,
ramp, and what the client knows of it: ``_upstream.py``). ``AsyncOpenAI.with_options`` copies share one
engine, so they share the pool and every limit. With ``coordination`` the limits are also shared with
other processes through Redis (``_coordination.py``). Time is read and slept through the one injected
clock (``_clock.py``).

With several replicas, each attempt goes where the limiter grants it a slot, and a retry prefers
another replica. A refused connection (the replica is down or restarting) is sent on to another
replica at once without using up a retry, as long as one lets calls in; it also counts against the
refusing replica's breaker, which takes it out after a few.
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeVar

import anyio

from ._attempt import Attempt, DeadlineReached
from ._balance import PowerOfTwo
from ._clock import SYSTEM_CLOCK, Clock
from ._config import CallSettings, RateLimit, RetryBudgetConfig
from ._errors_io import is_retryable
from ._events import BreakerTransition, EventHook, RetryScheduled, emit
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    CircuitOpenError,
    DeadlineExceeded,
    OrphanedRequestError,
    ServerUnreachable,
    StallError,
    StreamError,
)
from ._http._base import Transport
from ._limiter import BreakerWouldMissDeadline, Lane, Limiter
from ._limits import DEFAULT_LIMITS, Limits
from ._policies._breaker import Breaker, BreakerConfig
from ._policies._budget import RetryBudget
from ._policies._retry_after import is_retryable_status, retry_after, retry_delay, should_retry_header
from ._replica import Replica
from ._scope import deadline_scope
from ._stats import Counters, ReplicaStats, Stats
from ._testing_mode import is_testing
from ._vllm._metrics import metrics_url as derive_metrics_url
from ._vllm._monitor import _current_owner

if TYPE_CHECKING:
    from ._coord import CoordinationConfig, Lease
    from ._coordination import Coordination, SharedLimits

logger = logging.getLogger("resilient_llm")

T = TypeVar("T")


class Plan(Protocol):
    """What one call does on each attempt (see ``_calls.py``)."""

    url: str  # for log lines: masked, never carries credentials
    model: str | None  # the model asked for: replicas that do not serve it are left out

    def describe(self) -> Any:
        """The request attached to errors raised outside an attempt (openai's httpx flavour)."""
        ...

    async def run(self, att: Attempt) -> Any:
        """One attempt: its result, or an ``openai.APIError`` that the engine may retry."""
        ...


class _CallState:
    __slots__ = (
        "attempts",
        "given_back",
        "last_error",
        "last_lost",
        "lost_retried",
        "phase",
        "prev_delay",
        "probe",
        "retries",
    )

    def __init__(self) -> None:
        self.attempts = 0
        self.lost_retried = False  # the call's one retry of lost work, outside the budget, is used
        self.last_lost: float | None = None  # when the last retry counted lost its work in transit
        self.given_back = 0  # retries given back: work lost in a server-wide outage
        self.prev_delay: float | None = None  # for decorrelated jitter
        self.retries = 0  # the retries that count against max_retries and the budget
        self.last_error: BaseException | None = None
        self.phase = "queued"
        self.probe = False  # the current attempt went through a half-open breaker (see _plan_retry)


class Engine:
    def __init__(
        self,
        *,
        servers: Sequence[str],
        max_concurrency: int | None,
        ramp_up: float,
        rate_limit: RateLimit | None,
        breaker: BreakerConfig | None,
        retry_budget: RetryBudgetConfig,
        transport_factory: Callable[[], Transport],
        status_error: Callable[[Any], APIError],
        limits: Limits = DEFAULT_LIMITS,
        hooks: tuple[EventHook, ...] = (),
        clock: Clock = SYSTEM_CLOCK,
        coordination: CoordinationConfig | None = None,
        headers: Callable[[], Mapping[str, str]] | None = None,
        rng: random.Random | None = None,
        hedge_slowdown: float | None = None,
    ) -> None:
        """``servers``: base URLs (with ``/v1``), one per replica; the first is the client's own.

        ``hedge_slowdown``: a non-streaming answer arriving this many times slower than the server's
        others gets a hedged copy (``_hedge.py``); ``None``: never."""
        self.clock = clock
        self.hooks = hooks
        self.counters = Counters()
        self.budget = RetryBudget(
            ratio=retry_budget.ratio,
            min_per_second=retry_budget.min_per_second,
            ttl=retry_budget.ttl,
            clock=clock,
        )
        self.coordination: Coordination | None = None
        if coordination is not None:
            from ._coordination import Coordination

            self.coordination = Coordination(
                coordination,
                servers=servers,
                max_concurrency=max_concurrency,
                rate_limit=rate_limit,
                retry_budget=retry_budget,
                view_max_age=breaker.poll_interval if breaker is not None else None,
                clock=clock,
            )
        several = len(servers) > 1
        self.replicas = tuple(
            Replica(
                index=i,
                base_url=url,
                metrics_url=(breaker.metrics_url or derive_metrics_url(url)) if breaker is not None else None,
                max_concurrency=max_concurrency,
                ramp_up=ramp_up,
                breaker=breaker,
                transport=lambda: self.transport,
                clock=clock,
                hooks=hooks,
                headers=(headers or dict) if several else None,
                on_transition=self._on_breaker_transition,
                share=self.coordination.shared_scrape if self.coordination is not None else None,
            )
            for i, url in enumerate(servers)
        )
        self._several = several
        #: A client of several replicas reads what each serves before its first call that names a model.
        self._models_learned = not several
        self._learning: tuple[object, anyio.Event] | None = None
        self._stream_closers = tuple(functools.partial(self._stream_closed, r) for r in self.replicas)
        self.limiter = Limiter(
            [r.lane for r in self.replicas],
            rate_limit=rate_limit if coordination is None else None,  # else the fleet's token bucket
            choose=PowerOfTwo(rng),
            clock=clock,
        )
        self.hedge_slowdown = hedge_slowdown
        self._transport_factory = transport_factory
        self.status_error = status_error  # openai's exception for an error response
        self.limits = limits
        self._transport: Transport | None = None
        self.closed = False

    # --- shared resources ----------------------------------------------------------------------
    @property
    def transport(self) -> Transport:
        t = self._transport
        if t is None:
            t = self._transport = self._transport_factory()
        return t

    async def aclose(self) -> None:
        self.closed = True
        for replica in self.replicas:
            await replica.upstream.aclose()
        if self.coordination is not None:
            await self.coordination.aclose()
        t, self._transport = self._transport, None
        if t is not None:
            await t.aclose()

    def stats(self) -> Stats:
        replicas = tuple(_replica_stats(r) for r in self.replicas)
        first = replicas[0]
        if self._several:
            open_to_calls = [r for r in replicas if r.breaker_state in ("closed", "disabled")]
            best = min(replicas, key=lambda r: _STATE_ORDER.get(r.breaker_state, 9))
            breaker_state = best.breaker_state
            breaker_reason = f"{len(open_to_calls)} of {len(replicas)} replicas closed"
            ramp_level = sum(r.ramp_level for r in replicas) / len(replicas)
        else:
            breaker_state, breaker_reason, ramp_level = (
                first.breaker_state,
                first.breaker_reason,
                first.ramp_level,
            )
        shared = None if self.coordination is None else self.coordination.current()
        return Stats.snapshot(
            self.counters,
            in_flight=self.limiter.in_flight,
            queued=self.limiter.queued,
            held_by_breaker=self.limiter.held_by_breaker,
            capacity=self.limiter.capacity(),
            ramp_level=ramp_level,
            retry_budget_available=self.budget.available() if shared is None else shared.budget_available(),
            breaker_state=breaker_state,
            breaker_reason=breaker_reason,
            metrics_available=any(r.metrics_available for r in replicas),
            coordination="off" if self.coordination is None else self.coordination.mode(),
            replicas=replicas,
            server_capacity=_sum_known(r.server_capacity for r in replicas),
            metrics_lag=_max_known(r.metrics_lag for r in replicas),
            metrics_leave_lag=_max_known(r.metrics_leave_lag for r in replicas),
            orphan_grace=_max_known(r.orphan_grace for r in replicas),
        )

    def _on_breaker_transition(self, replica: Replica, old: str, new: str, reason: str) -> None:
        # Failures are worth a WARNING; holding calls on queue depth is the breaker doing its job.
        level = logging.WARNING if new == "open" else logging.INFO
        logger.log(level, "circuit breaker for %s: %s -> %s: %s", replica.name, old, new, reason)
        if (
            new in ("closed", "holding")
            and old in ("open", "half_open")
            and replica.ramp is not None
            and not (replica.breaker is not None and replica.breaker.metrics_seen)
        ):
            # Back from a failure: ramped in again, unless the server's /metrics are read (then its
            # queue depth holds calls back as it fills; a ramp would only leave its batch half empty).
            # Read before the outage is enough: they went stale while it answered nothing, and the
            # breaker may close (at a probe's first token) before the next scrape.
            replica.ramp.restart()
        self.limiter.wake(everyone=new == "open")
        if self.hooks:
            emit(
                self.hooks,
                BreakerTransition(old_state=old, new_state=new, reason=reason, replica=replica.name),
            )

    # --- the call ------------------------------------------------------------------------------
    async def call(self, settings: CallSettings, plan: Plan) -> Any:
        """One call, start to end: every wait and attempt inside one deadline scope."""
        if self.closed:
            raise APIConnectionError(message="The client is closed.", request=plan.describe())
        for replica in self.replicas:
            replica.upstream.call_started()
        counters = self.counters
        counters.calls += 1
        deadline_at = self.clock() + settings.deadline
        state = _CallState()
        hedge_slowdown = self.hedge_slowdown
        front = False  # a retry goes to the front of the queue: it is the oldest call there
        avoid: Lane | None = None  # a retry prefers another replica than the last one
        try:
            async with deadline_scope(deadline_at):
                shared = None if self.coordination is None else await self.coordination.ready(deadline_at)
                if not self._models_learned and plan.model is not None:
                    await self._learn_models(deadline_at)
                while True:
                    state.phase = "queued"
                    try:
                        lane, lease, replica = await self._slot(
                            plan, state, deadline_at, front, avoid, shared
                        )
                    except BreakerWouldMissDeadline as exc:
                        counters.circuit_open_rejections += 1
                        raise CircuitOpenError(
                            plan.describe(),
                            deadline=settings.deadline,
                            attempts=state.attempts,
                            state=exc.state,
                            reason=exc.reason,
                            retry_in=exc.retry_in,
                            last_error=state.last_error,
                        ) from state.last_error
                    state.phase = "attempt"
                    if state.attempts == 1:
                        (self.budget if shared is None else shared.budget).record_request()
                    att = self._attempt(settings, replica, lane, deadline_at, lease, shared, state.attempts)
                    if hedge_slowdown is not None:
                        att.hedger = _Hedger(self, settings, plan, lane, deadline_at, shared)
                    try:
                        result = await plan.run(att)
                    except APIError as exc:
                        if not att.kept:
                            self._release(lane, lease, shared)
                        state.last_error = exc
                        delay = await self._plan_retry(
                            settings, plan, exc, state, deadline_at, replica, shared, att.events > 0
                        )
                        state.phase = "backoff"
                        await self.clock.sleep(delay)
                        front = True
                        avoid = lane
                        continue
                    except BaseException:
                        if not att.kept:
                            self._release(lane, lease, shared)
                        raise
                    self._succeeded(replica, lane, lease, shared, kept=att.kept)
                    counters.calls_ok += 1
                    return result
        except DeadlineReached:
            pass
        except BaseException as exc:
            if isinstance(exc, Exception):
                counters.calls_failed += 1
                if isinstance(exc, DeadlineExceeded):
                    counters.deadlines_exceeded += 1
            else:
                counters.calls_cancelled += 1
            raise
        # The deadline ran out: in the queue, an attempt, or a backoff sleep.
        counters.calls_failed += 1
        counters.deadlines_exceeded += 1
        b = self._holding_breaker() if state.phase in ("queued", "global") else None
        if b is not None:
            counters.circuit_open_rejections += 1
            raise CircuitOpenError(
                plan.describe(),
                deadline=settings.deadline,
                attempts=state.attempts,
                state=b.state,
                reason=b.reason,
                retry_in=b.retry_in(),
                last_error=state.last_error,
            ) from state.last_error
        raise DeadlineExceeded(
            plan.describe(),
            deadline=settings.deadline,
            attempts=state.attempts,
            last_error=state.last_error,
            waiting_for=_PHASES.get(state.phase),
        ) from state.last_error

    def _attempt(
        self,
        settings: CallSettings,
        replica: Replica,
        lane: Lane,
        deadline_at: float,
        lease: Lease | None,
        shared: SharedLimits | None,
        number: int,
    ) -> Attempt:
        """The context of one attempt on ``replica`` (``number``: 1 for a call's first, 0 for a hedge)."""
        return Attempt(
            transport=self.transport,
            silence=settings.silence,
            deadline_at=deadline_at,
            connect_timeout=settings.connect_timeout,
            clock=self.clock,
            watches=replica.watches,
            status_error=self.status_error,
            release=self._stream_closers[lane.index]
            if lease is None or shared is None
            else functools.partial(self._leased_stream_closed, replica, lease, shared),
            responded=replica.upstream.responded,
            answering=replica.answering,
            number=number,
            max_event_bytes=self.limits.max_event_bytes,
            target=replica.base_url if self._several else None,
            pace=replica.pace,
        )

    def _holding_breaker(self) -> Breaker | None:
        """The breaker that kept a call out, when every replica's breaker is shut (the soonest to open)."""
        shut: list[Breaker] = []
        for replica in self.replicas:
            b = replica.breaker
            if b is None or b.state == "closed":
                return None
            shut.append(b)
        return min(shut, key=lambda b: b.retry_in() or 0.0)

    async def _learn_models(self, deadline_at: float) -> None:
        """Read every replica's ``/v1/models`` at once (the first call does; others wait for it), so that
        no call goes to a replica that does not serve its model. Bounded by the call's deadline."""
        owner = _current_owner()
        learning = self._learning
        if learning is not None and learning[0] is owner:
            with anyio.move_on_after(max(0.0, deadline_at - self.clock())):
                await learning[1].wait()
            return
        done = anyio.Event()
        self._learning = (owner, done)
        try:
            async with anyio.create_task_group() as tg:
                for replica in self.replicas:
                    tg.start_soon(replica.read_models)
        finally:
            self._models_learned = True
            done.set()

    # --- slots ---------------------------------------------------------------------------------
    async def _slot(
        self,
        plan: Plan,
        state: _CallState,
        deadline_at: float,
        front: bool,
        avoid: Lane | None,
        shared: SharedLimits | None,
    ) -> tuple[Lane, Lease | None, Replica]:
        """The slots for one more attempt of a call (or of its hedged copy), counted as one: the
        limiter's, on the best replica with room (``avoid``: not this one while another has room), then
        with coordination the fleet's (:meth:`_global_slot`). Raises ``BreakerWouldMissDeadline``."""
        lane = await self.limiter.acquire(deadline=deadline_at, front=front, model=plan.model, avoid=avoid)
        breaker = self.replicas[lane.index].breaker
        state.probe = breaker is not None and breaker.state == "half_open"  # read as it let the call in
        lease = None
        if shared is not None:
            lease = await self._global_slot(lane, state, deadline_at, front, shared, plan)
        replica = self.replicas[lane.index]
        state.attempts += 1
        self.counters.attempts += 1
        replica.attempts += 1
        return lane, lease, replica

    def _succeeded(
        self, replica: Replica, lane: Lane, lease: Lease | None, shared: SharedLimits | None, *, kept: bool
    ) -> None:
        """An attempt answered: its slots go back (unless a stream ``kept`` them until it is closed)
        and its replica's breaker hears of it."""
        if not kept:
            self._release(lane, lease, shared)
        if replica.breaker is not None:
            replica.breaker.on_success()

    async def _global_slot(
        self, lane: Lane, state: _CallState, deadline_at: float, front: bool, shared: SharedLimits, plan: Plan
    ) -> Lease | None:
        """After the local slot: the fleet's lease for this replica, then a token of the fleet's bucket.

        Both waits end by the call's deadline; one that cannot ends the call as the deadline would
        (``GlobalWaitTimeout`` → :class:`DeadlineExceeded` or :class:`CircuitOpenError`). On any
        failure the local slot (and the lease) are given back.
        """
        from ._coord import GlobalWaitTimeout

        lease: Lease | None = None
        try:
            state.phase = "global"
            lease = await shared.lease(lane.index, deadline=deadline_at, front=front)
            if shared.bucket is not None:
                state.phase = "token"
                await shared.bucket.acquire(deadline=deadline_at)
        except BaseException as exc:
            if lease is not None:
                shared.release(lane.index, lease)
            self.limiter.release(lane)
            if isinstance(exc, GlobalWaitTimeout):
                raise DeadlineReached() from exc
            if isinstance(exc, RuntimeError):  # the coordinator stopped: client.close() while waiting
                raise APIConnectionError(message="The client is closed.", request=plan.describe()) from exc
            raise
        return lease

    def _release(self, lane: Lane, lease: Lease | None, shared: SharedLimits | None) -> None:
        if lease is not None and shared is not None:
            shared.release(lane.index, lease)
        self.limiter.release(lane)

    def _stream_closed(self, replica: Replica, exc: BaseException | None) -> None:
        self.limiter.release(replica.lane)
        if isinstance(exc, (StallError, OrphanedRequestError)):
            self._count_failure(exc, replica, answered=True)

    def _leased_stream_closed(
        self, replica: Replica, lease: Lease, shared: SharedLimits, exc: BaseException | None
    ) -> None:
        shared.release(replica.index, lease)
        self._stream_closed(replica, exc)

    # --- failures and retries -------------------------------------------------------------------
    def _count_failure(self, exc: APIError, replica: Replica, *, answered: bool = False) -> None:
        """Count a failed attempt; ``answered``: its answer had begun (see ``Breaker.on_failure``)."""
        c = self.counters
        replica.failures += 1
        kind: Literal["connect", "refused", "timeout", "server"] | None = None
        if isinstance(exc, StallError):
            c.stalls += 1
            kind = "timeout"
        elif isinstance(exc, OrphanedRequestError):
            c.orphans += 1
        elif isinstance(exc, APIStatusError):
            kind = "server" if exc.status_code >= 500 else None
        elif isinstance(exc, StreamError):
            kind = "server"
        elif isinstance(exc, APITimeoutError):
            kind = "timeout"
        elif isinstance(exc, APIConnectionError):
            kind = "refused" if isinstance(exc, ServerUnreachable) else "connect"
        if kind is not None and replica.breaker is not None:
            replica.breaker.on_failure(kind, answered=answered)

    def _usable_elsewhere(self, replica: Replica, model: str | None) -> bool:
        """Whether another replica could take this call now (its breaker lets calls in)."""
        if replica.breaker is None:
            return False  # no breaker to take a dead replica out: every failure counts
        return any(r is not replica and r.usable(model) for r in self.replicas)

    async def _plan_retry(
        self,
        settings: CallSettings,
        plan: Plan,
        exc: APIError,
        state: _CallState,
        deadline_at: float,
        replica: Replica,
        shared: SharedLimits | None,
        answered: bool = False,
    ) -> float:
        """The delay before the next attempt, or raise: not retryable, out of retries, budget or time.

        An attempt that went through a half-open breaker (``state.probe``, a call's or a hedged copy's)
        is retried without drawing from the retry budget: the breaker already paces its probes
        (``half_open_probes`` a cooldown), so they are no storm, and a replica that answers every probe
        with a 503 (a draining server) would otherwise use up the budget that the calls sent to the
        healthy replicas need.
        """
        self._count_failure(exc, replica, answered=answered)
        wait_at_least = self._retry_verdict(exc)
        if isinstance(exc, ServerUnreachable) and self._usable_elsewhere(replica, plan.model):
            # The request reached no server, and another replica is there: it goes on at once.
            return self._retry_scheduled(plan, exc, state, 0.0, replica, "sent to another replica")
        # A server that answered before and now refuses connections is restarting: with the breaker on,
        # the call waits for it within its deadline (only the breaker's probes go out) instead of using
        # up retries; one that never answered fails like any connection error (_upstream.py).
        waits_for_ready = replica.upstream.waits_for(exc)
        now = self.clock()
        # At most max_retries losses per call are given back: a server that keeps failing every
        # request still ends it.
        can_give_back = replica.breaker is not None and state.given_back < settings.max_retries
        if (
            state.last_lost is not None
            and can_give_back
            and (waits_for_ready or _outage_near(replica, state.last_lost, now))
        ):
            # The attempt before this one was lost as the server went down (a restart, an outage that
            # opened the breaker): the loss was the server's, not this request's, and is given back
            # as the wait for the server is.
            state.retries -= 1
            state.given_back += 1
            can_give_back = state.given_back < settings.max_retries
        state.last_lost = None
        uncounted = False  # this loss was the server's (an outage): not one of the call's retries
        if not waits_for_ready:
            # Work the server took and lost (a refused connection reached no server: nothing was lost).
            lost = _lost_in_transit(exc) and not isinstance(exc, ServerUnreachable)
            state.retries += 1
            if (
                lost
                and can_give_back
                and (
                    _outage_near(replica, now, now)
                    # the first losses of a restart come before the breaker has seen enough to open
                    or (
                        state.retries > settings.max_retries
                        and await self._outage_follows(replica, now, deadline_at)
                    )
                )
            ):
                state.retries -= 1
                state.given_back += 1
                uncounted = True
            elif lost:
                state.last_lost = now
            if state.retries > settings.max_retries:
                raise exc
            if _lost_in_transit(exc) and not state.lost_retried:
                # Work the server lost (a restart, a dropped connection, a forgotten request) is sent
                # again once without the budget: the same load as before, not an amplification of it.
                state.lost_retried = allowed = True
            elif state.probe:
                allowed = True
            elif shared is None:
                allowed = self.budget.try_withdraw()
            else:
                allowed = await shared.budget.try_withdraw(deadline=deadline_at)
            if not allowed:
                self.counters.budget_exhausted += 1
                logger.warning(
                    "not retrying %s: the retry budget is exhausted (%s: %s)",
                    plan.url,
                    type(exc).__name__,
                    exc,
                )
                raise exc
        retry = state.attempts
        remaining = deadline_at - self.clock()
        backoff = settings.backoff.delay(retry, state.prev_delay)
        planned = retry_delay(backoff, retry_after=wait_at_least, remaining=remaining)
        if planned is None:
            delay = max(backoff, wait_at_least or 0.0)
            raise DeadlineExceeded(
                plan.describe(),
                deadline=settings.deadline,
                attempts=state.attempts,
                last_error=exc,
                waiting_for=f"a retry needs {delay:.2f}s of backoff and {remaining:.2f}s remain",
            ) from exc
        delay = state.prev_delay = 0.0 if is_testing() else planned
        if waits_for_ready:
            delay = _paced_by_breaker(replica, delay)
        why = (
            "waiting for the server to accept connections"
            if waits_for_ready
            else "lost as the server went down: not counted against max_retries"
            if uncounted
            else f"retry {state.retries} of {settings.max_retries}"
        )
        return self._retry_scheduled(plan, exc, state, delay, replica, why)

    async def _outage_follows(self, replica: Replica, lost_at: float, deadline_at: float) -> bool:
        """Whether the breaker opens within one cooldown of a loss at ``lost_at``; waits at most that
        cooldown (and never past the deadline) to see."""
        assert replica.breaker is not None
        window = replica.breaker.config.open_cooldown
        until = min(lost_at + window, deadline_at)
        while not _outage_near(replica, lost_at, self.clock()):
            left = until - self.clock()
            if left <= 0:
                return False
            await self.clock.sleep(min(window / 8, left))
        return True

    def _retry_verdict(self, exc: APIError) -> float | None:
        """Raise ``exc`` unless a retry can help; the least wait the server asked for (``Retry-After``)."""
        verdict_of_class = is_retryable(exc)  # the I/O layer's own errors say whether a retry helps
        if verdict_of_class is False:
            raise exc
        if verdict_of_class is True:
            return None
        if isinstance(exc, APIStatusError):
            headers = exc.response.headers
            verdict = should_retry_header(headers)
            if not (is_retryable_status(exc.status_code) if verdict is None else verdict):
                raise exc
            return retry_after(headers, now_wall=self.clock.wall())
        if not isinstance(exc, (APIConnectionError, StreamError)):
            raise exc  # a schema problem: retrying gets the same answer
        # (a StreamError reaches here only before the stream was committed to the caller)
        return None

    def _retry_scheduled(
        self, plan: Plan, exc: APIError, state: _CallState, delay: float, replica: Replica, why: str
    ) -> float:
        self.counters.retries += 1
        where = f" (after {replica.name})" if self._several else ""
        logger.info(
            "retrying %s in %.2fs (%s)%s: %s: %s", plan.url, delay, why, where, type(exc).__name__, exc
        )
        if self.hooks:
            emit(
                self.hooks,
                RetryScheduled(
                    retry=state.attempts,
                    delay=delay,
                    reason=type(exc).__name__,
                    error=exc,
                    replica=replica.name,
                ),
            )
        return delay


class _Hedger:
    """A hedge for one attempt (``_hedge.Hedger``): a copy of its request on a slot of its own,
    preferably on another replica, paid for from the retry budget."""

    __slots__ = (
        "_alone",
        "_deadline_at",
        "_engine",
        "_in_flight",
        "_lane",
        "_plan",
        "_settings",
        "_shared",
        "slowdown",
    )

    def __init__(
        self,
        engine: Engine,
        settings: CallSettings,
        plan: Plan,
        lane: Lane,
        deadline_at: float,
        shared: SharedLimits | None,
    ) -> None:
        assert engine.hedge_slowdown is not None
        self._engine, self._settings, self._plan = engine, settings, plan
        self._lane, self._deadline_at, self._shared = lane, deadline_at, shared
        self.slowdown = engine.hedge_slowdown
        self._alone = False  # the slow answer failed: a failed copy is not retried
        self._in_flight = False  # a copy holds a slot of its own

    async def send(self, copy: Callable[[Attempt], Awaitable[T]]) -> T:
        engine, plan, deadline_at, shared = self._engine, self._plan, self._deadline_at, self._shared
        allowed = (
            engine.budget.try_withdraw()
            if shared is None
            else await shared.budget.try_withdraw(deadline=deadline_at)
        )
        if not allowed:
            raise HedgeRefused("the retry budget is exhausted")
        counters = engine.counters
        counters.hedges += 1
        logger.info(
            "hedging %s: its answer arrives over %gx slower than the server's others",
            plan.url,
            self.slowdown,
        )
        # The copy is retried as any attempt (same rules, retries and budget): a copy lost to a fault
        # would otherwise leave the call to the slow answer it was sent to replace.
        state, avoid = _CallState(), self._lane
        while True:
            lane, lease, replica = await engine._slot(plan, state, deadline_at, True, avoid, shared)
            att = engine._attempt(self._settings, replica, lane, deadline_at, lease, shared, number=0)
            self._in_flight = True
            try:
                result = await copy(att)
            except BaseException as exc:
                self._in_flight = False
                engine._release(lane, lease, shared)
                if not isinstance(exc, APIError) or self._alone:
                    raise  # alone: the race raises the slow answer's error, the call's own retry follows
                try:
                    delay = await engine._plan_retry(
                        self._settings, plan, exc, state, deadline_at, replica, shared, att.events > 0
                    )
                except Exception as final:
                    logger.info("the hedged copy of %s failed (%s): the slow answer goes on", plan.url, final)
                    raise
                await engine.clock.sleep(delay)
                avoid = lane
                continue
            self._in_flight = False
            engine._succeeded(replica, lane, lease, shared, kept=False)
            return result

    def won(self) -> None:
        self._engine.counters.hedges_won += 1

    def alone(self) -> bool:
        self._alone = True
        return self._in_flight


class HedgeRefused(Exception):
    """Internal: no hedge was sent (the retry budget had none to spare); the slow answer goes on."""


def _replica_stats(replica: Replica) -> ReplicaStats:
    b, lane, ramp = replica.breaker, replica.lane, replica.ramp
    load = b.load if b is not None else None
    monitor = replica.upstream.monitor
    models = replica.models
    return ReplicaStats(
        url=replica.name,
        in_flight=lane.in_flight,
        capacity=lane.capacity(),
        ramp_level=ramp.level() if ramp is not None else 1.0,
        breaker_state=b.state if b is not None else "disabled",
        breaker_reason=b.reason if b is not None else "",
        metrics_available=load is not None,
        running=load.running if load is not None else None,
        waiting=load.waiting if load is not None else None,
        kv_cache_usage=load.kv_cache_usage if load is not None else None,
        models=tuple(sorted(models)) if models is not None else None,
        attempts=replica.attempts,
        failures=replica.failures,
        server_capacity=b.saturated_capacity if b is not None else None,
        metrics_lag=monitor.appear_lag if monitor is not None else None,
        metrics_leave_lag=monitor.leave_lag if monitor is not None else None,
        orphan_grace=monitor.grace if monitor is not None else None,
    )


def _paced_by_breaker(replica: Replica, delay: float) -> float:
    """The wait before a call tries again a server that refuses connections (restarting).

    Not its own growing backoff: after a few refusals that is seconds (up to ``Backoff.cap``), and a
    call asleep in it is not woken when the server comes back. Once the breaker is open (or probing)
    the call waits in the limiter instead, which lets only the breaker's probes through, once per
    cooldown, and sends every waiting call as soon as one is answered; before that (the first
    refusals) it sleeps at most one cooldown.
    """
    breaker = replica.breaker
    if breaker is None:
        return delay
    if breaker.state in ("open", "half_open"):
        return 0.0
    return min(delay, breaker.config.open_cooldown)


def _outage_near(replica: Replica, lost_at: float, now: float) -> bool:
    """Whether work lost at ``lost_at`` was lost in a server-wide outage: the replica's breaker opened
    within one cooldown of the loss (and by ``now``)."""
    breaker = replica.breaker
    if breaker is None or breaker.last_opened_at is None:
        return False
    opened, window = breaker.last_opened_at, breaker.config.open_cooldown
    return lost_at - window <= opened <= min(now, lost_at + window)


def _lost_in_transit(exc: BaseException) -> bool:
    """An attempt that got no answer: its connection broke, or the server went silent or forgot it."""
    return isinstance(exc, (APIConnectionError, StallError, OrphanedRequestError))


def _sum_known(values: Iterable[int | None]) -> int | None:
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def _max_known(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


#: Which breaker state best describes a client of several replicas: the most open to calls.
_STATE_ORDER = {"closed": 0, "disabled": 0, "holding": 1, "half_open": 2, "open": 3}

_PHASES = {
    "queued": "waiting for a slot in the limiter",
    "global": "waiting for a slot of the fleet's max_concurrency (shared through Redis)",
    "token": "waiting for a token of the fleet's rate limit (shared through Redis)",
    "attempt": "waiting for the server",
    "backoff": "backing off before a retry",
}


__all__ = ["Engine", "Plan"]
