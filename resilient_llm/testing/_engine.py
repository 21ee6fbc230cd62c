"""A continuous-batching engine as a pure state machine: time comes in as ``now``, nothing sleeps.

``capacity`` sequences run at once; the rest wait FIFO. An admitted sequence spends its prefill
time, which ends with its first token, then decodes one token every
``token_time · (1 + batch_slowdown · (running - 1))`` (times its own ``slowdown``, capped at its
``max_gap``). Prefill and decode overlap across sequences, as with chunked prefill.

Progress is kept as a fractional token count per sequence and advanced analytically between
events (a prefill ending, a sequence finishing, a preemption), so one :meth:`Engine.advance` costs
O(events × running) whatever the number of tokens it covers. The driver decides how often to call
it: calling it every few milliseconds while thousands of tokens per second are due is what
coalesces several tokens into one step and one SSE chunk.

All durations here are real seconds; the server has already applied ``time_scale``.
"""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Engine", "EngineSnapshot", "SeqState", "Sequence"]

_EPS = 1e-9


class SeqState(enum.Enum):
    NEW = "new"
    WAITING = "waiting"
    PREFILL = "prefill"
    DECODE = "decode"
    FINISHED = "finished"
    ABORTED = "aborted"


def _noop() -> None:
    return None


class Sequence:
    """One request inside the engine. ``notify`` is called when ``generated`` reaches ``wake_at``
    or the sequence ends (finished, aborted or killed by a restart)."""

    __slots__ = (
        "_counted",
        "arrived",
        "counted_at",
        "engine",
        "finish_reason",
        "max_gap",
        "notify",
        "prefill_end",
        "prefill_time",
        "progress",
        "prompt_tokens",
        "slowdown",
        "state",
        "target",
        "wake_at",
    )

    def __init__(
        self,
        *,
        prompt_tokens: int,
        target: int,
        finish_reason: str,
        prefill_time: float,
        slowdown: float = 1.0,
        max_gap: float | None = None,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.target = target
        self.finish_reason = finish_reason
        self.prefill_time = prefill_time
        self.slowdown = slowdown
        self.max_gap = max_gap
        self.notify: Callable[[], None] = _noop
        self.wake_at = 1
        self.state = SeqState.NEW
        self.progress = 0.0
        self.prefill_end = 0.0
        self.engine = -1
        self.arrived = 0.0
        self.counted_at = 0.0  # when ``/metrics`` starts to count it (the "steps" lag mode)
        self._counted = 0

    @property
    def generated(self) -> int:
        """Whole tokens generated so far."""
        return int(self.progress + _EPS)

    @property
    def done(self) -> bool:
        return self.state in (SeqState.FINISHED, SeqState.ABORTED)

    def __repr__(self) -> str:
        return f"<Sequence {self.state.value} {self.generated}/{self.target} engine={self.engine}>"


@dataclass(frozen=True, slots=True)
class EngineSnapshot:
    """One engine's gauges and counters, as ``/metrics`` reports them."""

    engine: int
    running: int
    waiting: int
    kv_cache_usage: float
    prompt_tokens: int
    generation_tokens: int
    preemptions: int
    rejections: int
    success: tuple[tuple[str, int], ...]


FINISH_REASONS = ("stop", "length", "abort", "error", "repetition")


class Engine:
    """One engine: a FIFO waiting queue, a running batch and cumulative counters."""

    def __init__(
        self,
        *,
        index: int = 0,
        capacity: int,
        token_time: float,
        batch_slowdown: float,
        kv_cache_tokens: int,
        now: float,
        metrics_step: float = 0.0,
    ) -> None:
        self.index = index
        self.capacity = capacity
        self.token_time = token_time
        self.batch_slowdown = batch_slowdown
        self.kv_cache_tokens = kv_cache_tokens
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.preemptions = 0
        self.rejections = 0
        self.success: Counter[str] = Counter()
        self._t = now
        # The "steps" lag mode: /metrics counts a request from the end of the first metrics step that
        # sees it, a step lasting ``metrics_step`` per new request it sees (vLLM's prefill step), and
        # its first token comes no sooner.
        self.metrics_step = metrics_step
        self._step_end = -math.inf
        self._next_step: list[Sequence] = []

    # -- requests in and out -------------------------------------------------------------------
    def submit(self, seq: Sequence, now: float) -> None:
        """Queue ``seq`` (FIFO) and admit it at once if a slot is free."""
        self.advance(now)
        seq.engine = self.index
        seq.arrived = now
        seq.state = SeqState.WAITING
        if self.metrics_step > 0:
            self._steps_until(now)
            if self._next_step or now < self._step_end:
                seq.counted_at = math.inf  # seen by the step after the one in progress
                self._next_step.append(seq)
            else:  # an idle engine: a step starts now, with this request alone
                self._step_end = seq.counted_at = now + self.metrics_step
        self.waiting.append(seq)
        self.advance(now)

    def _steps_until(self, now: float) -> None:
        """Run the metrics steps that start by ``now``: each sees every request that arrived during the
        one before."""
        while self._next_step and self._step_end <= now:
            self._step_end += self.metrics_step * len(self._next_step)
            for seq in self._next_step:
                seq.counted_at = self._step_end
            self._next_step = []

    def abort(self, seq: Sequence, now: float) -> bool:
        """Remove ``seq`` (client gone, connection dropped); ``False`` if it had already ended.

        As in vLLM 0.32, an aborted request is not counted in ``request_success``."""
        if seq.done or seq.state is SeqState.NEW:
            return False
        self.advance(now)
        if seq.done:
            return False
        if seq.state is SeqState.WAITING:
            self.waiting.remove(seq)
        else:
            self.running.remove(seq)
        self._count(seq)
        seq.state = SeqState.ABORTED
        seq.notify()
        self.advance(now)
        return True

    def kill_all(self) -> list[Sequence]:
        """Forget every sequence (the server restarted); they end as aborted, uncounted."""
        dropped = [*self.running, *self.waiting]
        self.running.clear()
        self.waiting.clear()
        for seq in dropped:
            seq.state = SeqState.ABORTED
            seq.notify()
        return dropped

    def shift(self, dt: float) -> None:
        """Move the engine's clock forward by ``dt`` without progress (it was paused)."""
        self._t += dt
        for seq in self.running:
            seq.prefill_end += dt

    # -- time ----------------------------------------------------------------------------------
    def step_time(self) -> float:
        """Seconds per decode token for a normal sequence with the current batch."""
        n = max(1, len(self.running))
        return self.token_time * (1 + self.batch_slowdown * (n - 1))

    def _interval(self, seq: Sequence, step: float) -> float:
        interval = step * seq.slowdown
        return interval if seq.max_gap is None else min(interval, seq.max_gap)

    def advance(self, now: float) -> None:
        """Run the engine from its last time up to ``now``."""
        t = self._t
        now = max(now, t)
        touched: list[Sequence] = []
        while True:
            self._admit(t)
            self._steps_until(t)
            if not self.running:
                t = now
                break
            step = self.step_time()
            batch = list(self.running)
            intervals = [self._interval(seq, step) for seq in batch]
            events = [
                self._first_token_at(seq)
                if seq.state is SeqState.PREFILL
                else t + (seq.target - seq.progress) * interval
                for seq, interval in zip(batch, intervals, strict=True)
            ]
            # A metrics step that starts before now tells its requests when they are counted.
            step_starts = self._step_end if self._next_step and self._step_end > t else math.inf
            dt = min(now, step_starts, *events) - t
            t += dt
            changed = False
            # A sequence ends when its own event time is reached, compared as times (not as float
            # token counts), so every pass finishes something, completes a prefill, or reaches now.
            for seq, interval, event in zip(batch, intervals, events, strict=True):
                if seq.state is SeqState.DECODE:
                    if event <= t:
                        seq.progress = float(seq.target)
                    else:
                        seq.progress = min(float(seq.target), seq.progress + dt / interval)
                elif self._first_token_at(seq) <= t:
                    self.prompt_tokens_total += seq.prompt_tokens
                    seq.state = SeqState.DECODE
                    seq.progress = min(float(seq.target), math.floor(seq.progress + _EPS) + 1.0)
                    changed = True
                if seq.state is SeqState.DECODE and seq.progress >= seq.target:
                    self.running.remove(seq)
                    seq.state = SeqState.FINISHED
                    self.success[seq.finish_reason] += 1
                    touched.append(seq)
                    changed = True
            changed = self._preempt_overflow() or changed
            if not changed and t >= now:
                break
        self._t = t
        for seq in (*self.running, *touched):
            self._count(seq)
            if seq.done or seq.generated >= seq.wake_at:
                seq.notify()

    def next_event(self) -> float | None:
        """When something visible happens next (a token, a prefill ending); ``None`` if idle."""
        if not self.running:
            return None
        step = self.step_time()
        soonest = self._step_end if self._next_step else math.inf
        for seq in self.running:
            if seq.state is SeqState.PREFILL:
                soonest = min(soonest, self._first_token_at(seq))
            else:
                missing = math.floor(seq.progress + _EPS) + 1 - seq.progress
                soonest = min(soonest, self._t + max(missing, 0.0) * self._interval(seq, step))
        return soonest

    # -- internals -----------------------------------------------------------------------------
    def _first_token_at(self, seq: Sequence) -> float:
        """The end of its prefill; in the "steps" lag mode, not before the metrics step that counts it
        (in vLLM that step is the prefill: the gauges and the first token come out of it together)."""
        return max(seq.prefill_end, seq.counted_at)

    def kv_held(self) -> int:
        return sum(seq.prompt_tokens + seq.generated for seq in self.running)

    def _admit(self, t: float) -> None:
        while self.waiting and len(self.running) < self.capacity:
            seq = self.waiting[0]
            need = seq.prompt_tokens + seq.generated
            if self.running and self.kv_held() + need > self.kv_cache_tokens:
                return
            self.waiting.popleft()
            seq.state = SeqState.PREFILL
            seq.prefill_end = t + seq.prefill_time * need / max(1, seq.prompt_tokens)
            self.running.append(seq)

    def _preempt_overflow(self) -> bool:
        """Preempt the newest running sequences (recompute later) while the KV budget overflows."""
        preempted = False
        while len(self.running) > 1 and self.kv_held() > self.kv_cache_tokens:
            seq = self.running.pop()
            seq.state = SeqState.WAITING
            self.waiting.appendleft(seq)
            self.preemptions += 1
            preempted = True
        return preempted

    def _count(self, seq: Sequence) -> None:
        generated = seq.generated
        self.generation_tokens_total += generated - seq._counted
        seq._counted = generated

    def snapshot(self, arrived_by: float | None = None, *, counted_by: float | None = None) -> EngineSnapshot:
        """Gauges and counters now; with ``arrived_by``, the gauges count only the requests that
        arrived by then (vLLM's ``/metrics`` shows new arrivals late and departures at once); with
        ``counted_by`` (the "steps" lag mode), those whose metrics step ended by then."""
        running, waiting = len(self.running), len(self.waiting)
        if arrived_by is not None:
            running = sum(seq.arrived <= arrived_by for seq in self.running)
            waiting = sum(seq.arrived <= arrived_by for seq in self.waiting)
        if counted_by is not None:
            self._steps_until(counted_by)
            running = sum(seq.counted_at <= counted_by for seq in self.running)
            waiting = sum(seq.counted_at <= counted_by for seq in self.waiting)
        return EngineSnapshot(
            engine=self.index,
            running=running,
            waiting=waiting,
            kv_cache_usage=min(1.0, self.kv_held() / self.kv_cache_tokens),
            prompt_tokens=self.prompt_tokens_total,
            generation_tokens=self.generation_tokens_total,
            preemptions=self.preemptions,
            rejections=self.rejections,
            success=tuple((reason, self.success[reason]) for reason in FINISH_REASONS),
        )
