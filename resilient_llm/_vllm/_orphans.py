"""Orphan detection: attempts the server has forgotten while the client still waits on them.

The incident this guards against: the server finished (or lost) every request, ``Running: 0 reqs``, while
the client kept waiting on open connections until its 2500 s timeout. Streaming with a stall timeout
catches silence, but a request may legitimately sit silent in vLLM's waiting queue for minutes, so
silence alone proves nothing. The server's own count does.

The rule
--------
The client keeps, for each attempt in flight, the time since which it has been *silent*: sent and
waiting for its next byte. Each scrape of ``/metrics`` gives ``server_active = running + waiting``.

1. Several clients may share one server, and their requests only *add* to its count. Every request the
   server knows of this client's is one of those ``server_active``; so when this client has ``n``
   attempts in flight (silent or receiving) and ``n > server_active``, at least ``n − server_active`` of
   them are unknown to the server, whatever the other clients do. Those cannot be the ones receiving
   bytes, so the orphans are among the silent ones. (The caller passes ``known``, its count of attempts
   in flight since at least ``grace`` before the scrape; without it only the silent attempts are
   counted, a weaker bound that misses an orphan while the server is busy streaming this client's
   other answers.)
2. ``/metrics`` lags, on arrivals: vLLM counts a request only from the end of the engine step that
   first schedules it. A real vLLM 0.32 on a CPU showed 64 requests sent at once as ``running 1`` for
   6-8 s, and for 13.5 s with other work on the machine (``docs/real-vllm.md``). So only attempts sent
   at least ``grace`` seconds before the scrape count (``known``), and only attempts silent for at least
   ``grace`` at the time of the scrape (``T − silent_since ≥ grace``) are eligible:
   ``deficit = max(known, eligible) − server_active``. The time of a scrape, ``T``, is when it was
   *sent* (``load.earliest_at``; its arrival when that is not known): the server takes its counts
   somewhere between the two, so a request sent after the scrape was sent may be missing from them
   whatever the lag. Stamped at its arrival, a scrape that took a while to come back (a busy server's
   ``/metrics`` handler) would count as owed the requests sent while it was on its way.
3. One scrape is not the truth of now. The deficit must persist: every scrape of an unbroken run of
   scrapes with ``deficit > 0`` that spans at least ``grace`` seconds (by ``T``). A scrape with
   no deficit ends the run; a scrape older than the last one seen is ignored; re-observing the same
   scrape does not lengthen the run.
4. An attempt becomes a candidate once the run has gone on for ``grace`` seconds since it was both
   underway and the attempt eligible: ``seen_at − max(run_start, silent_since + grace) ≥ grace``. The
   oldest candidates are selected, at most ``deficit`` of them, to be aborted and retried. Attempts
   already selected are neither selected again nor counted as still owed while the caller winds them
   down.

5. A finer bound for answers that stopped mid-way (a server that generated an answer and never sent the
   rest): every attempt whose answer had started arriving by the scrape is scheduled, hence counted in
   ``running`` (vLLM counts a request once the step that schedules it ends, which is when its first
   token exists). So when this client is streaming ``s`` answers and the server runs fewer than ``s``
   requests, at least ``s − running`` of those answers are forgotten. The waiting queue, which lags and
   churns, cannot hide such an orphan; only attempts that started *and* then went silent for ``grace``
   are chosen for it. Other clients' requests only add to ``running``, so this bound is safe too.

An orphan is therefore aborted between ``2 × grace`` and ``2 × grace`` plus one poll interval after it
went silent, and a lag up to about ``2 × grace`` is tolerated: ``grace`` must be at least half the
server's longest arrival lag (7 s for the contended CPU burst above; GPU servers lag far less).
``grace = 0`` trusts every scrape at once.

6. The grace may change from scrape to scrape (``observe(..., grace=...)``; ``_lag.py`` learns it from
   the server's own counts): each scrape is judged with the grace passed with it, in all of the rules
   above, while the run and the selections carry over. A grace that grows during a run only delays
   candidates; one that shrinks during a run would let an earlier, shorter grace stand for part of the
   persistence, so the learner never shrinks it while a deficit lasts. The guarantees above then hold
   with ``grace`` the smallest grace passed during the run: no deficit at all while every attempt of
   this client is counted within that grace of being sent, no abort of a batch sent at once whose
   lag is under twice it. Rule 5 keeps the grace given at construction (or the scrape's, if longer):
   an answer that started and then fell silent while ``running`` dropped is most often one the server
   preempted back to its queue under memory pressure, not one counted late.

Which attempts are the orphans is a guess: oldest silent first. With ``known``, a deficit can come from
an attempt the server dropped a moment ago while an older one still sits, legitimately silent, in the
server's queue; the older one is then aborted first (and retried), and the young orphan follows once it
has been silent long enough.

The detector is pure: no clock, no I/O, no logging. The caller passes the time and acts on the result.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Sequence
from typing import Generic, TypeVar

from resilient_llm._exceptions import ConfigError
from resilient_llm._load import ServerLoad

__all__ = ["OrphanDetector"]

K = TypeVar("K", bound=Hashable)


class OrphanDetector(Generic[K]):
    """Decides which silent attempts the server no longer knows about; see the module docstring.

    ``grace`` (seconds, ≥ 0) is both how long an attempt must have been silent to count and how long
    the deficit must persist across scrapes; it is the default for scrapes observed without a grace
    of their own (rule 6).
    """

    __slots__ = ("_grace", "_last_scrape", "_run_start", "_selected")

    def __init__(self, *, grace: float) -> None:
        self._grace = _check_grace(grace)
        self._run_start: float | None = None  # T (earliest_at) of the first scrape of the current deficit run
        self._last_scrape: float | None = None
        self._selected: set[K] = set()  # returned before and still reported silent by the caller

    @property
    def grace(self) -> float:
        return self._grace

    def observe(
        self,
        load: ServerLoad,
        silent: Sequence[tuple[K, float]],
        now: float,
        *,
        known: int | None = None,
        streaming: Collection[K] | None = None,
        grace: float | None = None,
    ) -> list[K]:
        """Feed one scrape; return the keys to abort, oldest first (usually none).

        ``silent`` holds ``(key, silent_since)`` for every attempt currently waiting for a byte, on the
        same clock as ``now`` and the scrape's times; ``known`` is how many attempts (silent or not)
        this client has had in flight since at least ``grace`` before the scrape was sent
        (``load.earliest_at``); ``streaming`` the keys of attempts whose answer had started arriving
        by then (rule 5). ``grace`` is this scrape's
        grace (rule 6); ``None`` uses the one given at construction.
        """
        grace = self._grace if grace is None else _check_grace(grace)
        present = {key for key, _ in silent}
        self._selected &= present
        at = load.earliest_at
        if self._last_scrape is not None and at <= self._last_scrape:
            return []  # the same scrape again, or an older one: nothing new is known
        self._last_scrape = at

        seen_at = min(now, at)
        eligible = [(since, key) for key, since in silent if seen_at - since >= grace]
        deficit_all = max(len(eligible), known or 0) - load.active
        started = set(streaming) if streaming is not None else set()
        deficit_started = len(started) - load.running if streaming is not None else 0
        if max(deficit_all, deficit_started) <= 0:
            self._run_start = None
            return []
        if self._run_start is None:
            self._run_start = seen_at
        if seen_at - self._run_start < grace:
            return []

        run_start = self._run_start

        def candidates(wait: float) -> list[K]:
            """Eligible keys not yet selected whose silence, and the run, have lasted ``wait`` since
            both began, oldest first."""
            ordered = sorted(
                (since, i, key)
                for i, (since, key) in enumerate(eligible)
                if key not in self._selected and seen_at - max(run_start, since + wait) >= wait
            )
            return [key for _, _, key in ordered]

        # Rule 5 first: answers that started and then went silent while the server runs fewer requests
        # than this client is streaming. Its silences are not the metrics lag (a preempted answer waits
        # in the queue, silent), so it keeps the detector's own grace whatever the scrape's (rule 6).
        owed_started = deficit_started - len(self._selected & started)
        chosen: list[K] = []
        if owed_started > 0:
            chosen = [key for key in candidates(max(grace, self._grace)) if key in started][:owed_started]
        owed = deficit_all - len(self._selected) - len(chosen)
        if owed > 0:
            chosen += [key for key in candidates(grace) if key not in chosen][:owed]
        self._selected.update(chosen)
        return chosen

    def reset(self) -> None:
        """Forget every scrape and selection (e.g. after the server restarted or the URL changed)."""
        self._run_start = None
        self._last_scrape = None
        self._selected.clear()

    def __repr__(self) -> str:
        return f"OrphanDetector(grace={self._grace:g})"


def _check_grace(grace: object) -> float:
    if (
        isinstance(grace, bool)
        or not isinstance(grace, (int, float))
        or not math.isfinite(grace)
        or grace < 0
    ):
        raise ConfigError(f"grace must be a finite number of seconds >= 0, got {grace!r}")
    return float(grace)
