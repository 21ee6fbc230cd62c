"""A circuit breaker fed by the server's own queue depth as well as by failures.

Two independent reasons stop new calls:

* **Holding** (load): the server reports ``waiting >= high_watermark`` requests in its queue, or a
  KV cache usage ``>= kv_high``. The hold is released only once the queue falls to ``low_watermark``
  (and the KV usage to ``kv_low``): hysteresis, so that the breaker does not flap around one value.
  Only fresh metrics hold: a load older than ``stale_after`` seconds is ignored, and with no fresh
  load every hold is released and the breaker falls back to failures alone.
* **Open** (failures): ``failure_threshold`` consecutive failures open it for ``open_cooldown``
  seconds; then it lets ``half_open_probes`` calls through (half-open). That many successes close it
  (a probe succeeds when its answer begins: :meth:`Breaker.on_answering`); a failure re-opens it with
  the cooldown doubled, up to ``max_cooldown`` — kept as it was when the server answered the probe
  with an error (it is up: only that request failed) or refused its connection (nothing listens yet:
  a restart, found within one cooldown of its end at the cost of a refused connection per probe).

The state is a function of the events seen and of the clock: the cooldown ending and metrics going
stale are noticed when the breaker is next asked (no timers, nothing sleeps). All time values are in
seconds on the injected ``clock``, the same clock as :attr:`ServerLoad.scraped_at`.

``state`` is ``"open"`` while failures keep it open, else ``"half_open"`` while probing, else
``"holding"`` while the load holds calls, else ``"closed"``. Leaving ``open``/``half_open`` for
``closed`` or ``holding`` is the server's recovery.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final, Literal

from .._clock import now
from .._load import ServerLoad
from ._breaker_config import BreakerConfig

__all__ = ["Breaker", "BreakerConfig", "BreakerState", "FailureKind", "TransitionListener"]

BreakerState = Literal["closed", "holding", "open", "half_open"]
FailureKind = Literal["connect", "refused", "timeout", "server"]
#: Called as ``listener(old_state, new_state, reason)`` on every change of :attr:`Breaker.state`.
TransitionListener = Callable[[str, str, str], None]

logger: Final = logging.getLogger("resilient_llm.breaker")

_FailureState = Literal["closed", "open", "half_open"]
#: Enough doublings to take the smallest positive float past the largest: capped long before.
_MAX_DOUBLINGS: Final = 2200


class Breaker:
    """The breaker's state machine; see the module documentation. Not thread-safe (one event loop).

    The limiter admits a call only while ``in_flight < allowance()``; the client reports the
    outcome of each attempt with :meth:`on_success` / :meth:`on_failure` and each scrape of
    ``/metrics`` with :meth:`on_load`. ``clock`` returns seconds (default: the
    event loop's clock, :func:`resilient_llm._clock.now`).
    """

    def __init__(self, config: BreakerConfig, *, clock: Callable[[], float] = now) -> None:
        if not isinstance(config, BreakerConfig):
            raise TypeError(f"config must be a BreakerConfig, got {config!r}")
        self._config = config
        self._clock = clock
        self._listeners: list[TransitionListener] = []
        self._state: BreakerState = "closed"
        # failures
        self._failures: _FailureState = "closed"
        self._consecutive_failures = 0
        self._reopens = 0
        self._opened_at: float | None = None  # when failures last opened it (None: never)
        self._cooldown = config.open_cooldown
        self._probe_successes = 0
        self._open_reason = ""
        self._half_open_reason = ""
        self._closed_reason = "no recent failures"
        # load
        self._load: ServerLoad | None = None
        self._load_at = 0.0
        self._max_running = 0
        self._saturated = 0  # the largest ``running`` seen while requests waited and it did not rise
        # The last scrape whose counts differed from the one before: ``(running, waiting)``.
        self._last_counts: tuple[int, int] | None = None
        self._taking_in = False  # its queue is being taken in (``running`` rose while requests waited)
        self._absorbing = False  # ... and it rose by at least what still waits
        self._metrics: Literal["unknown", "available", "unavailable"] = "unknown"
        self._metrics_seen = False  # a load was ever applied: the server serves vLLM's /metrics
        self._queue_hold: str | None = None  # the reason while holding on queue depth
        self._kv_hold: str | None = None  # the reason while holding on KV cache usage

    @property
    def config(self) -> BreakerConfig:
        return self._config

    # ----------------------------------------------------------------- queries

    @property
    def state(self) -> BreakerState:
        """``"closed"``, ``"holding"``, ``"open"`` or ``"half_open"`` now."""
        self._refresh(self._clock())
        return self._state

    @property
    def reason(self) -> str:
        """Why the breaker is in its current state, e.g. ``"waiting 40 >= high watermark 32"``."""
        self._refresh(self._clock())
        return self._reason()

    def allowance(self) -> int | None:
        """The most calls that may be in flight now: ``None`` no limit, 0 admit nothing new, k probing."""
        self._refresh(self._clock())
        if self._state == "closed":
            return None
        if self._state == "half_open" and not self._holding():
            return self._config.half_open_probes
        return 0

    def retry_in(self) -> float | None:
        """Seconds until the breaker would admit calls again, when known (the rest of an open cooldown)."""
        now = self._clock()
        self._refresh(now)
        if self._state != "open" or self._opened_at is None:
            return None
        return max(0.0, self._opened_at + self._cooldown - now)

    @property
    def last_opened_at(self) -> float | None:
        """When failures last opened it (or a failed probe re-opened it), on its clock; ``None``: never."""
        return self._opened_at

    @property
    def metrics_available(self) -> bool:
        """Whether a fresh (younger than ``stale_after``) server load is in effect."""
        self._refresh(self._clock())
        return self._load is not None

    @property
    def metrics_seen(self) -> bool:
        """Whether the server's ``/metrics`` were ever read: through an outage they go stale (it answers
        nothing), but the first scrape after it is back gives its queue depth again."""
        return self._metrics_seen

    @property
    def load(self) -> ServerLoad | None:
        """The fresh server load in effect, if any."""
        self._refresh(self._clock())
        return self._load

    @property
    def capacity(self) -> int | None:
        """The largest ``running`` the server has reported; ``None`` until it reported a running request."""
        return self._max_running or None

    @property
    def saturated_capacity(self) -> int | None:
        """The largest ``running`` seen while requests waited: the server's batch capacity, once seen.

        ``running`` alone is only a lower bound (an idle server runs few); a waiting queue next to it
        says the batch was full. ``None`` until that happened.
        """
        return self._saturated or None

    @property
    def high_watermark(self) -> int | None:
        """The waiting-queue depth at which calls are held, in effect now (configured or derived)."""
        return self._config.watermarks(self.capacity)[0]

    @property
    def low_watermark(self) -> int:
        """The waiting-queue depth at or below which a queue hold is released, in effect now."""
        return self._config.watermarks(self.capacity)[1]

    # ------------------------------------------------------------------ events

    def add_listener(self, fn: TransitionListener) -> None:
        """Call ``fn(old_state, new_state, reason)`` on every change of :attr:`state`."""
        self._listeners.append(fn)

    def remove_listener(self, fn: TransitionListener) -> None:
        """Stop calling ``fn``; no error if it was not registered."""
        if fn in self._listeners:
            self._listeners.remove(fn)

    def on_load(self, load: ServerLoad | None) -> None:
        """A scrape of the server's metrics; ``None`` when the scrape failed or the server has none.

        A failed scrape changes nothing by itself: the last load holds until it is ``stale_after`` old.
        A load already that old on arrival is ignored, as is one older than the load in effect.
        """
        now = self._clock()
        self._refresh(now)
        if load is None:
            if self._load is None:
                self._metrics_lost("the scrape failed")
        elif now - load.scraped_at > self._config.stale_after:
            if self._load is None:
                self._metrics_lost(f"the latest scrape is {now - load.scraped_at:.1f}s old")
        elif self._load is None or load.scraped_at >= self._load.scraped_at:
            self._apply_load(load, now)
        self._publish()

    def on_success(self) -> None:
        """An attempt got its answer; in half-open, a probe succeeded."""
        self._refresh(self._clock())
        if self._failures == "half_open":
            self._probe_successes += 1
            if self._probe_successes >= self._config.half_open_probes:
                self._failures = "closed"
                self._reopens = 0
                self._closed_reason = f"{self._probe_successes} probe call(s) succeeded"
        self._consecutive_failures = 0
        self._publish()

    def on_answering(self) -> None:
        """An attempt's answer began (a response and its first event): in half-open, a probe succeeded.

        A probe need not be generated to its end to show that the server is back; in closed states
        this changes nothing (the answer's end reports :meth:`on_success`)."""
        if self._failures == "half_open":
            self.on_success()

    def on_failure(self, kind: FailureKind, *, answered: bool = False) -> None:
        """An attempt failed in a way that says the server is down or overloaded.

        ``kind``: ``"connect"`` (a connection broken or timed out), ``"refused"`` (none could be opened:
        nothing listens), ``"timeout"`` (stalled) or ``"server"`` (5xx).
        ``answered``: the attempt's answer had begun — in half-open that was a probe's success
        (:meth:`on_answering`), which its later failure does not undo. Failures reported while open
        (calls started earlier) change nothing.
        """
        now = self._clock()
        self._refresh(now)
        if self._failures == "closed":
            self._consecutive_failures += 1
            if self._consecutive_failures >= self._config.failure_threshold:
                self._open(now, f"{self._consecutive_failures} consecutive failures (last: {kind})")
        elif self._failures == "half_open" and not answered:
            # A probe the server answered with an error (a 5xx, an error in its stream) shows it is up:
            # another round of probes after the same cooldown. So does one refused (nothing listens: a
            # restart; a refused connection costs the server nothing, and the server is found within one
            # cooldown of coming back). One that got no answer doubles it.
            if kind not in ("server", "refused"):
                self._reopens += 1
            self._open(now, f"a probe call failed ({kind})")
        self._publish()

    # --------------------------------------------------------------- internals

    def _open(self, now: float, why: str) -> None:
        cfg = self._config
        try:
            doubled = math.ldexp(cfg.open_cooldown, min(self._reopens, _MAX_DOUBLINGS))
        except OverflowError:
            doubled = cfg.max_cooldown
        self._failures = "open"
        self._opened_at = now
        self._cooldown = min(cfg.max_cooldown, doubled)
        self._consecutive_failures = 0
        self._probe_successes = 0
        self._open_reason = f"{why}; cooldown {self._cooldown:g}s"

    def _apply_load(self, load: ServerLoad, now: float) -> None:
        if self._metrics != "available":  # the server monitor says it (once, at INFO, naming the server)
            logger.debug("server metrics available: holding on queue depth")
        self._metrics = "available"
        self._metrics_seen = True
        self._load = load
        self._load_at = min(load.scraped_at, now)  # a clock ahead of ours must not keep it fresh
        self._max_running = max(self._max_running, load.running)
        self._note_intake(load.running, load.waiting)
        cfg = self._config
        high, low = cfg.watermarks(self.capacity)
        waiting = load.waiting
        if self._absorbing:
            # Not an excess queue: the server takes in at least as many per update as wait.
            if self._queue_hold is not None:
                self._queue_hold = None
                self._closed_reason = f"waiting {waiting} is being taken in (running rose to {load.running})"
        elif waiting >= high:
            self._queue_hold = f"waiting {waiting} >= high watermark {high}"
        elif self._queue_hold is not None:
            if waiting <= low:
                self._queue_hold = None
                self._closed_reason = f"waiting {waiting} <= low watermark {low}"
            else:
                self._queue_hold = f"waiting {waiting} > low watermark {low} (held since >= {high})"
        kv = load.kv_cache_usage
        if kv is None:
            if self._kv_hold is not None:
                self._closed_reason = "KV cache usage no longer reported"
            self._kv_hold = None
        elif kv >= cfg.kv_high:
            self._kv_hold = f"KV cache usage {kv:.1%} >= {cfg.kv_high:.1%}"
        elif self._kv_hold is not None:
            if kv <= cfg.kv_low:
                self._kv_hold = None
                self._closed_reason = f"KV cache usage {kv:.1%} <= {cfg.kv_low:.1%}"
            else:
                self._kv_hold = (
                    f"KV cache usage {kv:.1%} > {cfg.kv_low:.1%} (held since >= {cfg.kv_high:.1%})"
                )

    def _note_intake(self, running: int, waiting: int) -> None:
        """Whether a waiting queue is the server at its capacity or a burst it is still taking in.

        A server that just met a burst (a CPU vLLM takes in a couple of dozen requests per engine
        step) shows requests waiting while its ``running`` rises update after update; one at its
        batch capacity shows them waiting while ``running`` stays put (or falls). So requests waiting
        make ``running`` the batch capacity (:attr:`saturated_capacity`) only on an update where it
        did not rise. Repeated counts are no update (``/metrics`` may change once per engine step,
        slower than they are read): they change nothing here.
        """
        counts = (running, waiting)
        last = self._last_counts
        if counts == last:
            return
        self._last_counts = counts
        rise = running - (last[0] if last is not None else 0)
        self._taking_in = waiting > 0 and rise > 0
        self._absorbing = self._taking_in and waiting <= rise
        if waiting > 0 and not self._taking_in:
            before = last[0] if last is not None and last[1] > 0 else 0
            self._saturated = max(self._saturated, running, before)

    @property
    def absorbing(self) -> bool:
        """Whether the server's latest update showed it taking in its waiting queue within one more
        update (``running`` rose by at least what waits): requests waiting, but no excess queue."""
        return self._absorbing

    def _metrics_lost(self, why: str) -> None:
        if self._queue_hold is not None or self._kv_hold is not None:
            self._closed_reason = f"no fresh server metrics ({why}): hold released"
        self._load = None
        self._queue_hold = self._kv_hold = None
        if self._metrics != "unavailable":
            logger.debug("server metrics unavailable (%s): the breaker acts on failures only", why)
        self._metrics = "unavailable"

    def _refresh(self, now: float) -> None:
        """Apply what the passing of time changes (cooldown over, metrics stale), then publish."""
        opened = self._opened_at
        if self._failures == "open" and opened is not None and now >= opened + self._cooldown:
            self._failures = "half_open"
            self._probe_successes = 0
            probes = self._config.half_open_probes
            self._half_open_reason = (
                f"cooldown of {self._cooldown:g}s over; letting {probes} probe call(s) through"
            )
        if self._load is not None and now - self._load_at > self._config.stale_after:
            self._metrics_lost(f"none for {now - self._load_at:.1f}s")
        self._publish()

    def _holding(self) -> bool:
        return self._queue_hold is not None or self._kv_hold is not None

    def _effective_state(self) -> BreakerState:
        if self._failures != "closed":
            return self._failures
        return "holding" if self._holding() else "closed"

    def _reason(self) -> str:
        holds = "; ".join(r for r in (self._queue_hold, self._kv_hold) if r is not None)
        if self._state == "open":
            return self._open_reason
        if self._state == "half_open":
            return f"{self._half_open_reason}; {holds}" if holds else self._half_open_reason
        if self._state == "holding":
            return holds
        return self._closed_reason

    def _publish(self) -> None:
        new = self._effective_state()
        old = self._state
        if new == old:
            return
        self._state = new
        reason = self._reason()
        for listener in list(self._listeners):
            try:
                listener(old, new, reason)
            except Exception:
                logger.exception("breaker listener %r failed on %s -> %s", listener, old, new)

    def __repr__(self) -> str:
        return f"Breaker(state={self._state!r}, reason={self._reason()!r})"
