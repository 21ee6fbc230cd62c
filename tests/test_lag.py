"""The lag tracker (``resilient_llm._vllm._lag``): its rules one by one, then with the orphan rule over whole
timelines (``tests/lag_timeline.py``), scrape by scrape, with explicit times."""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from resilient_llm._exceptions import ConfigError
from resilient_llm._load import ServerLoad
from resilient_llm._vllm._lag import Ended, LagTracker
from resilient_llm._vllm._metrics import parse_metrics
from resilient_llm._vllm._orphans import OrphanDetector
from resilient_llm.testing import SimulatorConfig, VLLMSimulator
from tests.lag_timeline import (
    OTHER,
    EarlyAnswers,
    IntervalServer,
    Outcome,
    Request,
    StepServer,
    burst,
    cpu_server,
    fast_server,
    fixed_lag,
    run,
)

Attempts = Sequence[tuple[float, float | None]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # VLLMSimulator serves on the running asyncio loop


def scrape(
    tracker: LagTracker,
    at: float,
    active: int,
    attempts: Attempts,
    *,
    ended: tuple[Ended, ...] = (),
    running: int | None = None,
    engines: int = 1,
) -> float:
    running = active if running is None else running
    load = ServerLoad(
        running=running, waiting=active - running, kv_cache_usage=None, engines=engines, scraped_at=at
    )
    return tracker.observe(load, attempts, ended=ended)


def learned(tracker: LagTracker, *, at: float, lag: float, count: int = 1) -> float:
    """Teach ``tracker`` one sample: ``count`` attempts sent at ``at``, all started ``lag`` later, and
    counted at the first scrape after that (scrapes every 0.5 s). Returns the time of that scrape."""
    t = at + 0.5
    while t < at + lag:
        scrape(tracker, t, 0, [(at, None)] * count)
        t += 0.5
    scrape(tracker, t, count, [(at, at + lag)] * count)
    return t


# --- rules, one by one --------------------------------------------------------------------------------


def test_before_any_evidence_the_grace_is_the_longest() -> None:
    tracker = LagTracker()
    assert (tracker.grace, tracker.appear_lag, tracker.leave_lag) == (10.0, None, None)
    for t in (0.5, 1.0, 1.5):  # a request the server does not show yet
        assert scrape(tracker, t, 0, [(0.2, None)]) == 10.0
    assert tracker.appear_lag is None


def test_a_started_answer_bounds_the_lag_by_its_first_byte() -> None:
    tracker = LagTracker(min_grace=0)
    assert scrape(tracker, 0.5, 0, [(0.2, None)]) == 10.0
    # Counted by 1.0, its answer started at 0.6: counted within 0.4 s of being sent (and not by 0.5,
    # 0.3 s after: with headroom, 0.45 s).
    scrape(tracker, 1.0, 1, [(0.2, 0.6)])
    assert tracker.grace_for(1, 1) == pytest.approx(0.45)
    # The grace reported is the one a new request would get: one more on a server running one.
    assert tracker.grace == tracker.appear_lag == pytest.approx(0.9)


def test_an_unstarted_attempt_is_in_doubt_until_it_starts() -> None:
    # Counted by 1.0 (the server shows one request), but not started: it might be an orphan holding the
    # place of another request. Once it starts, the scrape that counted it bounds its lag: 0.8 s.
    tracker = LagTracker(min_grace=0)
    scrape(tracker, 0.5, 0, [(0.2, None)])
    assert scrape(tracker, 1.0, 1, [(0.2, None)]) == 10.0
    assert tracker.appear_lag is None
    scrape(tracker, 1.5, 1, [(0.2, 1.4)])
    assert tracker.grace_for(1, 1) == pytest.approx(0.8)


def test_an_attempt_in_doubt_that_is_abandoned_teaches_nothing() -> None:
    tracker = LagTracker()
    scrape(tracker, 1.0, 1, [(0.2, None)])
    scrape(tracker, 1.5, 0, [], ended=(Ended(0.2, 1.2, None, abandoned=True),))
    scrape(tracker, 2.0, 0, [])
    assert (tracker.grace, tracker.appear_lag) == (10.0, None)


def test_a_call_answered_between_two_scrapes_teaches_too() -> None:
    tracker = LagTracker(min_grace=0)
    scrape(tracker, 0.5, 0, [], ended=(Ended(0.1, 0.3, 0.15),))
    assert tracker.grace_for(1, 1) == pytest.approx(0.05)


def test_error_answers_teach_nothing() -> None:
    # A 503 or 400 answer never started: the server may never have counted it.
    tracker = LagTracker()
    scrape(tracker, 0.5, 0, [], ended=(Ended(0.1, 0.2, None),))
    assert (tracker.grace, tracker.appear_lag) == (10.0, None)


def test_a_long_lag_gets_headroom() -> None:
    # 4 requests sent at 0, shown from 8.0 on, started at 7.9. They were not counted at 7.5 (lower bound
    # 7.5 s), and were by 7.9: the bound is max(7.9, 1.5 x 7.5) = 11.25 s.
    tracker = LagTracker(max_grace=30)
    learned(tracker, at=0.0, lag=7.9, count=4)
    assert tracker.grace_for(4, 4) == pytest.approx(11.25)
    capped = LagTracker()
    learned(capped, at=0.0, lag=7.9, count=4)
    assert capped.grace_for(4, 4) == 10.0


@pytest.fixture
def two_loads() -> LagTracker:
    """A tracker that saw one request counted within 0.8 s on an idle server and 64 within 8 s."""
    tracker = LagTracker(max_grace=100)
    learned(tracker, at=0.0, lag=0.8)  # (k=1, a=1, b=0.8)
    end = learned(tracker, at=10.0, lag=8.0, count=64)  # waited 7.5: b = 1.5 x 7.5 = 11.25
    scrape(tracker, end + 0.5, 0, [])
    return tracker


@pytest.mark.parametrize(
    ("pending", "load", "expected"),
    [
        (1, 1, 0.8),  # the nearest covering sample
        (1, 60, 11.25),  # a single request while 59 run: only the big sample covers it
        (2, 2, 1.6),  # beyond the small sample: 0.8 x 2, tighter than the big one's 11.25
        (64, 64, 11.25),
        (40, 64, 11.25),
        (128, 128, 22.5),  # beyond every sample: 11.25 x 2
        (1, 200, 11.25 * 200 / 64),
    ],
)
def test_rule_6_bound_from_the_nearest_covering_load(
    two_loads: LagTracker, pending: int, load: int, expected: float
) -> None:
    assert two_loads.grace_for(pending, load) == pytest.approx(expected)


def test_the_grace_is_clamped_between_its_bounds(two_loads: LagTracker) -> None:
    tracker = LagTracker(min_grace=1.0, max_grace=5.0)
    learned(tracker, at=0.0, lag=0.3)
    assert tracker.grace_for(1, 1) == 1.0
    assert tracker.grace_for(1000, 1000) == 5.0


def test_the_grace_never_shrinks_while_some_attempt_may_be_uncounted() -> None:
    tracker = LagTracker()
    learned(tracker, at=0.0, lag=0.3)
    assert scrape(tracker, 2.0, 0, []) == 0.5
    # 40 requests sent at 2.1: load 40, far beyond the evidence (40 x 0.3 s), the grace goes to the cap...
    burst_ = [(2.1, None)] * 40
    assert scrape(tracker, 2.5, 0, burst_) == 10.0
    # ...and stays there while any may be uncounted, though only one is now.
    assert scrape(tracker, 3.0, 39, [(2.1, 2.9)] * 39 + [(2.1, None)]) == 10.0
    # Every one counted: the run is over.
    assert scrape(tracker, 3.5, 40, [(2.1, 2.9)] * 40) < 10.0


def test_other_clients_requests_count_as_a_possible_burst() -> None:
    # Both trackers saw one request counted within 0.4 s. One of them also saw the server count 5
    # requests that are not this client's: one request of its own pending, it allows for those 5 to
    # arrive again in a burst (6 x 0.4 s).
    alone, shared = LagTracker(), LagTracker()
    for tracker, foreign in ((alone, 0), (shared, 5)):
        learned(tracker, at=0.0, lag=0.4)
        scrape(tracker, 2.0, foreign, [])
    assert scrape(alone, 2.5, 0, [(2.4, None)]) == 0.5
    assert scrape(shared, 2.5, 0, [(2.4, None)]) == pytest.approx(6 * 0.4)


def test_the_leave_lag_is_learned_when_the_server_runs_no_more_than_this_client_streams() -> None:
    tracker = LagTracker()
    scrape(tracker, 0.5, 1, [(0.0, 0.2)])
    # Finished at 1.0; still counted at 1.5 and 2.5 (the server runs 1, this client streams nothing).
    done = (Ended(0.0, 1.0, 0.2),)
    scrape(tracker, 1.5, 1, [], ended=done)
    scrape(tracker, 2.5, 1, [])
    assert tracker.leave_lag is None
    scrape(tracker, 3.0, 0, [])
    assert tracker.leave_lag == pytest.approx(2.0)


def test_ends_that_may_still_be_counted_do_not_vouch_for_new_attempts() -> None:
    # Leave lag 2 s learned. An attempt finishes at 3.0 and another is sent at 3.1: at 3.5 the server
    # shows one request, the finished one (still counted), not the new one. No sample may say that the
    # new one was counted within 0.4 s; at 4.0 the server shows both: counted within 0.9 s.
    tracker = LagTracker(min_grace=0)
    scrape(tracker, 0.5, 1, [(0.0, 0.2)])
    scrape(tracker, 1.5, 1, [], ended=(Ended(0.0, 1.0, 0.2),))
    scrape(tracker, 3.0, 0, [])
    assert tracker.leave_lag == pytest.approx(2.0)
    scrape(tracker, 3.01, 1, [(2.0, 2.2)])
    assert tracker.grace_for(1, 1) == pytest.approx(0.2)
    scrape(tracker, 3.5, 1, [(3.1, None)], ended=(Ended(2.0, 3.0, 2.2),))
    scrape(tracker, 4.0, 2, [(3.1, None)])  # both counted: it crosses now, not yet started
    scrape(tracker, 4.5, 1, [(3.1, 4.2)])  # started: confirmed, counted by 4.0
    # Had it crossed at 3.5, the bound would be 0.4 s.
    assert tracker.grace_for(1, 1) == pytest.approx(0.9)


def test_with_several_engines_only_a_full_count_teaches() -> None:
    # Two engines count in no known order: 1 of 2 counted says nothing about which.
    tracker = LagTracker(min_grace=0)
    scrape(tracker, 1.0, 1, [(0.0, 0.5), (0.9, None)], engines=2)
    assert tracker.appear_lag is None
    scrape(tracker, 1.5, 2, [(0.0, 0.5), (0.9, 1.2)], engines=2)
    assert tracker.grace_for(2, 2) == pytest.approx(0.5)


def test_observations_are_forgotten_after_the_window() -> None:
    tracker = LagTracker(window=60)
    learned(tracker, at=0.0, lag=0.3)
    assert scrape(tracker, 59.0, 0, []) == 0.5
    assert scrape(tracker, 61.0, 0, []) == 10.0
    assert tracker.appear_lag is None


def test_an_older_or_repeated_scrape_changes_nothing() -> None:
    tracker = LagTracker()
    learned(tracker, at=0.0, lag=0.3)
    grace = tracker.grace
    assert scrape(tracker, 0.2, 0, [(0.1, None)] * 50) == grace
    assert scrape(tracker, 0.5, 0, [(0.1, None)] * 50) == grace


def test_reset_forgets_everything() -> None:
    tracker = LagTracker()
    learned(tracker, at=0.0, lag=0.3)
    tracker.reset()
    assert (tracker.grace, tracker.appear_lag, tracker.leave_lag) == (10.0, None, None)
    assert scrape(tracker, 0.1, 0, [(0.0, None)]) == 10.0  # earlier times are fine again


def test_attempts_sent_after_the_scrape_are_left_out() -> None:
    tracker = LagTracker()
    learned(tracker, at=0.0, lag=0.3)
    assert scrape(tracker, 2.0, 0, [(2.5, None)] * 30) == 0.5


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"min_grace": -1}, "min_grace must be a finite number >= 0, got -1"),
        ({"min_grace": 2.0, "max_grace": 1.0}, "max_grace must be a finite number >= 2, got 1.0"),
        ({"max_grace": math.inf}, "max_grace"),
        ({"window": 0}, "window must be a finite number > 0, got 0"),
        ({"headroom": 0.9}, "headroom must be a finite number >= 1, got 0.9"),
        ({"min_grace": True}, "min_grace"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match="LagTracker") as info:
        LagTracker(**kwargs)
    assert needle in str(info.value)


def test_a_fixed_grace() -> None:
    tracker = LagTracker(min_grace=3.0, max_grace=3.0)
    learned(tracker, at=0.0, lag=0.3)
    assert tracker.grace == 3.0
    assert tracker.grace_for(500, 500) == 3.0


def test_repr() -> None:
    tracker = LagTracker()
    assert repr(tracker) == "LagTracker(grace=10, appear_lag=None, leave_lag=None, samples=0)"
    learned(tracker, at=0.0, lag=0.4)  # a sample at load 1; the grace shown is for one more: load 2
    assert repr(tracker) == "LagTracker(grace=0.8, appear_lag=0.8, leave_lag=None, samples=1)"


# --- timelines: tracker and orphan rule together -----------------------------------------------------


def traffic(seed: int, start: float, end: float, rate: float, *, every: int = 0) -> list[Request]:
    """Calls at ``rate`` per second from ``start`` to ``end``, each ``every``-th lost or ghosted in
    turn (0: none)."""
    rnd = random.Random(seed)
    calls: list[Request] = []
    t, i = start, 0
    while t < end:
        i += 1
        fault = None
        if every and i % every == 0:
            fault = "lost" if (i // every) % 2 else "ghost"
        calls.append(Request(sent=t, tokens=rnd.randint(5, 60), fault=fault))
        t += rnd.expovariate(rate)
    return calls


def check(out: Outcome, *, within: float | None = None) -> None:
    """No healthy attempt aborted; every orphan found (within ``within`` seconds of becoming one)."""
    assert out.false_orphans == []
    assert out.missed == []
    if within is not None:
        assert max(out.delays, default=0.0) <= within


def after(out: Outcome, t: float) -> list[float]:
    return [g for at, g in out.graces if at >= t]


@pytest.mark.parametrize("rate", [0.5, 2.0])
def test_a_fast_server_lost_and_ghosted_answers_cost_about_a_second(rate: float) -> None:
    # Counted 0.2 s after sending. A clean first half minute, then every 8th call lost or ghosted. The
    # grace learned is min_grace; each orphan is aborted within 2 x 0.5 + one interval of going silent
    # (a fixed 10 s grace: 20 s).
    server = IntervalServer(appear=fixed_lag(0.2), token_time=0.05)
    calls = traffic(1, 1.0, 30.0, rate) + traffic(2, 30.0, 150.0, rate, every=8)
    out = run(server, calls, until=190)
    check(out, within=2 * 0.5 + 0.5)
    faulty = [r for r in calls if r.fault is not None]
    assert len(faulty) >= 3 and all(r.aborted is not None for r in faulty)
    assert max(after(out, 30.0)) == 0.5


def test_a_fast_step_server_with_bursts() -> None:
    calls = traffic(3, 1.0, 30.0, 1.0) + burst(40.0, 64) + traffic(4, 45.0, 120.0, 2.0, every=10)
    calls += burst(80.0, 32)
    out = run(fast_server(), calls, until=160)
    check(out, within=1.5)
    assert len(out.delays) >= 6


def test_the_cpu_server_learned_on_single_requests_survives_a_64_burst() -> None:
    # The hard case: one request alone is counted after 0.9 s, so the grace falls to about 1 s; then 64
    # requests arrive at once and are counted only after 14 s. Load 64 is beyond anything seen: the grace
    # goes back to 10 s for that run, and nothing is aborted. Then lost and ghosted ones are found fast.
    calls = [Request(sent=2.0 + 6 * i, tokens=20) for i in range(8)] + burst(60.0, 64, tokens=48)
    calls += [Request(sent=130.0, tokens=20, fault="lost"), Request(sent=150.2, tokens=20, fault="ghost")]
    calls += [Request(sent=140.0 + 3 * i, tokens=20) for i in range(5)]
    out = run(cpu_server(), calls, until=200)
    check(out, within=2 * 1.5 + 0.5)
    assert len(out.delays) == 2
    assert max(g for t, g in out.graces if 10 < t < 50) < 2.0  # learned from single requests
    assert min(g for t, g in out.graces if 60.5 <= t <= 70) == 10.0  # the burst: back to the cap
    counted = [r.counted for r in out.requests if r.sent == 60.0]
    assert max(c for c in counted if c is not None) - 60.0 > 13.0  # the lag really was that long


def test_the_cpu_server_at_a_steady_pace_with_faults() -> None:
    calls = traffic(5, 1.0, 30.0, 0.5) + traffic(6, 30.0, 150.0, 0.5, every=8)
    out = run(cpu_server(), calls, until=200)
    check(out, within=2 * 4.0 + 0.5)
    assert max(after(out, 40.0)) <= 4.0


def test_a_cpu_burst_slower_than_the_one_learned() -> None:
    # A 64 burst counted after 14 s teaches the grace for that load (capped at 10 s); the next one comes
    # with the CPU shared (steps 1.7 times slower, the 13.5 s of the recorded contended burst became
    # 24 s here): a lag still under 2 x 10 s... barely not; it is within 2 x the grace when the grace is
    # raised to 15 s (max_grace), and nothing is aborted.
    server = cpu_server()
    calls = [Request(sent=2.0 + 6 * i, tokens=20) for i in range(5)] + burst(40.0, 64, tokens=30)
    calls += burst(120.0, 64, tokens=30)
    server.slowdown.append((110.0, 1.6))
    out = run(server, calls, until=200, max_grace=15.0)
    check(out)
    second = [r.counted for r in out.requests if r.sent == 120.0]
    assert max(c for c in second if c is not None) - 120.0 > 20.0


def test_a_shared_server_whose_other_clients_were_seen() -> None:
    # Another client keeps about 10 requests on the server, then sends 32 at once: this client's
    # requests wait behind their prefill. Their requests were seen in the count (E), so this client's
    # grace covers a burst of that size, and nothing is aborted.
    others = [Request(sent=1.0 + 2 * i, tokens=40, owner=OTHER) for i in range(60)]
    others += burst(80.0, 32, tokens=40, owner=OTHER)
    calls = traffic(7, 1.0, 150.0, 0.5) + others
    out = run(cpu_server(), calls, until=200)
    check(out)


def test_limit_a_burst_of_a_client_never_seen_can_make_a_false_orphan() -> None:
    # What the tracker cannot see (module docstring): this client learned that its requests are counted
    # within about a second; another client, never seen before, sends 48 at once, and this client's
    # next request waits behind their 10-second prefill. Pinned so that a change here is noticed.
    calls = [Request(sent=2.0 + 3 * i, tokens=20) for i in range(50)] + burst(
        79.9, 48, tokens=40, owner=OTHER
    )
    out = run(cpu_server(), calls, until=200)
    assert out.false_orphans
    assert all(80.0 <= r.sent < 95.0 for r in out.false_orphans)  # this request, then its retries


def test_limit_answers_that_start_before_the_server_counts_them() -> None:
    # The tracker (like the orphan rule's `known`) takes a started answer for a counted request: vLLM
    # writes its gauges at the end of the step that makes the first token. A server that streams first
    # and counts 0.5 s later teaches it a lag too short, and with a queue healthy requests are aborted;
    # a fixed 10 s grace is not fooled (the simulator's "steps" mode is faithful, its "arrivals" and
    # "snapshot" modes are not). Pinned so that a change here is noticed.
    def calls() -> list[Request]:  # 3 a second, a little more than 4 slots serve: a queue forms
        rnd, sent = random.Random(0), [1.0]
        while sent[-1] < 100.0:
            sent.append(sent[-1] + rnd.expovariate(3.0))
        return [Request(sent=t, tokens=rnd.randint(20, 80)) for t in sent]

    def server() -> EarlyAnswers:
        params = {"overhead": 0.02, "prefill_overhead": 0.01, "per_prefill": 0.01, "per_decode": 0.001}
        return EarlyAnswers(0.5, capacity=4, arrival_delay=0.01, **params)

    assert run(server(), calls(), until=140, learn=False).false_orphans == []
    assert run(server(), calls(), until=140).false_orphans


@pytest.mark.parametrize("reset", [False, True])
@pytest.mark.parametrize("make", [cpu_server, fast_server])
def test_a_server_restart(make: Any, reset: bool) -> None:
    # Down from 60 s to 75 s: it forgets everything, this client's attempts fail and are re-sent when
    # it is back, all at once. With or without forgetting what was learned, nothing healthy is aborted.
    calls = traffic(9, 1.0, 150.0, 0.7, every=12)
    out = run(make(), calls, until=200, down=[(60.0, 75.0)], reset_on_restart=reset)
    check(out)


@pytest.mark.parametrize(("make", "within"), [(fast_server, 1.5), (cpu_server, 2 * 10.0 + 0.5)])
def test_the_incident_running_0_while_the_client_waits(make: Any, within: float) -> None:
    # The server forgets every request at 100 s (Running: 0) while the connections stay open. On the
    # fast server they are all aborted a second later; on the CPU server (never seen that many pending)
    # within 2 x max_grace.
    server = make()
    calls = [Request(sent=1.0 + 0.5 * i, tokens=400) for i in range(196)]
    out = run(server, calls, until=140, events=[(100.0, server.forget)])
    check(out, within=within)
    assert len(out.delays) >= 5


@pytest.mark.parametrize("mode", ["snapshot", "arrivals"])
def test_a_lag_of_2_seconds_is_learned(mode: str) -> None:
    # The simulator's two lag modes: the whole state 2 s late ("snapshot": finished requests stay counted
    # 2 s too), or arrivals only. The tracker learns about 2 s (with headroom), no false orphan.
    server = IntervalServer(appear=fixed_lag(2.0), leave=2.0 if mode == "snapshot" else 0.0, token_time=0.05)
    tracker = LagTracker()
    calls = traffic(10, 1.0, 100.0, 1.0, every=10)
    out = run(server, calls, until=150, tracker=tracker)
    check(out)
    assert tracker.appear_lag is not None and 2.0 <= tracker.appear_lag <= 4.0
    if mode == "snapshot":
        assert tracker.leave_lag is not None and 2.0 <= tracker.leave_lag <= 2.5
    else:
        assert tracker.leave_lag is not None and tracker.leave_lag < 0.5


def test_learning_finds_orphans_no_later_than_a_fixed_grace() -> None:
    calls = traffic(11, 1.0, 150.0, 0.5, every=6)
    fixed = run(cpu_server(), calls, until=200, learn=False)
    calls = traffic(11, 1.0, 150.0, 0.5, every=6)
    learning = run(cpu_server(), calls, until=200)
    check(fixed)
    check(learning)
    assert sum(learning.delays) < sum(fixed.delays) / 2


# --- the recorded vLLM 0.32 bursts -------------------------------------------------------------------

BURSTS = json.loads((Path(__file__).parent / "fixtures" / "metrics_burst_real_v032.json").read_text())[
    "bursts"
]


def replay(burst_: dict[str, Any], tracker: LagTracker, shift: float) -> list[int]:
    """Feed a recorded burst (its times shifted by ``shift``) to tracker and orphan rule, as the monitor
    will: ``running + waiting`` per scrape, each request open from sending to its end, started at its
    first token. Returns the requests aborted."""
    detector: OrphanDetector[int] = OrphanDetector(grace=10.0)
    times = [
        (s + shift, f + shift, d + shift)
        for s, f, d in zip(burst_["sent"], burst_["first_token"], burst_["done"], strict=True)
    ]
    aborted: list[int] = []
    reported: set[int] = set()
    for t0, running, waiting in burst_["scrapes"]:
        t = t0 + shift
        load = ServerLoad(running=running, waiting=waiting, kv_cache_usage=None, engines=1, scraped_at=t)
        opened = [i for i, (s, _, d) in enumerate(times) if s <= t < d and i not in aborted]
        ended = [Ended(s, d, f) for i, (s, f, d) in enumerate(times) if d <= t and i not in reported]
        reported.update(i for i, (_, _, d) in enumerate(times) if d <= t)
        attempts = [(times[i][0], times[i][1] if times[i][1] <= t else None) for i in opened]
        grace = tracker.observe(load, attempts, ended=ended)
        started = {i for i in opened if times[i][1] <= t}
        silent = [(i, times[i][1] if i in started else times[i][0]) for i in opened]
        known = sum(1 for i in opened if times[i][0] <= t - grace or i in started)
        aborted += detector.observe(load, silent, t, known=known, streaming=started, grace=grace)
    return aborted


def single_requests(tracker: LagTracker, until: float) -> None:
    """What the same server showed for single requests before (``docs/real-vllm.md``): one every 8 s,
    counted and started 0.16-0.56 s after sending, answered 3 s after sending; scrapes every 0.5 s."""
    lags = [0.166, 0.56, 0.157, 0.3, 0.45]
    calls = [(8.0 * i + 0.1, lags[i % len(lags)]) for i in range(int(until // 8))]
    done: set[float] = set()
    for step in range(1, int(until / 0.5)):
        t = 0.5 * step
        attempts: list[tuple[float, float | None]] = []
        ended: list[Ended] = []
        for sent, lag in calls:
            if sent <= t < sent + 3.0:
                attempts.append((sent, sent + lag if t >= sent + lag else None))
            elif t >= sent + 3.0 and sent not in done:
                done.add(sent)
                ended.append(Ended(sent, sent + 3.0, sent + lag))
        counted = sum(1 for _, started in attempts if started is not None)
        scrape(tracker, t, counted, attempts, ended=tuple(ended))


@pytest.mark.parametrize("name", sorted(BURSTS))
def test_recorded_bursts_abort_nothing_from_a_fresh_start(name: str) -> None:
    assert replay(BURSTS[name], LagTracker(), shift=0.0) == []


@pytest.mark.parametrize("name", sorted(BURSTS))
def test_recorded_bursts_abort_nothing_after_learning_single_requests(name: str) -> None:
    # The brief's hard case on the real traces: the tracker first learns that one request is counted
    # within about half a second (grace 0.5-1 s), then the burst comes (counted after 3.9-13.5 s).
    tracker = LagTracker()
    single_requests(tracker, until=80.0)
    assert tracker.grace < 1.5
    assert replay(BURSTS[name], tracker, shift=100.0) == []


# --- properties --------------------------------------------------------------------------------------


@st.composite
def scrape_sequences(draw: st.DrawFn) -> list[tuple[float, int, int, Attempts, list[Ended]]]:
    """Arbitrary, even inconsistent, scrapes: the tracker must stay within its bounds whatever it is fed."""
    steps = draw(st.integers(1, 20))
    t = 0.0
    out: list[tuple[float, int, int, Attempts, list[Ended]]] = []
    for _ in range(steps):
        t += draw(st.floats(min_value=0.01, max_value=5, allow_nan=False))
        sends = draw(st.lists(st.floats(min_value=max(0.0, t - 30), max_value=t + 1), max_size=8))
        attempts: list[tuple[float, float | None]] = [
            (s, draw(st.one_of(st.none(), st.floats(min_value=s, max_value=s + 10)))) for s in sends
        ]
        active = draw(st.integers(0, 15))
        running = draw(st.integers(0, active))
        ended = [
            Ended(s, s + d, s + d / 2 if started else None, abandoned=gave_up)
            for s, d, started, gave_up in draw(
                st.lists(
                    st.tuples(
                        st.floats(min_value=max(0.0, t - 30), max_value=t),
                        st.floats(min_value=0, max_value=5),
                        st.booleans(),
                        st.booleans(),
                    ),
                    max_size=4,
                )
            )
        ]
        out.append((t, active, running, attempts, ended))
    return out


@settings(max_examples=150, deadline=None)
@given(scrape_sequences(), st.integers(1, 3))
@example(  # found by CI: the default before any evidence, then evidence mid-run
    [
        (1.0, 0, 0, [(0.0, None)], []),
        (2.0, 0, 0, [(1.0, None)], [Ended(sent_at=0.0, ended_at=0.0, started_at=0.0, abandoned=False)]),
    ],
    1,
)
def test_the_grace_stays_within_its_bounds_and_never_shrinks_during_a_run(
    sequence: list[tuple[float, int, int, Attempts, list[Ended]]], engines: int
) -> None:
    tracker = LagTracker(min_grace=0.5, max_grace=10.0)
    taught = False
    previous: float | None = None
    for t, active, running, attempts, ended in sequence:
        grace = scrape(tracker, t, active, attempts, ended=tuple(ended), running=running, engines=engines)
        assert 0.5 <= grace <= 10.0 and grace == tracker.grace
        taught = taught or tracker.appear_lag is not None
        if not taught:
            assert grace == 10.0
        n = sum(1 for s, _ in attempts if s <= t)
        if previous is not None and active < n:  # some attempt may be uncounted: part of a run
            assert grace >= previous
        # A grace drawn from evidence binds the rest of the run; the longest grace given before any
        # evidence does not (a request lost at the start must not keep detection slow for the run).
        previous = grace if active < n and tracker.appear_lag is not None else None


Step = tuple[float, int, int, str | None]  # (gap before it, burst size or 1, tokens, fault)

steps = st.lists(
    st.tuples(
        st.sampled_from([0.3, 1.0, 2.0, 4.0]),
        st.sampled_from([1] * 9 + [2, 4, 8, 16, 32, 64]),
        st.integers(5, 120),
        st.sampled_from([None] * 8 + ["lost", "ghost"]),
    ),
    min_size=1,
    max_size=90,
)


def calls_of(plan: list[Step], *, spacing: float) -> list[Request]:
    calls: list[Request] = []
    t = 1.0
    for gap, size, tokens, fault in plan:
        if size > 1:
            calls += burst(t, size, tokens=tokens)
        else:
            calls.append(Request(sent=t, tokens=tokens, fault=fault))
        t += gap * spacing
        if t > 90.0:
            break
    return calls


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(["fast", "cpu"]), scale=st.floats(min_value=0.5, max_value=1.5), plan=steps)
def test_learning_aborts_nothing_healthy_that_a_fixed_grace_spares_and_finds_every_orphan(
    kind: str, scale: float, plan: list[Step]
) -> None:
    # Random bursts, single calls, lost and ghosted ones on a fast or a CPU-like server (its steps
    # `scale` times as long), this client holding at most 64 in flight; then 40 s and more without new
    # calls, by which time every orphan is found (nothing else hides it any more). Where even the fixed
    # 10 s grace aborts healthy requests (back-to-back bursts counted after 20 s and more), no grace
    # can help: such cases only have to find their orphans.
    make = fast_server if kind == "fast" else cpu_server
    base = make()

    def server() -> StepServer:
        return make(
            overhead=base.overhead * scale,
            prefill_overhead=base.prefill_overhead * scale,
            per_prefill=base.per_prefill * scale,
            per_decode=base.per_decode * scale,
        )

    spacing = 1 if kind == "fast" else 2
    fixed = run(server(), calls_of(plan, spacing=spacing), until=170.0, tick=0.1, learn=False)
    learning = run(server(), calls_of(plan, spacing=spacing), until=170.0, tick=0.1)
    assert learning.missed == []
    if not fixed.false_orphans:
        assert learning.false_orphans == []


# --- against the built-in simulator, over HTTP -------------------------------------------------------


@dataclass(eq=False)
class Call:
    """One streamed chat call, as the monitor sees its attempt."""

    sent: float
    fault: str | None = None
    started: float | None = None
    last_byte: float | None = None
    ended: float | None = None
    abandoned: bool = False
    scope: anyio.CancelScope = field(default_factory=anyio.CancelScope)


async def stream_call(client: httpx.AsyncClient, call: Call, tokens: int) -> None:
    simulator: dict[str, Any] = {"output_tokens": tokens}
    if call.fault is not None:
        simulator["fault"] = call.fault
    body = {
        "model": "openai/gpt-oss-20b",
        "messages": [{"role": "user", "content": "Solve the puzzle."}],
        "stream": True,
        "simulator": simulator,
    }
    with call.scope:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    call.last_byte = anyio.current_time()
                    call.started = call.started if call.started is not None else call.last_byte
        call.ended = anyio.current_time()


async def watch(
    client: httpx.AsyncClient,
    calls: list[Call],
    tracker: LagTracker,
    detector: OrphanDetector[Call],
    graces: list[tuple[float, float]],
) -> None:
    """What the server monitor is to do at each poll (every 0.1 s): scrape, feed the tracker, run the
    orphan rule with its grace, abort the attempts it picks; ``graces`` gets (scrape, grace) pairs."""
    reported: set[int] = set()
    while True:
        load = parse_metrics((await client.get("/metrics")).text, scraped_at=anyio.current_time())
        assert load is not None
        t = load.scraped_at
        ended = [
            Ended(c.sent, c.ended, c.started, c.abandoned)
            for c in calls
            if c.ended is not None and id(c) not in reported
        ]
        reported.update(id(c) for c in calls if c.ended is not None)
        opened = [c for c in calls if c.ended is None and c.sent <= t]
        started = [c for c in opened if c.started is not None and c.started <= t]
        attempts = [(c.sent, c.started if c in started else None) for c in opened]
        grace = tracker.observe(load, attempts, ended=ended)
        graces.append((t, grace))
        known = sum(1 for c in opened if c.sent <= t - grace or c in started)
        silent = [(c, c.last_byte if c.last_byte is not None else c.sent) for c in opened]
        for victim in detector.observe(load, silent, t, known=known, streaming=started, grace=grace):
            victim.abandoned, victim.ended = True, t
            victim.scope.cancel()
        await anyio.sleep(0.1)


@pytest.mark.integration
@pytest.mark.anyio
@pytest.mark.timeout(40)
async def test_against_the_simulator_a_burst_that_lags_with_its_size_then_orphans() -> None:
    # Steps of 0.2 s per new request (metrics_lag 2.0 at time_scale 0.1): one call is counted after
    # 0.2 s, a burst of 12 after about 2.4 s. Grace between 0.2 s and 2 s (as 0.5 and 10 s, scaled).
    # The tracker learns 0.2-0.5 s from single calls, goes back to 2 s for the burst (no abort), then
    # finds a lost and a ghosted call within a second (0.6-0.8 s here), where a fixed 2 s grace
    # would take 4.
    config = SimulatorConfig(
        time_scale=0.1, tick=0.002, capacity=64, token_time=0.02, metrics_lag=2.0, metrics_lag_mode="steps"
    )
    tracker = LagTracker(min_grace=0.2, max_grace=2.0)
    detector: OrphanDetector[Call] = OrphanDetector(grace=2.0)
    calls: list[Call] = []
    async with VLLMSimulator(config) as sim:
        async with httpx.AsyncClient(
            base_url=sim.url, timeout=30.0, limits=httpx.Limits(max_connections=64)
        ) as client:
            async with anyio.create_task_group() as tg:
                graces: list[tuple[float, float]] = []
                tg.start_soon(watch, client, calls, tracker, detector, graces)

                async def send(count: int, tokens: int, fault: str | None = None) -> None:
                    for _ in range(count):
                        call = Call(sent=anyio.current_time(), fault=fault)
                        calls.append(call)
                        tg.start_soon(stream_call, client, call, tokens)

                for _ in range(4):  # single calls, one at a time
                    await send(1, 100)
                    await anyio.sleep(0.4)
                learned = tracker.grace
                await send(12, 100)  # the burst
                await anyio.sleep(3.2)
                await send(1, 100, fault="lost")
                await anyio.sleep(1.2)
                await send(1, 400, fault="ghost")
                await anyio.sleep(1.8)
                tg.cancel_scope.cancel()
    aborted = [c for c in calls if c.abandoned]
    assert learned <= 0.5
    assert [c.fault for c in aborted] == ["lost", "ghost"]
    lost, ghost = aborted
    assert lost.ended is not None and lost.ended - lost.sent <= 1.0
    # The ghost fell silent halfway; the server finished it 0.4 s later, and it was found soon after.
    assert ghost.ended is not None and ghost.last_byte is not None and ghost.ended - ghost.last_byte <= 1.5
    assert max(g for _, g in graces) == 2.0  # the burst: back to the cap
    assert all(c.ended is not None for c in calls if c.fault is None)  # every healthy call answered
