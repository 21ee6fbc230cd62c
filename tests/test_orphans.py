from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from resilient_llm._exceptions import ConfigError
from resilient_llm._load import ServerLoad
from resilient_llm._vllm._orphans import OrphanDetector
from resilient_llm._watch import Watch, Watches
from resilient_llm.testing import FakeClock
from tests.test_overtaken import monitor

GRACE = 5.0


def load(active: int, at: float, *, waiting: int = 0) -> ServerLoad:
    return ServerLoad(
        running=active - waiting, waiting=waiting, kv_cache_usage=None, engines=1, scraped_at=at
    )


Scrape = tuple[float, int]  # (scraped_at == now, server_active)


@pytest.mark.parametrize(
    ("silent", "scrapes", "expected"),
    [
        # The incident: the server has forgotten everything; two scrapes grace apart, both silent >= 2 grace.
        ({"a": 0.0, "b": 1.0}, [(6.0, 0), (11.0, 0)], [[], ["a", "b"]]),
        # Oldest first, at most the deficit (server still knows one of ours, or another client's).
        ({"a": 2.0, "b": 0.0, "c": 1.0}, [(6.0, 1), (11.0, 1)], [[], ["b", "c"]]),
        # Server knows as many as we wait on: nothing, however long.
        ({"a": 0.0, "b": 0.0}, [(10.0, 2), (20.0, 2), (30.0, 5)], [[], [], []]),
        # A single scrape with a deficit is not enough.
        ({"a": 0.0}, [(100.0, 0)], [[]]),
        # The deficit must span grace: 4 s apart is too short, the third scrape completes it.
        ({"a": 0.0}, [(6.0, 0), (10.0, 0), (11.0, 0)], [[], [], ["a"]]),
        # A scrape without a deficit ends the run; the next run starts over.
        ({"a": 0.0}, [(6.0, 0), (9.0, 1), (12.0, 0), (16.0, 0), (17.0, 0)], [[], [], [], [], ["a"]]),
        # Metrics lag: 4 requests sent at 0, the server shows 1 for 8 s, then catches up. Nothing aborted.
        (
            dict.fromkeys(range(4), 0.0),
            [(0.5, 1), (5.0, 1), (8.0, 1), (8.5, 4), (13.0, 4), (20.0, 4)],
            [[]] * 6,
        ),
        # Attempts silent for less than grace at the scrape do not count towards the deficit.
        # and each waits out its own grace inside the run: "young" is eligible from 8, picked from 13.
        (
            {"young": 3.0, "old": 0.0},
            [(6.0, 0), (11.0, 0), (12.0, 0), (13.0, 0)],
            [[], ["old"], [], ["young"]],
        ),
        ({"young": 4.0}, [(6.0, 0), (8.0, 0)], [[], []]),
        # "late" became eligible at 10, four seconds into the run: it waits until 15.
        (
            {"early": 0.0, "late": 5.0},
            [(6.0, 0), (11.0, 0), (14.0, 0), (15.0, 0)],
            [[], ["early"], [], ["late"]],
        ),
        # The scrape's own time decides, not when it is observed: an old scrape cannot be lengthened.
        ({"a": 0.0}, [(6.0, 0), (6.0, 0), (6.0, 0)], [[], [], []]),
        # An older scrape arriving late is ignored.
        ({"a": 0.0}, [(6.0, 0), (3.0, 0), (11.0, 0)], [[], [], ["a"]]),
        # Waiting requests count as known just like running ones (load() puts half as waiting below).
        ({"a": 0.0, "b": 0.0}, [(6.0, 2), (11.0, 2)], [[], []]),
    ],
)
def test_rule(silent: dict[object, float], scrapes: list[Scrape], expected: list[list[object]]) -> None:
    detector: OrphanDetector[object] = OrphanDetector(grace=GRACE)
    got = [
        detector.observe(load(active, at, waiting=active // 2), list(silent.items()), at)
        for at, active in scrapes
    ]
    assert got == expected


def test_uses_the_scrape_time_when_now_is_later() -> None:
    # A scrape taken at 6 says nothing about an attempt that went silent at 2: it was 4 s old then.
    detector: OrphanDetector[str] = OrphanDetector(grace=GRACE)
    assert detector.observe(load(0, 6.0), [("a", 2.0)], now=30.0) == []
    assert detector.observe(load(0, 8.0), [("a", 2.0)], now=30.0) == []
    assert detector.observe(load(0, 12.0), [("a", 2.0)], now=30.0) == []
    assert detector.observe(load(0, 13.0), [("a", 2.0)], now=30.0) == ["a"]


def test_selected_keys_are_not_selected_again_nor_owed() -> None:
    detector: OrphanDetector[str] = OrphanDetector(grace=GRACE)
    silent = [("a", 0.0), ("b", 0.0), ("c", 0.0)]
    assert detector.observe(load(1, 6.0), silent, 6.0) == []
    assert detector.observe(load(1, 11.0), silent, 11.0) == ["a", "b"]
    # The caller has not wound them down yet: they are still reported, the deficit still 2.
    for t in (12.0, 16.0, 17.0, 30.0):
        assert detector.observe(load(1, t), silent, t) == []
    # Once they are gone, "c" is known to the server: nothing is owed.
    assert detector.observe(load(1, 40.0), [("c", 0.0)], 40.0) == []


def test_later_orphans_wait_out_their_own_grace() -> None:
    detector: OrphanDetector[str] = OrphanDetector(grace=GRACE)
    assert detector.observe(load(0, 6.0), [("a", 0.0)], 6.0) == []
    assert detector.observe(load(0, 11.0), [("a", 0.0), ("b", 9.0)], 11.0) == ["a"]
    # "a" retried as "a2" (silent since 11.5); "b" eligible from 14.
    assert detector.observe(load(0, 14.0), [("a2", 11.5), ("b", 9.0)], 14.0) == []
    assert detector.observe(load(0, 18.0), [("a2", 11.5), ("b", 9.0)], 18.0) == []
    assert detector.observe(load(0, 19.0), [("a2", 11.5), ("b", 9.0)], 19.0) == ["b"]


def test_reset_forgets_the_run() -> None:
    detector: OrphanDetector[str] = OrphanDetector(grace=GRACE)
    assert detector.observe(load(0, 6.0), [("a", 0.0)], 6.0) == []
    detector.reset()
    assert detector.observe(load(0, 11.0), [("a", 0.0)], 11.0) == []
    assert detector.observe(load(0, 16.0), [("a", 0.0)], 16.0) == ["a"]


def test_reset_allows_earlier_scrape_times() -> None:
    detector: OrphanDetector[str] = OrphanDetector(grace=0.0)
    assert detector.observe(load(0, 100.0), [("a", 0.0)], 100.0) == ["a"]
    detector.reset()
    assert detector.observe(load(0, 1.0), [("b", 0.0)], 1.0) == ["b"]


def test_zero_grace_trusts_each_scrape() -> None:
    detector: OrphanDetector[str] = OrphanDetector(grace=0)
    assert detector.observe(load(1, 1.0), [("a", 0.5), ("b", 0.9)], 1.0) == ["a"]


def test_unorderable_keys() -> None:
    detector: OrphanDetector[object] = OrphanDetector(grace=0)
    a, b = object(), object()
    assert detector.observe(load(0, 1.0), [(a, 0.0), (b, 0.0)], 1.0) == [a, b]


@pytest.mark.parametrize(
    ("silent", "known", "active", "expected"),
    [
        # 3 of ours in flight for long, the server knows 2 requests in all: one of ours is lost. Without
        # ``known`` only the one silent attempt counts and 1 <= 2 hides it.
        ({"a": 0.0}, None, 2, []),
        ({"a": 0.0}, 3, 2, ["a"]),
        # Never more than the silent candidates, whatever the deficit.
        ({"a": 0.0, "b": 1.0}, 10, 0, ["a", "b"]),
        # known below the eligible count changes nothing.
        ({"a": 0.0, "b": 0.0}, 1, 1, ["a"]),
        ({"a": 0.0, "b": 0.0}, 0, 2, []),
        # The server knows as many as we have in flight: nothing.
        ({"a": 0.0}, 3, 3, []),
        # Young silent attempts stay out even when the deficit is large.
        ({"young": 8.0}, 5, 0, []),
    ],
)
def test_known(silent: dict[str, float], known: int | None, active: int, expected: list[str]) -> None:
    detector: OrphanDetector[str] = OrphanDetector(grace=GRACE)
    items = list(silent.items())
    assert detector.observe(load(active, 6.0), items, 6.0, known=known) == []
    assert detector.observe(load(active, 11.0), items, 11.0, known=known) == expected


@pytest.mark.parametrize("grace", [-1.0, math.nan, math.inf, "5", None, True])
def test_bad_grace(grace: object) -> None:
    with pytest.raises(ConfigError, match="grace") as info:
        OrphanDetector(grace=grace)  # type: ignore[arg-type]
    assert repr(grace) in str(info.value)


def test_repr() -> None:
    assert repr(OrphanDetector(grace=2.5)) == "OrphanDetector(grace=2.5)"


# --- properties -------------------------------------------------------------------------------------

times = st.floats(min_value=0, max_value=100, allow_nan=False)


@st.composite
def histories(draw: st.DrawFn) -> tuple[float, list[tuple[float, int, list[tuple[int, float]]]]]:
    """A grace and a sequence of (time, server_active, silent attempts) with increasing times."""
    grace = draw(st.floats(min_value=0, max_value=20, allow_nan=False))
    steps = draw(st.integers(1, 12))
    t = 0.0
    history = []
    for _ in range(steps):
        t += draw(st.floats(min_value=0, max_value=15, allow_nan=False))
        sinces = draw(st.lists(st.floats(min_value=0, max_value=t, allow_nan=False), max_size=10))
        keys = draw(st.lists(st.integers(0, 30), min_size=len(sinces), max_size=len(sinces), unique=True))
        active = draw(st.integers(0, 12))
        history.append((t, active, list(zip(keys, sinces, strict=True))))
    return grace, history


@settings(max_examples=200, deadline=None)
@given(histories())
def test_properties(case: tuple[float, list[tuple[float, int, list[tuple[int, float]]]]]) -> None:
    grace, history = case
    detector: OrphanDetector[int] = OrphanDetector(grace=grace)
    for t, active, silent in history:
        chosen = detector.observe(load(active, t), silent, t)
        since = dict(silent)
        # Only keys we passed, no duplicates.
        assert len(set(chosen)) == len(chosen)
        assert set(chosen) <= set(since)
        # Never more than the deficit among the attempts silent for at least grace.
        eligible = [k for k, s in silent if t - s >= grace]
        assert len(chosen) <= max(0, len(eligible) - active)
        # Never an attempt silent for less than grace.
        assert all(t - since[k] >= grace for k in chosen)
        # Nothing when the server knows at least as many requests as we wait on.
        if active >= len(silent):
            assert chosen == []
        # Oldest first.
        assert [since[k] for k in chosen] == sorted(since[k] for k in chosen)


@settings(max_examples=200, deadline=None)
@given(histories(), st.lists(st.integers(0, 15), min_size=12, max_size=12))
def test_properties_with_known(
    case: tuple[float, list[tuple[float, int, list[tuple[int, float]]]]], knowns: list[int]
) -> None:
    grace, history = case
    detector: OrphanDetector[int] = OrphanDetector(grace=grace)
    for (t, active, silent), known in zip(history, knowns, strict=False):
        chosen = detector.observe(load(active, t), silent, t, known=known)
        since = dict(silent)
        eligible = [k for k, s in silent if t - s >= grace]
        assert len(set(chosen)) == len(chosen)
        assert len(chosen) <= max(0, max(len(eligible), known) - active)
        assert len(chosen) <= len(eligible)
        assert all(t - since[k] >= grace for k in chosen)
        if active >= max(len(silent), known):
            assert chosen == []


@settings(max_examples=200, deadline=None)
@given(
    grace=st.floats(min_value=0, max_value=10, allow_nan=False),
    sinces=st.lists(st.floats(min_value=0, max_value=50, allow_nan=False), min_size=1, max_size=20),
)
def test_a_forgotten_batch_is_found(grace: float, sinces: list[float]) -> None:
    # The server knows none of them: scraped every second, each is aborted within 2 grace + 1 s of going
    # silent (the loop allows one more second for float rounding).
    detector: OrphanDetector[int] = OrphanDetector(grace=grace)
    silent = list(enumerate(sinces))
    found: list[int] = []
    t = max(sinces)
    while t <= max(sinces) + 2 * grace + 1 and len(found) < len(silent):
        t += 1.0
        found += detector.observe(load(0, t), [(k, s) for k, s in silent if k not in found], t)
    assert sorted(found) == [k for k, _ in silent]


# --- replaying a real server ------------------------------------------------------------------------

BURSTS = json.loads((Path(__file__).parent / "fixtures" / "metrics_burst_real_v032.json").read_text())[
    "bursts"
]


def replay(burst: dict[str, Any], grace: float) -> list[int]:
    """Feed a recorded burst to the detector as the monitor does: each request silent from sending to its
    first token, and ``known`` = requests in flight since at least ``grace`` before the scrape."""
    detector: OrphanDetector[int] = OrphanDetector(grace=grace)
    aborted: list[int] = []
    for t, running, waiting in burst["scrapes"]:
        times = list(zip(burst["sent"], burst["first_token"], burst["done"], strict=True))
        silent = [
            (i, sent) for i, (sent, first, _) in enumerate(times) if sent <= t < first and i not in aborted
        ]
        known = sum(
            1
            for i, (sent, _, done) in enumerate(times)
            if sent <= t - grace and t < done and i not in aborted
        )
        server = ServerLoad(running=running, waiting=waiting, kv_cache_usage=None, engines=1, scraped_at=t)
        aborted += detector.observe(server, silent, t, known=known)
    return aborted


@pytest.mark.parametrize("name", ["burst32_warm", "burst64_cold", "burst64_warm"])
def test_real_metrics_lag_aborts_nothing_at_grace_5(name: str) -> None:
    # vLLM 0.32 on CPU showed 64 requests sent at once as "running 1" or "running 14" for 6-8 s: nothing
    # was lost, so nothing may be aborted.
    assert replay(BURSTS[name], grace=5.0) == []


@pytest.mark.parametrize("name", sorted(BURSTS))
def test_real_metrics_lag_aborts_nothing_at_grace_7(name: str) -> None:
    # With the CPU shared, the lag reached 13.5 s: grace 7 covers every recorded burst.
    assert replay(BURSTS[name], grace=7.0) == []


@pytest.mark.parametrize(("name", "grace"), [("burst64_warm", 3.0), ("burst64_contended", 5.0)])
def test_the_recorded_lag_fools_a_short_grace(name: str, grace: float) -> None:
    # The traces do test something: below half the lag, healthy requests would be aborted.
    assert len(replay(BURSTS[name], grace=grace)) > 30


def test_streaming_bound_finds_a_stopped_answer_behind_a_churning_queue() -> None:
    # The server runs 3 and queues 5 (recent requests of ours, not yet "known"); our 4 streaming answers
    # include one that stopped mid-way and was forgotten. Counting all requests cannot see it; counting
    # running against streaming can.
    det: OrphanDetector[str] = OrphanDetector(grace=1.0)
    silent = [("stopped", 0.0), ("q1", 2.5), ("q2", 2.6)]
    streaming = {"stopped", "s1", "s2", "s3"}
    chosen: list[str] = []
    for t in (2.0, 2.5, 3.0, 3.5, 4.0):
        load = ServerLoad(running=3, waiting=5, kv_cache_usage=None, engines=1, scraped_at=t)
        chosen += det.observe(load, silent, t, known=4, streaming=streaming)
    assert chosen == ["stopped"]


def test_streaming_bound_never_picks_an_answer_that_has_not_started() -> None:
    det: OrphanDetector[str] = OrphanDetector(grace=1.0)
    silent = [("queued", 0.0)]  # silent for long, but never started: the running bound says nothing of it
    for t in (2.0, 3.0, 4.0, 5.0):
        load = ServerLoad(running=1, waiting=1, kv_cache_usage=None, engines=1, scraped_at=t)
        assert det.observe(load, silent, t, known=1, streaming={"a", "b"}) == []


# --- a grace per scrape (rule 6) ---------------------------------------------------------------------


def test_the_scrapes_grace_replaces_the_default() -> None:
    # Default 5 s; the scrapes say 0.5 s: "a" (silent since 0) is eligible at 0.5 and the deficit has
    # lasted 0.5 s by 1.0.
    detector: OrphanDetector[str] = OrphanDetector(grace=GRACE)
    assert detector.observe(load(0, 0.5), [("a", 0.0)], 0.5, grace=0.5) == []
    assert detector.observe(load(0, 1.0), [("a", 0.0)], 1.0, grace=0.5) == ["a"]


def test_without_a_grace_the_default_applies() -> None:
    detector: OrphanDetector[str] = OrphanDetector(grace=1.0)
    assert detector.observe(load(0, 1.0), [("a", 0.0)], 1.0) == []
    assert detector.observe(load(0, 1.5), [("a", 0.0)], 1.5, grace=None) == []
    assert detector.observe(load(0, 2.0), [("a", 0.0)], 2.0) == ["a"]


def test_a_grace_that_grows_during_a_run_delays_the_abort() -> None:
    # With 1 s from the start, "a" (silent since 0) would go at 2.0. Raised to 3 s at 1.5, "a" is not
    # eligible until 3.0 (the run ends and starts again there) and goes at 6.0.
    detector: OrphanDetector[str] = OrphanDetector(grace=10.0)
    times = [1.0 + 0.5 * i for i in range(11)]
    chosen = {t: detector.observe(load(0, t), [("a", 0.0)], t, grace=1.0 if t < 1.5 else 3.0) for t in times}
    assert {t: keys for t, keys in chosen.items() if keys} == {6.0: ["a"]}


@pytest.mark.parametrize("grace", [-0.1, math.nan, math.inf, "1", True])
def test_a_bad_scrape_grace_is_refused(grace: object) -> None:
    detector: OrphanDetector[str] = OrphanDetector(grace=1.0)
    with pytest.raises(ConfigError, match="grace"):
        detector.observe(load(0, 1.0), [("a", 0.0)], 1.0, grace=grace)  # type: ignore[arg-type]


def test_rule_5_keeps_the_detectors_own_grace() -> None:
    # A started answer falls silent while running drops by one: vLLM preempted it back to the waiting
    # queue (still counted there). A learned grace of 0.5 s must not abort it after 1 s; the detector's
    # own 5 s (twice: 10 s of silence) still applies to this rule.
    detector: OrphanDetector[str] = OrphanDetector(grace=GRACE)
    silent = [("preempted", 1.0), ("s1", 100.0), ("s2", 100.0)]
    streaming = {"preempted", "s1", "s2"}
    chosen = []
    for t in [1.5 + 0.5 * i for i in range(18)]:  # up to 10 s
        server = ServerLoad(running=2, waiting=1, kv_cache_usage=None, engines=1, scraped_at=t)
        chosen += detector.observe(server, silent, t, known=3, streaming=streaming, grace=0.5)
    assert chosen == []
    server = ServerLoad(running=2, waiting=1, kv_cache_usage=None, engines=1, scraped_at=11.5)
    assert detector.observe(server, silent, 11.5, known=3, streaming=streaming, grace=0.5) == ["preempted"]


@settings(max_examples=200, deadline=None)
@given(
    first=st.floats(min_value=0, max_value=10, allow_nan=False),
    raises=st.lists(st.floats(min_value=0, max_value=3, allow_nan=False), min_size=40, max_size=40),
    spread=st.floats(min_value=0, max_value=2, allow_nan=False),
    size=st.integers(1, 20),
    slack=st.floats(min_value=0.01, max_value=1, allow_nan=False),
    interval=st.floats(min_value=0.1, max_value=1, allow_nan=False),
)
def test_a_batch_within_twice_the_smallest_grace_is_never_aborted(
    first: float, raises: list[float], spread: float, size: int, slack: float, interval: float
) -> None:
    # Rule 6's guarantee: a batch sent within `spread` seconds and counted `lag` after its last send,
    # lag < 2 x (the smallest grace of the run) - spread, is never aborted, however the grace grows.
    graces = [first]
    for step in raises[1:]:
        graces.append(graces[-1] + step * (step > 2))  # mostly flat, sometimes higher
    lag = 2 * first - spread - slack
    assume(lag >= 0)
    sends = [spread * i / size for i in range(size)]
    detector: OrphanDetector[int] = OrphanDetector(grace=first)
    for i, grace in enumerate(graces):
        t = interval * (i + 1)
        counted = sum(1 for s in sends if t >= sends[-1] + lag and s <= t)
        silent = [(k, s) for k, s in enumerate(sends) if s <= t]
        known = sum(1 for _, s in silent if s <= t - grace)
        assert detector.observe(load(counted, t), silent, t, known=known, grace=grace) == []


# --- a scrape is dated by when it was sent --------------------------------------------------------------
def test_a_scrape_is_judged_at_the_time_it_was_sent() -> None:
    # Sent at 6 and arrived at 9 (a slow /metrics): at 6 "a" had been silent 4 s, under the grace.
    detector: OrphanDetector[str] = OrphanDetector(grace=GRACE)
    sent_late = ServerLoad(
        running=0, waiting=0, kv_cache_usage=None, engines=1, scraped_at=9.0, requested_at=6.0
    )
    assert sent_late.earliest_at == 6.0 and load(0, 9.0).earliest_at == 9.0
    assert detector.observe(sent_late, [("a", 2.0)], now=9.0) == []
    # The run is measured from when the scrapes were sent: 7 -> 12 is a grace, not 10 -> 15.
    at_7 = ServerLoad(running=0, waiting=0, kv_cache_usage=None, engines=1, scraped_at=10.0, requested_at=7.0)
    at_12 = ServerLoad(
        running=0, waiting=0, kv_cache_usage=None, engines=1, scraped_at=15.0, requested_at=12.0
    )
    assert detector.observe(at_7, [("a", 2.0)], now=10.0) == []
    assert detector.observe(at_12, [("a", 2.0)], now=15.0) == ["a"]


def test_requests_sent_while_a_scrape_was_on_its_way_are_not_owed() -> None:
    """A server whose /metrics takes 1.2 s to answer, a new request sent 0.1 s after each scrape was
    sent, two requests waiting in its queue (counted, silent): the server counts every request sent
    before each scrape. Dated by its arrival, each scrape would owe the newest request (sent 1.1 s
    before the arrival, past the 1 s grace) and the oldest queued request would be aborted."""

    clock, watches = FakeClock(), Watches()
    mon = monitor(clock, watches, orphan_grace=1.0, orphan_grace_min=1.0)  # polls every 0.5 s
    sent: list[Watch] = []

    def send() -> None:
        w = Watch(now=clock(), silence=600.0, deadline_at=1e9)
        watches.add(w)
        sent.append(w)

    send(), send()
    clock.now = 2.0
    for _ in range(8):
        requested_at = clock()
        counted = len(sent)  # the server has every request sent before the scrape
        clock.advance(0.1)
        send()
        clock.advance(1.1)
        mon._check_watches(
            ServerLoad(
                running=0,
                waiting=counted,
                kv_cache_usage=None,
                engines=1,
                scraped_at=clock(),
                requested_at=requested_at,
            )
        )
        clock.advance(0.3)
    assert not any(w.orphaned for w in sent)
