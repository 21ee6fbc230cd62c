"""An attempt's wait on the server — its silence deadline — and the registry the server monitor reads.

A :class:`Watch` is the one owner of an attempt's silence limit: the reader binds the cancel scope of
the read in progress to it, tells it when something arrived (:meth:`Watch.heard` moves the limit
forward), and the server monitor may restart the limit (:meth:`Watch.excuse_silence`, the request sits
in the server's waiting queue) or cut the wait (:meth:`Watch.abort_orphan`, the server forgot it;
:meth:`Watch.cut_overtaken`, requests sent after it have started answering while it showed nothing).
Nobody else touches the scope's deadline.

:class:`Watches` is the registry of the attempts this client is waiting on, per server: the call
pipeline adds and removes, the monitor iterates. A committed stream keeps its watch registered until
it closes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import NamedTuple

from ._scope import DeadlineScope

#: Moving a cancel scope's deadline costs a timer reschedule: skip moves shorter than this share of silence.
_MOVE_SLACK = 0.05


class Watch:
    """One attempt waiting on the server, as the silence limit and the orphan detector see it.

    ``sent_at``: when the request went out; ``first_byte_at``: when the first event of the answer
    arrived (before that the request may sit in the server's queue, or not be counted by its
    ``/metrics`` yet); ``silent_since``: the last event. ``silence`` is the longest silence allowed
    (``None``: none), never past ``deadline_at``.
    """

    __slots__ = (
        "client_waiting",
        "cut_after",
        "deadline_at",
        "first_byte_at",
        "may_overtake",
        "orphaned",
        "overtaken_by",
        "paced",
        "scope",
        "sent_at",
        "server_active",
        "silence",
        "silent_since",
        "size",
        "streams",
    )

    def __init__(self, *, now: float, silence: float | None, deadline_at: float) -> None:
        self.scope: DeadlineScope | None = None
        self.sent_at = now
        self.silent_since = now
        self.first_byte_at: float | None = None
        self.silence = silence
        self.deadline_at = deadline_at
        self.orphaned = False
        self.server_active = 0
        self.client_waiting = 0
        self.paced = False  # its reads feed the server's pace: the monitor may judge its silences
        self.cut_after: float | None = None  # cut as silent mid-answer after this long (a stall)
        self.streams = False  # its answer comes as a stream: its first event says the server took it up
        self.size = 0  # bytes of its request body (a rough measure of its prompt)
        self.may_overtake = False  # the overtaken rule may cut it (once per call: ``Request.overtaken``)
        self.overtaken_by = 0  # cut by the overtaken rule: how many later requests had started

    def first_deadline(self, now: float) -> float:
        """The deadline of a read starting now: the silence limit, capped by the call's deadline."""
        if self.silence is None:
            return self.deadline_at
        return min(self.deadline_at, now + self.silence)

    def bind(self, scope: DeadlineScope) -> None:
        """``scope`` is the read in progress: the one the silence limit moves and an abort cancels."""
        self.scope = scope
        if self.orphaned or self.cut_after is not None:  # judged between two reads
            scope.cancel()

    @property
    def started(self) -> bool:
        """Whether any byte of the answer arrived (before that, the request may be queued)."""
        return self.first_byte_at is not None

    def heard(self, now: float) -> None:
        """Something arrived: the server is alive; the silence limit moves forward."""
        self.silent_since = now
        if self.first_byte_at is None:
            self.first_byte_at = now
        silence, scope = self.silence, self.scope
        if silence is not None and scope is not None and scope.deadline < self.deadline_at:
            move_to = now + silence
            if move_to - scope.deadline > silence * _MOVE_SLACK:
                scope.deadline = min(move_to, self.deadline_at)

    def excuse_silence(self, now: float) -> None:
        """The server reports a waiting queue this request may be in: restart its silence clock."""
        scope = self.scope
        if self.silence is not None and scope is not None:
            until = min(self.deadline_at, now + self.silence)
            if until > scope.deadline:
                scope.deadline = until

    def cut_silent(self, silent_for: float) -> None:
        """The answer stopped mid-way while the server's others kept coming: end the wait (a stall)."""
        self.cut_after = silent_for
        if self.scope is not None:
            self.scope.cancel()

    def cut_overtaken(self, overtakers: int, client_waiting: int) -> None:
        """Requests sent after this one have started answering while it showed nothing: the server
        lost it (first come, first served). End the wait as an orphan's."""
        self.overtaken_by = overtakers
        self.abort_orphan(-1, client_waiting)

    def abort_orphan(self, server_active: int, client_waiting: int) -> None:
        """The server no longer knows this request: end the wait (the pipeline retries it)."""
        self.orphaned = True
        self.server_active, self.client_waiting = server_active, client_waiting
        if self.scope is not None:
            self.scope.cancel()


class Finished(NamedTuple):
    """An attempt that stopped waiting: when it was sent, ended, started answering; whether the client
    gave up on it (``abandoned``: an abort, a stall, a deadline, a cancellation, a broken connection)
    rather than the server answering it (with an answer or an error status)."""

    sent_at: float
    ended_at: float
    started_at: float | None
    abandoned: bool


class Watches:
    """The attempts a client is waiting on (one registry per server), in the order they were sent.

    Attempts that stopped waiting since the monitor last looked are kept for it (:meth:`drain_finished`):
    how the server's count follows them teaches the monitor its ``/metrics`` lag.
    """

    __slots__ = ("_finished", "_items", "on_change", "recent_starts")

    #: Finished attempts kept for the monitor between two scrapes (it drains them at each one).
    MAX_FINISHED = 4096
    #: Finished attempts whose answer had started, kept for the overtaken rule: ``(sent_at,
    #: first_byte_at, size)`` of the latest ones.
    MAX_RECENT_STARTS = 64

    def __init__(self) -> None:
        self._items: dict[Watch, None] = {}
        self._finished: deque[Finished] = deque(maxlen=self.MAX_FINISHED)
        self.recent_starts: deque[tuple[float, float, int]] = deque(maxlen=self.MAX_RECENT_STARTS)
        #: Called after each add (the monitor starts polling when the first call goes out).
        self.on_change: Callable[[], None] | None = None

    def add(self, watch: Watch) -> None:
        self._items[watch] = None
        if self.on_change is not None:
            self.on_change()

    def discard(self, watch: Watch, *, now: float, abandoned: bool) -> None:
        if self._items.pop(watch, False) is None:
            started = watch.first_byte_at
            self._finished.append(Finished(watch.sent_at, now, started, abandoned))
            if started is not None:
                self.recent_starts.append((watch.sent_at, started, watch.size))

    def drain_finished(self) -> list[Finished]:
        finished = list(self._finished)
        self._finished.clear()
        return finished

    def __iter__(self) -> Iterator[Watch]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __bool__(self) -> bool:
        return bool(self._items)


__all__ = ["Finished", "Watch", "Watches"]
