"""The default concurrency limit (``max_concurrency=None``) follows what the server shows (``_upstream.py``).

Driven scrape by scrape with a fake clock: no server, no sockets.
"""

from __future__ import annotations

import pytest

from resilient_llm._http._base import Transport
from resilient_llm._limiter import Lane
from resilient_llm._load import ServerLoad
from resilient_llm._policies._breaker import Breaker, BreakerConfig
from resilient_llm._upstream import ADAPTIVE_CEILING, FALLBACK_CONCURRENCY, Upstream
from resilient_llm.testing import FakeClock

pytestmark = pytest.mark.timeout(10)


def no_transport() -> Transport:
    raise AssertionError("these tests send nothing")


def upstream(clock: FakeClock, *, adaptive: bool = True, max_concurrency: int = 8) -> tuple[Upstream, Lane]:
    breaker = Breaker(BreakerConfig(), clock=clock)
    lane = Lane(max_concurrency=max_concurrency, breaker=breaker)
    up = Upstream(
        server="http://sim/v1",
        metrics_url=None,  # the test feeds the loads itself
        breaker=breaker,
        lane=lane,
        adaptive=adaptive,
        transport=no_transport,
        clock=clock,
    )
    return up, lane


def scrape(clock: FakeClock, running: int, waiting: int = 0) -> ServerLoad:
    clock.advance(0.5)
    return ServerLoad(running=running, waiting=waiting, kv_cache_usage=None, engines=1, scraped_at=clock())


def test_before_any_scrape_the_limit_is_the_fallback() -> None:
    _, lane = upstream(FakeClock())
    assert lane.max_concurrency == ADAPTIVE_CEILING
    assert lane.server_cap == FALLBACK_CONCURRENCY


def test_while_nothing_waits_the_limit_doubles_what_runs_or_is_in_flight() -> None:
    clock = FakeClock()
    up, lane = upstream(clock)
    lane.in_flight = 64
    up.on_load(scrape(clock, running=1))  # a server that lags: counts 1 of this client's 64
    assert lane.server_cap == 128
    lane.in_flight = 128
    up.on_load(scrape(clock, running=128))
    assert lane.server_cap == 256
    lane.in_flight = 10
    up.on_load(scrape(clock, running=10))  # less load now: the largest running seen still counts
    assert lane.server_cap == 256


def test_a_small_load_keeps_the_fallback() -> None:
    clock = FakeClock()
    up, lane = upstream(clock)
    lane.in_flight = 3
    up.on_load(scrape(clock, running=3))
    assert lane.server_cap == FALLBACK_CONCURRENCY


def test_once_requests_wait_the_limit_is_the_batch_capacity_plus_the_queue_allowed() -> None:
    clock = FakeClock()
    up, lane = upstream(clock)
    lane.in_flight = 64
    up.on_load(scrape(clock, running=16, waiting=48))
    high = BreakerConfig().watermarks(16)[0]
    assert lane.server_cap == 16 + high  # no more doubling: the server showed where its limit is
    up.on_load(scrape(clock, running=16, waiting=0))
    assert lane.server_cap == 16 + high


def test_without_metrics_the_limit_is_the_fallback() -> None:
    clock = FakeClock()
    up, lane = upstream(clock)
    lane.in_flight = 64
    up.on_load(scrape(clock, running=64))
    assert lane.server_cap == 128
    up.on_load(None)
    clock.advance(BreakerConfig().stale_after + 1)  # the last load is stale: no metrics in effect
    up.on_load(None)
    assert lane.server_cap == FALLBACK_CONCURRENCY


def test_an_explicit_max_concurrency_is_a_hard_cap_left_alone() -> None:
    clock = FakeClock()
    up, lane = upstream(clock, adaptive=False, max_concurrency=8)
    lane.in_flight = 8
    up.on_load(scrape(clock, running=8))
    assert lane.max_concurrency == 8
    assert lane.server_cap is None
