"""The call pipeline, and the state every copy of one client shares.

One call, top-down (:meth:`Engine.call`)::

    deadline scope (whole call) ─┬─ limiter.acquire      FIFO; ramp and breaker shape capacity
                                 ├─ attempt              _attempt.py: send, read under the silence limit
                                 ├─ classify failure     retryable? breaker feedback; Retry-After
                                 ├─ retry budget         no retry storms against a dead server
                                 └─ backoff sleep        never one that would end past the deadline

The engine owns the transport, limiter, breaker, retry budget, ramp and stats, and what it knows of the
server (``_upstream.py``: has it answered, its ``/metrics`` monitor, the admission it feeds the
limiter). ``AsyncOpenAI.with_options`` copies share one engine, so they share the pool and every limit.
Time is read and slept through the one injected clock (``_clock.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Literal, Protocol

from ._attempt import Attempt, DeadlineReached
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
    StallError,
    StreamError,
)
from ._http._base import Transport
from ._limiter import BreakerWouldMissDeadline, Limiter
from ._limits import DEFAULT_LIMITS, Limits
from ._policies._breaker import Breaker, BreakerConfig
from ._policies._budget import RetryBudget
from ._policies._ramp import Ramp
from ._policies._retry_after import is_retryable_status, retry_after, retry_delay, should_retry_header
from ._scope import deadline_scope
from ._secrets import mask_url
from ._stats import Counters, Stats
from ._testing_mode import is_testing
from ._upstream import Upstream

logger = logging.getLogger("resilient_llm")


class Plan(Protocol):
    """What one call does on each attempt (see ``_calls.py``)."""

    url: str  # for log lines: masked, never carries credentials

    def describe(self) -> Any:
        """The request attached to errors raised outside an attempt (openai's httpx flavour)."""
        ...

    async def run(self, att: Attempt) -> Any:
        """One attempt: its result, or an ``openai.APIError`` that the engine may retry."""
        ...


class _CallState:
    __slots__ = ("attempts", "last_error", "phase", "prev_delay", "retries")

    def __init__(self) -> None:
        self.attempts = 0
        self.prev_delay: float | None = None  # for decorrelated jitter
        self.retries = 0  # the retries that count against max_retries and the budget
        self.last_error: BaseException | None = None
        self.phase = "queued"


class Engine:
    def __init__(
        self,
        *,
        max_concurrency: int | None,
        ramp_up: float,
        rate_limit: RateLimit | None,
        breaker: BreakerConfig | None,
        retry_budget: RetryBudgetConfig,
        metrics_url: str | None,
        transport_factory: Callable[[], Transport],
        status_error: Callable[[Any], APIError],
        limits: Limits = DEFAULT_LIMITS,
        server: str = "the server",
        hooks: tuple[EventHook, ...] = (),
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.clock = clock
        self.server = mask_url(server)
        self.hooks = hooks
        self.counters = Counters()
        self.ramp = Ramp(duration=ramp_up, clock=clock) if ramp_up > 0 and not is_testing() else None
        self.breaker = Breaker(breaker, clock=clock) if breaker is not None else None
        self.budget = RetryBudget(
            ratio=retry_budget.ratio,
            min_per_second=retry_budget.min_per_second,
            ttl=retry_budget.ttl,
            clock=clock,
        )
        self.limiter = Limiter(
            max_concurrency=max_concurrency or 1,
            ramp=self.ramp,
            breaker=self.breaker,
            rate_limit=rate_limit,
            clock=clock,
        )
        self._transport_factory = transport_factory
        self.status_error = status_error  # openai's exception for an error response
        self.limits = limits
        self._transport: Transport | None = None
        self.upstream = Upstream(
            server=self.server,
            metrics_url=(breaker.metrics_url or metrics_url) if breaker is not None else None,
            breaker=self.breaker,
            limiter=self.limiter,
            adaptive=max_concurrency is None,
            transport=lambda: self.transport,
            clock=clock,
            hooks=hooks,
        )
        self.watches = self.upstream.watches
        if self.breaker is not None:
            self.breaker.add_listener(self._on_breaker_transition)
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
        await self.upstream.aclose()
        t, self._transport = self._transport, None
        if t is not None:
            await t.aclose()

    def stats(self) -> Stats:
        b = self.breaker
        monitor = self.upstream.monitor
        return Stats.snapshot(
            self.counters,
            in_flight=self.limiter.in_flight,
            queued=self.limiter.queued,
            held_by_breaker=self.limiter.held_by_breaker,
            capacity=self.limiter.capacity(),
            ramp_level=self.ramp.level() if self.ramp is not None else 1.0,
            retry_budget_available=self.budget.available(),
            breaker_state=b.state if b is not None else "disabled",
            breaker_reason=b.reason if b is not None else "",
            metrics_available=bool(b is not None and b.metrics_available),
            server_capacity=b.saturated_capacity if b is not None else None,
            metrics_lag=monitor.appear_lag if monitor is not None else None,
            metrics_leave_lag=monitor.leave_lag if monitor is not None else None,
            orphan_grace=monitor.grace if monitor is not None else None,
        )

    def _on_breaker_transition(self, old: str, new: str, reason: str) -> None:
        # Failures are worth a WARNING; holding calls on queue depth is the breaker doing its job.
        level = logging.WARNING if new == "open" else logging.INFO
        logger.log(level, "circuit breaker for %s: %s -> %s: %s", self.server, old, new, reason)
        if new in ("closed", "holding") and old in ("open", "half_open") and self.ramp is not None:
            self.ramp.restart()
        self.limiter.wake(everyone=new == "open")
        if self.hooks:
            emit(self.hooks, BreakerTransition(old_state=old, new_state=new, reason=reason))

    # --- the call ------------------------------------------------------------------------------
    async def call(self, settings: CallSettings, plan: Plan) -> Any:
        """One call, start to end: every wait and attempt inside one deadline scope."""
        if self.closed:
            raise APIConnectionError(message="The client is closed.", request=plan.describe())
        self.upstream.call_started()
        counters = self.counters
        counters.calls += 1
        limiter = self.limiter
        deadline_at = self.clock() + settings.deadline
        state = _CallState()
        front = False  # a retry goes to the front of the queue: it is the oldest call there
        try:
            async with deadline_scope(deadline_at):
                while True:
                    state.phase = "queued"
                    try:
                        await limiter.acquire(deadline=deadline_at, front=front)
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
                    state.attempts += 1
                    counters.attempts += 1
                    if state.attempts == 1:
                        self.budget.record_request()
                    att = Attempt(
                        transport=self.transport,
                        silence=settings.silence,
                        deadline_at=deadline_at,
                        connect_timeout=settings.connect_timeout,
                        clock=self.clock,
                        watches=self.watches,
                        status_error=self.status_error,
                        release=self._stream_closed,
                        responded=self.upstream.responded,
                        number=state.attempts,
                        max_event_bytes=self.limits.max_event_bytes,
                    )
                    try:
                        result = await plan.run(att)
                    except APIError as exc:
                        if not att.kept:
                            limiter.release()
                        state.last_error = exc
                        delay = self._plan_retry(settings, plan, exc, state, deadline_at)
                        state.phase = "backoff"
                        await self.clock.sleep(delay)
                        front = True
                        continue
                    except BaseException:
                        if not att.kept:
                            limiter.release()
                        raise
                    if not att.kept:
                        limiter.release()
                    self._succeeded()
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
        b = self.breaker
        if state.phase == "queued" and b is not None and b.state != "closed":
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

    def _succeeded(self) -> None:
        if self.breaker is not None:
            self.breaker.on_success()

    def _stream_closed(self, exc: BaseException | None) -> None:
        self.limiter.release()
        if isinstance(exc, (StallError, OrphanedRequestError)):
            self._count_failure(exc)

    def _count_failure(self, exc: APIError) -> None:
        c = self.counters
        kind: Literal["connect", "timeout", "server"] | None = None
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
            kind = "connect"
        if kind is not None and self.breaker is not None:
            self.breaker.on_failure(kind)

    def _plan_retry(
        self, settings: CallSettings, plan: Plan, exc: APIError, state: _CallState, deadline_at: float
    ) -> float:
        """The delay before the next attempt, or raise: not retryable, out of retries, budget or time."""
        self._count_failure(exc)
        wait_at_least: float | None = None
        verdict_of_class = is_retryable(exc)  # the I/O layer's own errors say whether a retry helps
        if verdict_of_class is False:
            raise exc
        if verdict_of_class is True:
            pass
        elif isinstance(exc, APIStatusError):
            headers = exc.response.headers
            verdict = should_retry_header(headers)
            if not (is_retryable_status(exc.status_code) if verdict is None else verdict):
                raise exc
            after = retry_after(headers, now_wall=self.clock.wall())
            if after is not None:
                wait_at_least = after
        elif not isinstance(exc, (APIConnectionError, StreamError)):
            raise exc  # a schema problem: retrying gets the same answer
        # (a StreamError reaches here only before the stream was committed to the caller)
        # A server that answered before and now refuses connections is restarting: with the breaker on,
        # the call waits for it within its deadline (only the breaker's probes go out) instead of using
        # up retries; one that never answered fails like any connection error (_upstream.py).
        waits_for_ready = self.upstream.waits_for(exc)
        if not waits_for_ready:
            state.retries += 1
            if state.retries > settings.max_retries:
                raise exc
            if not self.budget.try_withdraw():
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
        self.counters.retries += 1
        logger.info(
            "retrying %s in %.2fs (%s): %s: %s",
            plan.url,
            delay,
            "waiting for the server to accept connections"
            if waits_for_ready
            else f"retry {state.retries} of {settings.max_retries}",
            type(exc).__name__,
            exc,
        )
        if self.hooks:
            emit(self.hooks, RetryScheduled(retry=retry, delay=delay, reason=type(exc).__name__, error=exc))
        return delay


_PHASES = {
    "queued": "waiting for a slot in the limiter",
    "attempt": "waiting for the server",
    "backoff": "backing off before a retry",
}


__all__ = ["Engine", "Plan"]
