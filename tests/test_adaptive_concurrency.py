"""The default concurrency limit (``max_concurrency=None``) follows what the server shows (``_upstream.py``).

Driven scrape by scrape with a fake clock: no server, no sockets.
"""

from __future__ import annotations

import pytest

from resilient_llm._http._base import Transport
from resilient_llm._limiter import Lane
from resilient_llm._load import ServerLoad
from resilient_llm._policies._breaker import Breaker, BreakerConfig
from resilient_llm._policies._ramp import Ramp
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


def test_while_nothing_waits_the_limit_doubles_what_the_server_shows() -> None:
    clock = FakeClock()
    up, lane = upstream(clock)
    lane.in_flight = 64
    up.on_load(scrape(clock, running=1))  # a server that lags: counts 1 of this client's 64
    assert lane.server_cap == FALLBACK_CONCURRENCY  # its sends fill the limit: not doubled on a guess
    up.on_load(scrape(clock, running=64))
    assert lane.server_cap == 128
    lane.in_flight = 128
    up.on_load(scrape(clock, running=128))
    assert lane.server_cap == 256
    lane.in_flight = 10
    up.on_load(scrape(clock, running=10))  # less load now: the limit reached stays
    assert lane.server_cap == 256


def test_a_small_load_keeps_the_fallback() -> None:
    clock = FakeClock()
    up, lane = upstream(clock)
    lane.in_flight = 3
    up.on_load(scrape(clock, running=3))
    assert lane.server_cap == FALLBACK_CONCURRENCY


def test_once_requests_wait_and_running_stays_the_limit_is_the_batch_capacity_plus_the_queue_allowed() -> (
    None
):
    clock = FakeClock()
    up, lane = upstream(clock)
    lane.in_flight = 64
    up.on_load(scrape(clock, running=16, waiting=48))  # a burst met: is 16 its capacity, or a first step?
    assert lane.server_cap == FALLBACK_CONCURRENCY  # not doubled: 48 wait, more than it just took in
    assert up_state(up) == "holding"
    up.on_load(scrape(clock, running=16, waiting=48))  # the same counts: no news (/metrics not updated)
    assert lane.server_cap == FALLBACK_CONCURRENCY
    up.on_load(scrape(clock, running=16, waiting=47))  # an update where running did not rise
    high = BreakerConfig().watermarks(16)[0]
    assert lane.server_cap == 16 + high  # the server showed where its limit is: no more doubling
    up.on_load(scrape(clock, running=16, waiting=0))
    assert lane.server_cap == 16 + high


def test_a_burst_the_server_takes_in_update_by_update_is_not_its_capacity() -> None:
    # A CPU vLLM takes in about 24 requests per engine step: running 24 -> 49 -> 73 -> 96.
    clock = FakeClock()
    up, lane = upstream(clock)
    lane.in_flight = 64
    up.on_load(scrape(clock, running=24, waiting=40))
    assert lane.server_cap == FALLBACK_CONCURRENCY and up_state(up) == "holding"
    up.on_load(scrape(clock, running=49, waiting=15))  # rose 25, 15 wait: taken in at the next step
    assert up_state(up) == "closed"
    assert lane.server_cap == 128  # twice what it holds: the rest of a burst may go in
    lane.in_flight = 96
    up.on_load(scrape(clock, running=73, waiting=23))
    assert up_state(up) == "closed" and lane.server_cap == 192
    up.on_load(scrape(clock, running=96, waiting=0))
    assert lane.server_cap == 192 and up_state(up) == "closed"
    assert lane.breaker is not None and lane.breaker.saturated_capacity is None


def up_state(up: Upstream) -> str:
    assert up._breaker is not None
    return up._breaker.state


def test_the_slow_start_ramp_ends_once_the_servers_metrics_are_read() -> None:
    clock = FakeClock()
    breaker = Breaker(BreakerConfig(), clock=clock)
    ramp = Ramp(duration=10, clock=clock)
    lane = Lane(max_concurrency=ADAPTIVE_CEILING, ramp=ramp, breaker=breaker)
    up = Upstream(
        server="http://sim/v1",
        metrics_url=None,
        breaker=breaker,
        lane=lane,
        adaptive=True,
        transport=no_transport,
        clock=clock,
    )
    ramp.start()
    assert lane.capacity() == 7  # a tenth of the fallback 64, rounded up
    up.on_load(None)  # no metrics (yet): the ramp goes on
    assert lane.capacity() == 7 and not ramp.done
    up.on_load(scrape(clock, running=0))
    assert ramp.done and lane.capacity() == FALLBACK_CONCURRENCY  # the queue depth paces from here


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
