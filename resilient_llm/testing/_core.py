"""The simulator's state without HTTP: engines, the step driver, faults, metrics, counters.

The driver is a timer on the event loop, not a task: after every change it schedules the next
engine step at the earliest of "a token or a prefill end is due" and "one step interval from
now". The step interval is ``tick`` (real seconds), stretched to ``running / 10 000`` seconds
when many sequences run, so the server writes at most about 10 000 SSE chunks a second however
compressed time is; the tokens that fall due between two steps go out together in one chunk.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Literal

from resilient_llm.testing._config import SimulatorConfig
from resilient_llm.testing._engine import Engine, EngineSnapshot, Sequence
from resilient_llm.testing._faults import FaultPlanner
from resilient_llm.testing._metrics import MetricsHistory, render_metrics
from resilient_llm.testing._stats import QueueSample, StatsRecorder
from resilient_llm.testing._wire import fingerprint

__all__ = ["MAX_CHUNKS_PER_SECOND", "MetricsMode", "SimulatorCore"]

logger = logging.getLogger("resilient_llm.testing")

#: Upper bound on engine steps × running sequences per second (see the module docstring).
MAX_CHUNKS_PER_SECOND = 10_000
_MAX_SAMPLES = 100_000

MetricsMode = Literal["ok", "missing", "frozen"]


class SimulatorCore:
    """Engines and bookkeeping for one simulator, driven by ``loop``'s clock."""

    def __init__(
        self,
        config: SimulatorConfig,
        loop: asyncio.AbstractEventLoop,
        *,
        on_restart: Callable[[float], None],
    ) -> None:
        self.config = config
        self.stats = StatsRecorder()
        self.planner = FaultPlanner(config)
        self.on_restart = on_restart
        self.dead = False
        self.metrics_mode: MetricsMode = "ok"
        self.created_unix = time.time()
        self.fingerprint = fingerprint(config.server_version)
        self._loop = loop
        self._started = loop.time()
        self._dead_since = 0.0
        self._frozen_text: str | None = None
        self._last_text: str | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._sample_interval = max(config.scaled(config.sample_interval), config.tick)
        self._history = MetricsHistory(config.scaled(config.metrics_lag))
        self._samples: deque[QueueSample] = deque(maxlen=_MAX_SAMPLES)
        self.engines = self._fresh_engines()
        self._sampler = loop.call_later(self._sample_interval, self._sample)

    def now(self) -> float:
        return self._loop.time()

    def _fresh_engines(self) -> list[Engine]:
        c, now = self.config, self.now()
        engines = [
            Engine(
                index=i,
                capacity=c.capacity,
                token_time=c.scaled(c.token_time),
                batch_slowdown=c.batch_slowdown,
                kv_cache_tokens=c.kv_cache_tokens,
                now=now,
                metrics_step=c.scaled(c.metrics_lag) if c.metrics_lag_mode == "steps" else 0.0,
            )
            for i in range(c.engines)
        ]
        self._history.clear()
        self._history.record(now, tuple(e.snapshot() for e in engines))
        return engines

    # -- requests ------------------------------------------------------------------------------
    def waiting(self) -> int:
        return sum(len(e.waiting) for e in self.engines)

    def running(self) -> int:
        return sum(len(e.running) for e in self.engines)

    def queue_full(self) -> bool:
        """Whether ``max_queued`` refuses a new request now; counts the refusal if so."""
        limit = self.config.max_queued
        if limit is None or self.running() + self.waiting() < limit:
            return False
        self.engines[0].rejections += 1
        return True

    def submit(self, seq: Sequence) -> None:
        """Route ``seq`` to the least loaded engine (fewest running + waiting)."""
        engine = min(self.engines, key=lambda e: len(e.running) + len(e.waiting))
        now = self.now()
        engine.submit(seq, now)
        self._changed(now)

    def abort(self, seq: Sequence) -> bool:
        """Take ``seq`` out of its engine; ``False`` if it had already ended or never entered one."""
        if not 0 <= seq.engine < len(self.engines):
            return False
        aborted = self.engines[seq.engine].abort(seq, self.now())
        if aborted:
            self._changed(self.now())
        return aborted

    # -- the driver ----------------------------------------------------------------------------
    def _changed(self, now: float) -> None:
        self.stats.observe_queue(self.running(), self.waiting())
        self._schedule(now)

    def _schedule(self, now: float) -> None:
        if self.dead:
            return
        due = min((t for e in self.engines if (t := e.next_event()) is not None), default=None)
        if due is None:
            return
        at = max(due, now + max(self.config.tick, self.running() / MAX_CHUNKS_PER_SECOND))
        if self._timer is not None:
            if self._timer_at <= at:
                return
            self._timer.cancel()
        self._timer = self._loop.call_at(at, self._tick)
        self._timer_at = at

    def _tick(self) -> None:
        self._timer = None
        now = self.now()
        for engine in self.engines:
            engine.advance(now)
        self._changed(now)

    def _advance_all(self) -> float:
        now = self.now()
        if not self.dead:
            for engine in self.engines:
                engine.advance(now)
        return now

    def _sample(self) -> None:
        now = self._advance_all()
        snapshots = tuple(e.snapshot() for e in self.engines)
        self._history.record(now, snapshots)
        sample = QueueSample(
            elapsed=now - self._started,
            running=sum(s.running for s in snapshots),
            waiting=sum(s.waiting for s in snapshots),
            kv_cache_usage=sum(s.kv_cache_usage for s in snapshots) / len(snapshots),
        )
        self._samples.append(sample)
        if self.config.on_sample is not None:
            try:
                self.config.on_sample(sample)
            except Exception:
                logger.exception("on_sample hook failed")
        self._sampler = self._loop.call_later(self._sample_interval, self._sample)

    def samples(self) -> list[QueueSample]:
        return list(self._samples)

    # -- server-wide states --------------------------------------------------------------------
    def set_dead(self, dead: bool) -> None:
        """Stop (or restart) the engines' clocks; in-flight requests go silent while dead."""
        if dead == self.dead:
            return
        now = self.now()
        if dead:
            for engine in self.engines:
                engine.advance(now)
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            self._dead_since = now
        else:
            for engine in self.engines:
                engine.shift(now - self._dead_since)
        self.dead = dead
        logger.info("simulator engine %s", "dead" if dead else "alive again")
        self._changed(now)

    def reset(self) -> list[Sequence]:
        """A restart: every sequence is forgotten, the engines come back empty with zero counters."""
        dropped = [seq for engine in self.engines for seq in engine.kill_all()]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self.engines = self._fresh_engines()
        self.fingerprint = fingerprint(self.config.server_version)
        self._last_text = self._frozen_text = None
        self.stats.restarts += 1
        return dropped

    def set_metrics_mode(self, mode: MetricsMode) -> None:
        if mode not in ("ok", "missing", "frozen"):
            raise ValueError(f"mode={mode!r}: must be 'ok', 'missing' or 'frozen'")
        self._frozen_text = self._render(self.now()) if mode == "frozen" else None
        self.metrics_mode = mode

    def metrics_text(self) -> str | None:
        """The body of one ``/metrics`` scrape, or ``None`` for a 404."""
        fault = self.planner.next_scrape()
        if fault is not None:
            self.stats.faults[fault] += 1
        if self.metrics_mode == "missing" or fault == "metrics_missing":
            return None
        if self.metrics_mode == "frozen" and self._frozen_text is not None:
            return self._frozen_text
        if fault == "metrics_frozen" and self._last_text is not None:
            return self._last_text
        self._last_text = self._render(self._advance_all())
        return self._last_text

    def _render(self, now: float) -> str:
        lag = self.config.scaled(self.config.metrics_lag)
        snapshots: tuple[EngineSnapshot, ...] | None = None
        if lag > 0 and self.config.metrics_lag_mode == "snapshot":
            snapshots = self._history.at(now - lag)
        if lag > 0 and self.config.metrics_lag_mode == "steps":
            snapshots = tuple(e.snapshot(counted_by=now) for e in self.engines)
        if snapshots is None:
            arrived_by = now - lag if lag > 0 else None
            snapshots = tuple(e.snapshot(arrived_by) for e in self.engines)
        return render_metrics(self.config.model, snapshots, self.created_unix)

    def close(self) -> None:
        self._sampler.cancel()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
