"""Hedged requests: a second copy of a call whose answer arrives far slower than the server's others.

A generation that keeps producing tokens is never cut: that is the stall limit's promise. But one answer
may come at a fraction of the speed of the rest (a replica in trouble, a request the server serves
badly), and a pipeline that gathers a round of calls waits for its slowest. A hedge ("The Tail at
Scale", Dean and Barroso) sends a copy of such a call, to another replica when there is one, and takes
whichever answer completes first; the other is cancelled (its connection closed: vLLM aborts it).

How slow is slow is learned, not configured in seconds:

* :class:`Pace` is, per server, the typical time per character of an answer: over the last ``WINDOW``
  reads of all its answers, the time they covered over the generated text they brought (the
  assembler's ``produced``: characters, at least ``TOKEN_CHARS`` for an event that brought any,
  ``_assemble.py``). Text, not events: a server may pack several tokens into one event (vLLM's
  ``--stream-interval``, speculative decoding, the simulator's steps), and an answer ten times slower
  than the rest then brings fewer tokens per event as well as fewer events: counted in events it looked
  only two to three times slower. The floor per event keeps one token per event (vLLM's default) one
  token's worth, so that an answer of digits or CJK characters is not slower than one of English words.
  It costs one ``len`` of a string the assembler already holds. One slow answer among
  others (its reads are the rarer ones) barely moves it; a server that slows down as a whole (a larger
  batch) moves it within a few reads of each answer; an answer read alone is its own pace, so it is
  never judged slow against itself. The monitor also uses it (``read_gap``, ``last_at``) to judge an
  answer that went silent mid-way (``_vllm/_monitor.py``).
* :class:`AnswerPace` is one answer's own time per character over its last ``OWN_WINDOW`` reads, so an
  answer that began while the server was busier is not judged by its slower past. The answer is slow
  when, after at least ``MIN_READS`` reads of its own and ``MIN_PACE_READS`` of the server's, that is
  more than ``slowdown`` × the server's pace, both over its latest reads and over the same stretch of
  time as its own window (:meth:`Pace.gap_since`, from buckets of ``BUCKET`` seconds): with many
  answers running, the server's latest ``WINDOW`` reads span a fraction of one answer's, and a pause
  that every answer met (a CPU vLLM prefilling the newcomers of a burst) must not make the answers
  that were running through it look slow.

Only non-streaming calls are hedged (nothing has reached the caller, so either answer will do), at most
once per attempt, and each hedge takes a retry from the retry budget: a server on which every answer
is slow gets no more hedges than retries. :func:`race` runs the rest of the slow answer and the copy
side by side; the first answer wins, a failure of one leaves the other to finish.

Pure but for :func:`race`: no clock, no I/O; the reader passes the time.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import anyio

__all__ = ["AnswerPace", "Hedger", "Pace", "race"]

T = TypeVar("T")

#: A server's pace is measured over its last this many reads, of all its answers.
WINDOW = 64
#: An answer's own pace is measured over its last this many reads (the same recent stretch of time as
#: the server's: a server whose load changes changes both).
OWN_WINDOW = 16
#: An answer is judged only after this many reads of its own (a short answer is never hedged)...
MIN_READS = 16
#: ...and this many reads of the server's answers (its pace is known).
MIN_PACE_READS = 32
#: The server's pace over a stretch of time is kept in buckets of this many seconds of reads...
BUCKET = 1.0
#: ...the last this many (about four minutes).
BUCKETS = 256


class Pace:
    """One server's typical time per character of an answer: over its last ``WINDOW`` reads of all its
    answers, the time they covered over the characters they brought (``None`` until a read was seen).
    ``read_gap`` is the typical time between two reads of one answer; ``last_at`` the latest read."""

    __slots__ = ("_history", "_next", "_produced", "_reads", "_time", "last_at", "reads")

    def __init__(self) -> None:
        self._reads: list[tuple[float, int]] = []
        #: ``[start, time, characters]`` of the reads that arrived in each ``BUCKET`` seconds
        self._history: deque[list[float]] = deque(maxlen=BUCKETS)
        self._next = 0
        self._time = 0.0
        self._produced = 0
        self.reads = 0
        self.last_at = -math.inf

    def observe(self, elapsed: float, produced: int, *, at: float) -> None:
        """One read of an answer at ``at``: ``produced`` characters in the ``elapsed`` seconds since its
        previous read."""
        self.reads += 1
        self.last_at = at
        reads = self._reads
        if len(reads) < WINDOW:
            reads.append((elapsed, produced))
        else:
            old_elapsed, old_produced = reads[self._next]
            self._time -= old_elapsed
            self._produced -= old_produced
            reads[self._next] = (elapsed, produced)
            self._next = (self._next + 1) % WINDOW
        self._time += elapsed
        self._produced += produced
        history = self._history
        if history and at < history[-1][0] + BUCKET:
            bucket = history[-1]
            bucket[1] += elapsed
            bucket[2] += produced
        else:
            history.append([at, elapsed, produced])

    def gap_since(self, since: float) -> float | None:
        """Seconds per character of the reads that arrived since ``since`` (to within ``BUCKET``
        seconds; all that is kept when it is older): the server's pace over one answer's stretch."""
        time = produced = 0.0
        for start, elapsed, characters in reversed(self._history):
            time += elapsed
            produced += characters
            if start <= since:
                break
        return time / produced if produced > 0 else None

    @property
    def gap(self) -> float | None:
        """Seconds per character."""
        return self._time / self._produced if self._produced > 0 else None

    @property
    def read_gap(self) -> float | None:
        reads = len(self._reads)
        return self._time / reads if reads else None


class AnswerPace:
    """One answer's pace against its server's: :meth:`heard` says when it is slow."""

    __slots__ = ("_marks", "_pace", "_slowdown", "reads")

    def __init__(self, pace: Pace, slowdown: float) -> None:
        self._pace = pace
        self._slowdown = slowdown
        #: (time, characters produced) at its last reads: its own pace over the same recent stretch as
        #: the server's
        self._marks: deque[tuple[float, int]] = deque(maxlen=OWN_WINDOW + 1)
        self.reads = 0

    @property
    def gap(self) -> float | None:
        """This answer's time per character over its last ``OWN_WINDOW`` reads (``None`` before two)."""
        marks = self._marks
        if len(marks) < 2:
            return None
        (first_at, first_produced), (last_at, last_produced) = marks[0], marks[-1]
        return (last_at - first_at) / (last_produced - first_produced)

    def heard(self, now: float, produced: int) -> bool:
        """A read at ``now`` brought the answer to ``produced`` characters of generated text: whether
        it is now slow. A read that brought no text (a role, a finish reason) is not one of its reads.

        The first read only starts the clock (the time before it is the server's queue and prefill).
        """
        marks = self._marks
        if marks:
            last_at, last_produced = marks[-1]
            if produced <= last_produced:
                return False
            self._pace.observe(now - last_at, produced - last_produced, at=now)
            self.reads += 1
        marks.append((now, produced))
        pace = self._pace
        if self.reads < MIN_READS or pace.reads < MIN_PACE_READS:
            return False
        typical, own = pace.gap, self.gap
        if typical is None or own is None or own <= self._slowdown * typical:
            return False
        # Slower than the server's latest reads: also slower than its reads over this answer's own
        # stretch? With many answers running the latest reads cover a fraction of the time its own do,
        # and a stall that every answer met (a CPU vLLM prefilling a burst's newcomers sends no token
        # for seconds) is then in its window but not in the server's.
        stretch = pace.gap_since(self._marks[0][0])
        return stretch is None or own > self._slowdown * stretch


class Hedger(Protocol):
    """What the call pipeline gives an attempt that may be hedged (``_engine.py``)."""

    slowdown: float

    async def send(self, copy: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``copy`` on a new attempt (its own limiter slot, another replica when there is one)."""
        ...

    def won(self) -> None:
        """The copy's answer was the one used."""
        ...

    def alone(self) -> bool:
        """The slow answer failed: from now on a failed copy is not retried. Whether the copy goes on
        (it is in flight on a slot of its own); if not, the race ends and the call's retry takes over."""
        ...


def _go_on() -> bool:
    return True


async def race(
    primary: Callable[[], Awaitable[T]],
    hedge: Callable[[], Awaitable[T]],
    *,
    hedge_alone: Callable[[], bool] = _go_on,
) -> tuple[T, bool]:
    """Run both; the first answer wins and the other is cancelled. Returns it and whether the hedge won.

    A failure of the hedge leaves the primary to finish. A failure of the primary asks ``hedge_alone``
    whether the hedge goes on by itself (:meth:`Hedger.alone`): a copy that is not in flight (it waits
    for a slot or a retry) is cancelled instead, and the primary's error raised, so that the call's own
    retry takes over — the primary's slot is released before it waits for another, where waiting for the
    copy would hold it (a restart that killed both, behind a half-open breaker that admits as many calls
    as are held, would wait out the stall limit). When both fail, the primary's error is raised (the call
    pipeline retries it as any other), or the hedge's if the primary had none.
    """
    won: list[tuple[T, bool]] = []
    errors: dict[bool, Exception] = {}

    async def run(fn: Callable[[], Awaitable[T]], is_hedge: bool, scope: anyio.CancelScope) -> None:
        try:
            value = await fn()
        except Exception as exc:  # an error of one side is not the race's: the other may still answer
            errors[is_hedge] = exc
            if not is_hedge and not won and not hedge_alone():
                scope.cancel()
            return
        if not won:
            won.append((value, is_hedge))
            scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, primary, False, tg.cancel_scope)
        tg.start_soon(run, hedge, True, tg.cancel_scope)
    if won:
        return won[0]
    raise errors[False] if False in errors else errors[True]
