from __future__ import annotations

import dataclasses
import itertools
import logging
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_llm._exceptions import ConfigError
from resilient_llm._load import ServerLoad
from resilient_llm._policies._breaker import Breaker, BreakerConfig
from resilient_llm.testing import FakeClock

LOGGER = "resilient_llm.breaker"


def load(
    clock: FakeClock, *, waiting: int = 0, running: int = 0, kv: float | None = None, age: float = 0.0
) -> ServerLoad:
    return ServerLoad(
        running=running, waiting=waiting, kv_cache_usage=kv, engines=1, scraped_at=clock.now - age
    )


Transition = tuple[str, str, str]


def make(clock: FakeClock, **config: Any) -> tuple[Breaker, list[Transition]]:
    breaker = Breaker(BreakerConfig(**config), clock=clock)
    seen: list[Transition] = []
    breaker.add_listener(lambda old, new, reason: seen.append((old, new, reason)))
    return breaker, seen


def state_of(breaker: Breaker) -> str:
    """The state, typed as ``str`` so that checks across events are not narrowed away by mypy."""
    return breaker.state


def fail(breaker: Breaker, times: int, kind: Any = "connect") -> None:
    for _ in range(times):
        breaker.on_failure(kind)


# --- configuration --------------------------------------------------------------------------------


def test_config_defaults() -> None:
    cfg = BreakerConfig()
    assert cfg.high_watermark is None
    assert cfg.low_watermark is None
    assert (cfg.min_high_watermark, cfg.high_fraction) == (8, 0.25)
    assert (cfg.kv_high, cfg.kv_low) == (0.98, 0.90)
    assert (cfg.failure_threshold, cfg.open_cooldown, cfg.max_cooldown, cfg.half_open_probes) == (
        5,
        1.0,
        30.0,
        2,
    )
    assert (cfg.stale_after, cfg.poll_interval, cfg.metrics_url, cfg.orphan_grace) == (5.0, 0.5, None, 10.0)
    assert (cfg.orphan_grace_min, cfg.orphan_lag_window) == (0.5, 300.0)


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({}, (0.5, 10.0)),  # learned between one poll interval and today's fixed 10 s
        ({"orphan_grace": 20.0}, (0.5, 20.0)),  # a user's number is the longest grace
        ({"orphan_grace": 0.3}, (0.3, 0.3)),  # at or below the shortest: fixed, no learning
        ({"orphan_grace": 4.0, "orphan_grace_min": 4.0}, (4.0, 4.0)),
        ({"orphan_grace_min": 0.0}, (0.0, 10.0)),
        ({"orphan_grace": None}, None),  # no orphan detection
    ],
)
def test_orphan_grace_range(kwargs: dict[str, Any], expected: tuple[float, float] | None) -> None:
    assert BreakerConfig(**kwargs).orphan_grace_range() == expected


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"high_watermark": 0}, "high_watermark must be an integer >= 1, got 0"),
        ({"high_watermark": 4.0}, "high_watermark"),
        ({"high_watermark": True}, "high_watermark"),
        ({"low_watermark": -1}, "low_watermark must be an integer >= 0, got -1"),
        ({"high_watermark": 10, "low_watermark": 11}, "low_watermark must be <= high_watermark=10, got 11"),
        ({"min_high_watermark": 0}, "min_high_watermark"),
        ({"high_fraction": 0.0}, "high_fraction must be a finite number > 0, got 0.0"),
        ({"high_fraction": math.inf}, "high_fraction"),
        ({"kv_high": 0.0}, "kv_high"),
        ({"kv_high": 1.01}, "kv_high must be a finite number > 0 and <= 1, got 1.01"),
        ({"kv_low": 0.0}, "kv_low"),
        ({"kv_high": 0.8, "kv_low": 0.9}, "kv_low must be a finite number > 0 and <= 0.8, got 0.9"),
        ({"failure_threshold": 0}, "failure_threshold must be an integer >= 1, got 0"),
        ({"open_cooldown": 0}, "open_cooldown"),
        ({"open_cooldown": math.nan}, "open_cooldown"),
        ({"open_cooldown": 10.0, "max_cooldown": 5.0}, "max_cooldown must be a finite number >= 10, got 5.0"),
        ({"half_open_probes": 0}, "half_open_probes"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": 2.0, "stale_after": 2.0}, "stale_after must be a finite number > 2, got 2.0"),
        ({"orphan_grace": -1.0}, "orphan_grace"),
        ({"orphan_grace_min": -0.1}, "orphan_grace_min must be a finite number >= 0, got -0.1"),
        ({"orphan_grace_min": math.nan}, "orphan_grace_min"),
        ({"orphan_lag_window": 0}, "orphan_lag_window must be a finite number > 0, got 0"),
        ({"orphan_lag_window": True}, "orphan_lag_window"),
        (
            {"metrics_url": "ftp://host/metrics"},
            "metrics_url must be an http(s) URL or None, got 'ftp://host/metrics'",
        ),
        ({"metrics_url": "localhost:8000/metrics"}, "metrics_url"),
        ({"metrics_url": "http://[::1/metrics"}, "metrics_url"),
        ({"metrics_url": 8000}, "metrics_url"),
    ],
)
def test_bad_config_is_rejected(kwargs: dict[str, Any], needle: str) -> None:
    with pytest.raises(ConfigError, match="BreakerConfig") as info:
        BreakerConfig(**kwargs)
    assert needle in str(info.value)


def test_equal_watermarks_are_allowed() -> None:
    BreakerConfig(high_watermark=10, low_watermark=10, kv_high=0.9, kv_low=0.9)


def test_config_is_frozen_and_keyword_only() -> None:
    cfg = BreakerConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.kv_high = 0.5  # type: ignore[misc]
    with pytest.raises(TypeError):
        BreakerConfig(32)  # type: ignore[call-arg]
    assert dataclasses.replace(cfg, high_watermark=32).high_watermark == 32


def test_credentials_in_metrics_url_stay_out_of_reprs_and_errors() -> None:
    cfg = BreakerConfig(metrics_url="https://user:s3cret@vllm.internal:8000/metrics?token=abc")
    assert cfg.metrics_url is not None and "s3cret" in cfg.metrics_url
    text = repr(cfg)
    assert "s3cret" not in text
    assert "abc" not in text
    assert "metrics_url='https://***@vllm.internal:8000/metrics?***'" in text
    with pytest.raises(ConfigError) as info:
        BreakerConfig(metrics_url="ftp://user:s3cret@host/metrics")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("config", "capacity", "expected"),
    [
        ({}, None, (8, 4)),
        ({}, 0, (8, 4)),
        ({}, 20, (8, 4)),  # ceil(5) < min_high_watermark
        ({}, 64, (16, 8)),
        ({}, 65, (17, 8)),
        ({}, 256, (64, 32)),
        ({"high_fraction": 1.0}, 48, (48, 24)),
        ({"min_high_watermark": 1}, 1, (1, 0)),
        ({"high_watermark": 32}, 1000, (32, 16)),
        ({"high_watermark": 32, "low_watermark": 10}, None, (32, 10)),
        ({"low_watermark": 20}, None, (8, 8)),  # the derived high is below the configured low
        ({"low_watermark": 20}, 200, (50, 20)),
    ],
)
def test_watermarks_table(config: dict[str, Any], capacity: int | None, expected: tuple[int, int]) -> None:
    assert BreakerConfig(**config).watermarks(capacity) == expected


# --- failures -------------------------------------------------------------------------------------


def test_consecutive_failures_open_then_probe_then_close() -> None:
    clock = FakeClock()
    breaker, seen = make(clock)
    fail(breaker, 4)
    assert state_of(breaker) == "closed"
    assert breaker.allowance() is None
    breaker.on_failure("timeout")
    assert state_of(breaker) == "open"
    assert breaker.reason == "5 consecutive failures (last: timeout); cooldown 1s"
    assert breaker.allowance() == 0
    assert breaker.retry_in() == 1.0
    clock.now += 0.75
    assert breaker.retry_in() == pytest.approx(0.25)
    assert state_of(breaker) == "open"
    clock.now += 0.25
    assert state_of(breaker) == "half_open"
    assert breaker.allowance() == 2
    assert breaker.retry_in() is None
    breaker.on_success()
    assert state_of(breaker) == "half_open"
    breaker.on_success()
    assert state_of(breaker) == "closed"
    assert breaker.allowance() is None
    assert [(old, new) for old, new, _ in seen] == [
        ("closed", "open"),
        ("open", "half_open"),
        ("half_open", "closed"),
    ]
    assert seen[1][2] == "cooldown of 1s over; letting 2 probe call(s) through"
    assert seen[2][2] == "2 probe call(s) succeeded"


def test_a_success_resets_the_failure_count() -> None:
    breaker, _ = make(FakeClock(), failure_threshold=3)
    fail(breaker, 2)
    breaker.on_success()
    fail(breaker, 2)
    assert state_of(breaker) == "closed"
    fail(breaker, 1)
    assert state_of(breaker) == "open"


def test_cooldown_doubles_per_reopen_up_to_the_maximum() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, failure_threshold=1, open_cooldown=1.0, max_cooldown=10.0)
    breaker.on_failure("connect")
    cooldowns = []
    for _ in range(6):
        cooldown = breaker.retry_in()
        assert cooldown is not None
        cooldowns.append(cooldown)
        clock.now += cooldown
        assert state_of(breaker) == "half_open"
        breaker.on_failure("connect")  # the probe gets no answer
        assert state_of(breaker) == "open"
    assert cooldowns == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert breaker.reason == "a probe call failed (connect); cooldown 10s"


def test_a_refused_probe_keeps_the_cooldown() -> None:
    # Nothing listens (a restart): probing again after the same cooldown costs the server nothing and
    # finds it within one cooldown of its return, instead of up to a doubled one late.
    clock = FakeClock()
    breaker, _ = make(clock, failure_threshold=1, open_cooldown=1.0, max_cooldown=10.0)
    breaker.on_failure("connect")  # the restart breaks the connections in flight
    for _ in range(4):
        assert breaker.retry_in() == 1.0
        clock.now += 1.0
        assert state_of(breaker) == "half_open"
        breaker.on_failure("refused")
    assert breaker.reason == "a probe call failed (refused); cooldown 1s"
    clock.now += 1.0
    breaker.on_failure("connect")  # a probe that connected and got no answer: doubled again
    assert breaker.retry_in() == 2.0


def test_a_probe_whose_answer_began_closes_it_and_its_later_failure_does_not_reopen() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, failure_threshold=1, half_open_probes=2)
    breaker.on_failure("connect")
    clock.now += breaker.retry_in() or 0.0
    assert state_of(breaker) == "half_open"
    breaker.on_answering()  # the first probe's first token
    breaker.on_failure("timeout", answered=True)  # then it stalled mid-way: still a probe that succeeded
    assert state_of(breaker) == "half_open"
    breaker.on_answering()
    assert state_of(breaker) == "closed"
    breaker.on_answering()  # in closed, nothing
    assert state_of(breaker) == "closed"


def test_a_probe_the_server_answered_with_an_error_keeps_the_cooldown() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, failure_threshold=1, open_cooldown=1.0, max_cooldown=10.0)
    breaker.on_failure("connect")
    clock.now += 1.0
    breaker.on_failure("timeout")  # no answer: doubled
    assert breaker.retry_in() == 2.0
    for _ in range(3):  # answered with an error (the server is up): the same again
        clock.now += 2.0
        assert state_of(breaker) == "half_open"
        breaker.on_failure("server")
        assert breaker.retry_in() == 2.0
    assert breaker.reason == "a probe call failed (server); cooldown 2s"


def test_closing_resets_the_cooldown() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, failure_threshold=1, half_open_probes=1)
    breaker.on_failure("connect")
    clock.now += 1.0
    breaker.on_failure("connect")
    assert breaker.retry_in() == 2.0
    clock.now += 2.0
    breaker.on_success()
    assert state_of(breaker) == "closed"
    breaker.on_failure("connect")
    assert breaker.retry_in() == 1.0


def test_failures_while_open_change_nothing() -> None:
    clock = FakeClock()
    breaker, seen = make(clock, failure_threshold=2)
    fail(breaker, 2)
    clock.now += 0.5
    fail(breaker, 10)  # calls that started before it opened
    breaker.on_success()
    assert breaker.retry_in() == pytest.approx(0.5)
    clock.now += 0.5
    assert state_of(breaker) == "half_open"
    assert len(seen) == 2


def test_a_huge_number_of_reopens_does_not_overflow() -> None:
    clock = FakeClock(0.0)
    breaker, _ = make(clock, failure_threshold=1, open_cooldown=1e-300, max_cooldown=1e300)
    breaker.on_failure("connect")
    for _ in range(2500):
        retry_in = breaker.retry_in()
        assert retry_in is not None
        clock.now += retry_in
        breaker.on_failure("connect")
    assert breaker.retry_in() == pytest.approx(1e300)


# --- load -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waitings", "expected"),
    [
        ([0, 9, 10], ["closed", "closed", "holding"]),
        ([12, 9, 6, 5], ["holding", "holding", "holding", "closed"]),
        ([12, 4, 9, 6, 10], ["holding", "closed", "closed", "closed", "holding"]),
        ([10, 11, 0], ["holding", "holding", "closed"]),
    ],
)
def test_queue_hold_has_hysteresis(waitings: list[int], expected: list[str]) -> None:
    clock = FakeClock()
    breaker, _ = make(clock, high_watermark=10, low_watermark=5)
    states = []
    for waiting in waitings:
        clock.now += 0.5
        breaker.on_load(load(clock, waiting=waiting, running=4))
        states.append(breaker.state)
        assert breaker.allowance() == (0 if state_of(breaker) == "holding" else None)
    assert states == expected


def test_hold_reasons() -> None:
    clock = FakeClock()
    breaker, seen = make(clock, high_watermark=32)
    breaker.on_load(load(clock, waiting=40))
    assert breaker.reason == "waiting 40 >= high watermark 32"
    breaker.on_load(load(clock, waiting=20))
    assert breaker.reason == "waiting 20 > low watermark 16 (held since >= 32)"
    breaker.on_load(load(clock, waiting=16))
    assert state_of(breaker) == "closed"
    assert breaker.reason == "waiting 16 <= low watermark 16"
    assert seen == [
        ("closed", "holding", "waiting 40 >= high watermark 32"),
        ("holding", "closed", "waiting 16 <= low watermark 16"),
    ]


@pytest.mark.parametrize(
    ("usages", "expected"),
    [
        ([0.5, 0.97, 0.98], ["closed", "closed", "holding"]),
        ([0.99, 0.95, 0.91, 0.90], ["holding", "holding", "holding", "closed"]),
        ([1.0, None], ["holding", "closed"]),  # no longer reported: released
    ],
)
def test_kv_hold_has_hysteresis(usages: list[float | None], expected: list[str]) -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    states = []
    for kv in usages:
        clock.now += 0.5
        breaker.on_load(load(clock, kv=kv))
        states.append(breaker.state)
    assert states == expected


def test_both_holds_must_release() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, high_watermark=10)
    breaker.on_load(load(clock, waiting=10, kv=0.99))
    assert breaker.reason == "waiting 10 >= high watermark 10; KV cache usage 99.0% >= 98.0%"
    breaker.on_load(load(clock, waiting=0, kv=0.95))
    assert state_of(breaker) == "holding"
    assert breaker.reason == "KV cache usage 95.0% > 90.0% (held since >= 98.0%)"
    breaker.on_load(load(clock, waiting=0, kv=0.5))
    assert state_of(breaker) == "closed"


def test_equal_watermarks_do_not_flap() -> None:
    clock = FakeClock()
    breaker, seen = make(clock, high_watermark=10, low_watermark=10)
    for waiting in [10, 10, 10, 9, 9]:
        breaker.on_load(load(clock, waiting=waiting))
    assert [new for _, new, _ in seen] == ["holding", "closed"]


def test_derived_watermark_follows_observed_capacity() -> None:
    clock = FakeClock()
    breaker, _ = make(clock)
    assert breaker.capacity is None
    assert breaker.high_watermark == 8
    breaker.on_load(load(clock, running=0, waiting=0))
    assert breaker.capacity is None
    breaker.on_load(load(clock, running=64, waiting=12))
    assert breaker.capacity == 64
    assert (breaker.high_watermark, breaker.low_watermark) == (16, 8)
    assert state_of(breaker) == "closed"
    breaker.on_load(load(clock, running=10, waiting=16))  # capacity is the largest seen
    assert breaker.capacity == 64
    assert state_of(breaker) == "holding"
    assert breaker.reason == "waiting 16 >= high watermark 16"


def test_metrics_once_read_stay_seen_when_they_go_stale() -> None:
    """Through an outage a server's /metrics go stale; that it serves them is still known (the engine
    then restarts no ramp at recovery: the next scrape holds calls on its queue depth)."""
    clock = FakeClock()
    breaker, _ = make(clock)
    assert not breaker.metrics_seen
    breaker.on_load(None)  # a failed scrape before any: nothing seen
    assert not breaker.metrics_seen
    breaker.on_load(load(clock, waiting=0))
    assert breaker.metrics_seen and breaker.metrics_available
    clock.now += 60.0
    breaker.on_load(None)
    assert breaker.metrics_seen and not breaker.metrics_available


def test_stale_metrics_release_the_hold_and_say_so_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FakeClock()
    breaker, seen = make(clock, high_watermark=10)
    breaker.on_load(load(clock, waiting=50))
    assert state_of(breaker) == "holding"
    assert breaker.metrics_available
    clock.now += 5.0
    assert state_of(breaker) == "holding"  # exactly stale_after old: still fresh
    breaker.on_load(None)  # a failed scrape: the last load holds until it is stale
    assert state_of(breaker) == "holding"
    clock.now += 0.01
    assert state_of(breaker) == "closed"
    assert not breaker.metrics_available
    assert breaker.load is None
    assert seen[-1] == ("holding", "closed", "no fresh server metrics (none for 5.0s): hold released")
    for _ in range(5):
        breaker.on_load(None)
        clock.now += 1
        assert breaker.allowance() is None
    # The server monitor says it at INFO, naming the server; the breaker only notes it (DEBUG, once).
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    notes = [r for r in caplog.records if "server metrics unavailable" in r.getMessage()]
    assert len(notes) == 1
    breaker.on_load(load(clock, waiting=1))
    breaker.on_load(load(clock, waiting=2))
    assert not [r for r in caplog.records if r.levelno >= logging.INFO]
    assert len([r for r in caplog.records if r.getMessage().startswith("server metrics available")]) == 2
    assert all(r.name == LOGGER for r in caplog.records)


def test_no_metrics_at_all_is_noted_once_and_never_holds(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FakeClock()
    breaker, seen = make(clock)
    for _ in range(10):
        breaker.on_load(None)
        clock.now += 0.5
    assert state_of(breaker) == "closed"
    assert not breaker.metrics_available
    assert seen == []
    assert [r.levelno for r in caplog.records] == [logging.DEBUG]  # the monitor tells users, at INFO
    assert "the scrape failed" in caplog.records[0].getMessage()


def test_a_load_stale_on_arrival_is_ignored() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, high_watermark=10)
    breaker.on_load(load(clock, waiting=50, age=6.0))
    assert state_of(breaker) == "closed"
    assert not breaker.metrics_available


def test_an_out_of_order_load_is_ignored() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, high_watermark=10)
    breaker.on_load(load(clock, waiting=50))
    clock.now += 1
    breaker.on_load(load(clock, waiting=0, age=2.0))  # scraped before the one in effect
    assert state_of(breaker) == "holding"


def test_a_load_from_the_future_cannot_hold_forever() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, high_watermark=10)
    breaker.on_load(load(clock, waiting=50, age=-1e6))
    assert state_of(breaker) == "holding"
    clock.now += 5.01
    assert state_of(breaker) == "closed"


def test_holding_while_half_open_admits_nothing() -> None:
    clock = FakeClock()
    breaker, seen = make(clock, high_watermark=10, failure_threshold=1, half_open_probes=1)
    breaker.on_failure("connect")
    clock.now += 1.0
    breaker.on_load(load(clock, waiting=30))
    assert state_of(breaker) == "half_open"
    assert breaker.allowance() == 0
    assert breaker.reason.endswith("; waiting 30 >= high watermark 10")
    breaker.on_success()  # a call admitted earlier succeeds: the server is back, but busy
    assert state_of(breaker) == "holding"
    assert seen[-1] == ("half_open", "holding", "waiting 30 >= high watermark 10")
    breaker.on_load(load(clock, waiting=0))
    assert state_of(breaker) == "closed"


def test_open_wins_over_holding() -> None:
    clock = FakeClock()
    breaker, _ = make(clock, high_watermark=10, failure_threshold=1)
    breaker.on_load(load(clock, waiting=30))
    breaker.on_failure("server")
    assert state_of(breaker) == "open"
    assert breaker.retry_in() == 1.0
    clock.now += 1.0
    assert state_of(breaker) == "half_open"


# --- listeners ------------------------------------------------------------------------------------


def test_a_failing_listener_is_logged_and_the_others_still_run(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger=LOGGER)
    clock = FakeClock()
    breaker = Breaker(BreakerConfig(failure_threshold=1), clock=clock)
    seen: list[Transition] = []

    def broken(old: str, new: str, reason: str) -> None:
        raise RuntimeError("boom")

    breaker.add_listener(broken)
    breaker.add_listener(lambda *args: seen.append(args))
    breaker.on_failure("connect")
    assert state_of(breaker) == "open"
    assert [new for _, new, _ in seen] == ["open"]
    assert "breaker listener" in caplog.records[0].getMessage()
    breaker.remove_listener(broken)
    breaker.remove_listener(broken)  # no error


def test_listener_may_query_the_breaker() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerConfig(failure_threshold=1), clock=clock)
    observed: list[tuple[str, int | None]] = []
    breaker.add_listener(lambda old, new, reason: observed.append((breaker.state, breaker.allowance())))
    breaker.on_failure("connect")
    clock.now += 1.0
    assert state_of(breaker) == "half_open"
    assert observed == [("open", 0), ("half_open", 2)]


def test_config_must_be_a_breaker_config() -> None:
    with pytest.raises(TypeError, match="BreakerConfig"):
        Breaker({"high_watermark": 3}, clock=FakeClock())  # type: ignore[arg-type]


def test_repr() -> None:
    breaker, _ = make(FakeClock())
    assert repr(breaker) == "Breaker(state='closed', reason='no recent failures')"


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.anyio
async def test_default_clock_is_the_event_loop_clock() -> None:
    import anyio

    breaker = Breaker(BreakerConfig(high_watermark=4))
    breaker.on_load(
        ServerLoad(running=1, waiting=9, kv_cache_usage=None, engines=1, scraped_at=anyio.current_time())
    )
    assert state_of(breaker) == "holding"
    assert breaker.metrics_available


# --- properties -----------------------------------------------------------------------------------

configs = st.sampled_from(
    [
        BreakerConfig(high_watermark=10, low_watermark=5),
        BreakerConfig(high_watermark=10, low_watermark=10, kv_high=0.9, kv_low=0.9),
        BreakerConfig(
            high_watermark=3, failure_threshold=1, half_open_probes=1, open_cooldown=0.5, max_cooldown=4
        ),
        BreakerConfig(failure_threshold=2, open_cooldown=2.0, max_cooldown=5.0, stale_after=1.0),
        BreakerConfig(min_high_watermark=2, high_fraction=0.5, failure_threshold=3),
    ]
)
kinds = st.sampled_from(["connect", "timeout", "server"])
# values near every threshold of the configs above, plus anything
waitings = st.one_of(st.sampled_from([0, 1, 2, 3, 4, 5, 6, 9, 10, 11, 16, 32]), st.integers(0, 40))
runnings = st.one_of(st.sampled_from([0, 1, 4, 10, 30, 64]), st.integers(0, 64))
usages = st.one_of(
    st.none(),
    st.sampled_from([0.5, 0.89, 0.9, 0.91, 0.97, 0.98, 0.99, 1.0]),
    st.floats(min_value=0, max_value=1),
)
steps_in_time = st.one_of(
    st.sampled_from([0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 5.0, 5.01, 30.0]), st.floats(min_value=0, max_value=8)
)
events = st.lists(
    st.one_of(
        st.tuples(st.just("advance"), steps_in_time),
        st.tuples(
            st.just("load"),
            waitings,
            runnings,
            usages,
            st.sampled_from([0.0, 0.0, 0.3, 2.0, 7.0, -1.0]),  # age
        ),
        st.tuples(st.just("scrape_failed")),
        st.tuples(st.just("success")),
        st.tuples(st.just("failure"), kinds),
    ),
    max_size=80,
)


def absorbed(last: tuple[int, int] | None, running: int, waiting: int) -> bool:
    """The spec of "a queue being taken in": requests wait and ``running`` rose since the last
    different counts by at least as many."""
    rise = running - (last[0] if last is not None else 0)
    return 0 < waiting <= rise


class Model:
    """The load holds as specified: hold at >= high, release at <= low (and < high), except while the
    queue is being taken in (then released); stale → released."""

    def __init__(self, config: BreakerConfig) -> None:
        self.config = config
        self.max_running = 0
        self.last: tuple[float, float] | None = None  # (scraped_at, effective time)
        self.counts: tuple[int, int] | None = None  # the last different (running, waiting)
        self.absorbing = False
        self.queue = self.kv = False

    def on_load(self, now: float, item: ServerLoad | None) -> None:
        self.expire(now)
        if item is None or now - item.scraped_at > self.config.stale_after:
            return
        if self.last is not None and item.scraped_at < self.last[0]:
            return
        self.last = (item.scraped_at, min(item.scraped_at, now))
        self.max_running = max(self.max_running, item.running)
        high, low = self.config.watermarks(self.max_running or None)
        counts = (item.running, item.waiting)
        if counts != self.counts:
            self.absorbing = absorbed(self.counts, *counts)
            self.counts = counts
        if self.absorbing:
            self.queue = False
        else:
            self.queue = item.waiting >= high or (self.queue and item.waiting > low)
        kv = item.kv_cache_usage
        self.kv = kv is not None and (kv >= self.config.kv_high or (self.kv and kv > self.config.kv_low))

    def expire(self, now: float) -> None:
        if self.last is not None and now - self.last[1] > self.config.stale_after:
            self.last = None
            self.queue = self.kv = False


@settings(max_examples=250)
@given(config=configs, steps=events)
def test_invariants_under_random_events(config: BreakerConfig, steps: list[tuple[Any, ...]]) -> None:
    clock = FakeClock(100.0)
    breaker = Breaker(config, clock=clock)
    seen: list[tuple[str, str, str, float]] = []
    breaker.add_listener(lambda old, new, reason: seen.append((old, new, reason, clock.now)))
    model = Model(config)
    failures_seen = False
    for step in steps:
        if step[0] == "advance":
            clock.now += step[1]
        elif step[0] == "load":
            _, waiting, running, kv, age = step
            item = ServerLoad(
                running=running, waiting=waiting, kv_cache_usage=kv, engines=1, scraped_at=clock.now - age
            )
            breaker.on_load(item)
            model.on_load(clock.now, item)
        elif step[0] == "scrape_failed":
            breaker.on_load(None)
            model.on_load(clock.now, None)
        elif step[0] == "success":
            breaker.on_success()
        else:
            breaker.on_failure(step[1])
            failures_seen = True
        model.expire(clock.now)

        state = breaker.state
        allowance = breaker.allowance()
        # allowance is never negative, and matches the state
        assert allowance is None or allowance >= 0
        assert (allowance is None) == (state == "closed")
        if state in ("open", "holding"):
            assert allowance == 0
        if state == "half_open":
            assert allowance == (0 if model.queue or model.kv else config.half_open_probes)
        # transitions reported to listeners match the state
        expected_state = seen[-1][1] if seen else "closed"
        assert state == expected_state
        for (_, new, _, _), (old, _, _, _) in itertools.pairwise(seen):
            assert old == new
        assert all(old != new for old, new, _, _ in seen)
        # never open longer than max_cooldown without going half-open
        if state == "open":
            opened_at = next(t for old, new, _, t in reversed(seen) if new == "open")
            assert clock.now - opened_at < config.max_cooldown
            retry_in = breaker.retry_in()
            assert retry_in is not None and 0 < retry_in <= config.max_cooldown
        # with no fresh metrics and no failures the breaker is closed
        if not failures_seen and not breaker.metrics_available:
            assert state == "closed"
        if not breaker.metrics_available and state not in ("open", "half_open"):
            assert state == "closed"
        # hysteresis: holding exactly as the model says
        if state in ("closed", "holding"):
            assert (state == "holding") == (model.queue or model.kv)


@given(
    steps=st.lists(
        st.one_of(
            st.tuples(st.just("advance"), st.floats(min_value=0, max_value=10)),
            st.tuples(st.just("scrape_failed")),
            st.tuples(st.just("stale"), st.integers(min_value=0, max_value=10**6)),
            st.tuples(st.just("success")),
        ),
        max_size=60,
    )
)
def test_without_fresh_metrics_or_failures_it_stays_closed(steps: list[tuple[Any, ...]]) -> None:
    clock = FakeClock()
    breaker, seen = make(clock, high_watermark=1, kv_high=0.01, kv_low=0.01)
    for step in steps:
        if step[0] == "advance":
            clock.now += step[1]
        elif step[0] == "scrape_failed":
            breaker.on_load(None)
        elif step[0] == "stale":
            breaker.on_load(load(clock, waiting=step[1], running=step[1], kv=1.0, age=5.5))
        else:
            breaker.on_success()
        assert state_of(breaker) == "closed"
        assert breaker.allowance() is None
    assert seen == []


@settings(max_examples=200)
@given(config=configs, waitings=st.lists(st.tuples(waitings, runnings), max_size=40))
def test_queue_holds_only_at_high_and_releases_only_at_low(
    config: BreakerConfig, waitings: list[tuple[int, int]]
) -> None:
    clock = FakeClock()
    breaker, seen = make(clock, **{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
    counts: tuple[int, int] | None = None
    absorbing = False
    for waiting, running in waitings:
        clock.now += 0.5
        before = len(seen)
        was_holding = state_of(breaker) == "holding"
        breaker.on_load(load(clock, waiting=waiting, running=running))
        if (running, waiting) != counts:
            absorbing, counts = absorbed(counts, running, waiting), (running, waiting)
        assert breaker.absorbing == absorbing
        high, low = breaker.high_watermark, breaker.low_watermark
        assert high is not None
        for old, new, _ in seen[before:]:
            if new == "holding":
                assert waiting >= high and not absorbing
            if old == "holding":
                assert (waiting <= low and waiting < high) or absorbing
        if absorbing:  # a queue taken in within the server's next update is no excess
            assert state_of(breaker) == "closed"
        elif waiting >= high:
            assert state_of(breaker) == "holding"
        elif waiting > low:
            assert (state_of(breaker) == "holding") == was_holding  # between the watermarks: no change
        else:
            assert state_of(breaker) == "closed"


@settings(max_examples=200)
@given(config=configs, kvs=st.lists(usages, max_size=40))
def test_kv_holds_only_at_high_and_releases_only_at_low(
    config: BreakerConfig, kvs: list[float | None]
) -> None:
    clock = FakeClock()
    breaker, seen = make(clock, **{f.name: getattr(config, f.name) for f in dataclasses.fields(config)})
    for kv in kvs:
        clock.now += 0.5
        was_holding = state_of(breaker) == "holding"
        breaker.on_load(load(clock, kv=kv))
        holding = state_of(breaker) == "holding"
        if kv is None:
            assert not holding
        elif kv >= config.kv_high:
            assert holding
        elif kv > config.kv_low:
            assert holding == was_holding  # between the thresholds: no change
        else:
            assert not holding
    assert all(old != new for old, new, _ in seen)


def test_a_call_waiting_for_a_restarting_server_retries_at_the_breakers_pace() -> None:
    """``_engine._paced_by_breaker``: no backoff of its own once the breaker is open or probing (the
    limiter holds it until a probe is answered), at most one cooldown before."""
    from types import SimpleNamespace

    from resilient_llm._engine import _paced_by_breaker

    clock = FakeClock()
    breaker, _ = make(clock, failure_threshold=2, open_cooldown=1.0)
    replica: Any = SimpleNamespace(breaker=breaker)
    assert _paced_by_breaker(replica, 0.4) == 0.4  # closed: the first refusals keep a short backoff
    assert _paced_by_breaker(replica, 6.0) == 1.0  # ... never more than a cooldown
    breaker.on_failure("refused")
    breaker.on_failure("refused")
    assert state_of(breaker) == "open"
    assert _paced_by_breaker(replica, 6.0) == 0.0
    clock.now += 1.0
    assert state_of(breaker) == "half_open"
    assert _paced_by_breaker(replica, 6.0) == 0.0
    no_breaker: Any = SimpleNamespace(breaker=None)
    assert _paced_by_breaker(no_breaker, 6.0) == 6.0
