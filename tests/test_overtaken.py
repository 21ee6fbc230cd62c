"""The overtaken rule: a streamed request that shows nothing while requests sent after it have started
answering was lost (the server serves in order); it is cut once per call (``_vllm/_monitor.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from resilient_llm import BreakerConfig, OrphanedRequestError
from resilient_llm._attempt import Attempt, Request
from resilient_llm._load import ServerLoad
from resilient_llm._vllm._monitor import OVERTAKEN_WAIT, OVERTAKERS, Scrape, ServerMonitor
from resilient_llm._watch import Watch, Watches
from resilient_llm.testing import FakeClock, SimulatorConfig, SimulatorThread
from tests.test_monitor import many, sim_client, sim_config

pytestmark = pytest.mark.timeout(30)

POLL = 0.5


def monitor(clock: FakeClock, watches: Watches, **config: Any) -> ServerMonitor:
    async def scrape() -> Scrape:  # never called: the tests drive the rule directly
        raise AssertionError

    return ServerMonitor(
        config=BreakerConfig(poll_interval=POLL, **config),
        server="http://sim/v1",
        scrape=scrape,
        on_load=lambda load: None,
        on_idle=lambda: None,
        watches=watches,
        busy=lambda: True,
        clock=clock,
    )


def sent(clock: FakeClock, watches: Watches, *, size: int = 100, streams: bool = True) -> Watch:
    w = Watch(now=clock(), silence=60.0, deadline_at=1e9)
    w.streams, w.size, w.may_overtake = streams, size, True
    watches.add(w)
    return w


def scenario(clock: FakeClock, watches: Watches, *, later: int, size: int = 100, gap: float = 1.0) -> Watch:
    """One request sent at t=0 and never answered; ``later`` requests sent ``gap`` s after it, each of
    which starts answering 2 s after it was sent."""
    lost = sent(clock, watches)
    clock.advance(gap)
    others = [sent(clock, watches, size=size) for _ in range(later)]
    clock.advance(2.0)
    for w in others:
        w.heard(clock())
    return lost


def test_a_request_overtaken_by_later_ones_is_cut() -> None:
    clock, watches = FakeClock(), Watches()
    lost = scenario(clock, watches, later=OVERTAKERS)
    mon = monitor(clock, watches)
    clock.now = OVERTAKEN_WAIT * 2.0 - 0.01  # it has not waited twice their time to first token yet
    mon._cut_overtaken()
    assert not lost.orphaned
    clock.now = OVERTAKEN_WAIT * 2.0
    mon._cut_overtaken()
    assert lost.orphaned and lost.overtaken_by == OVERTAKERS


def test_finished_overtakers_count_too() -> None:
    clock, watches = FakeClock(), Watches()
    lost = sent(clock, watches)
    clock.advance(1.0)
    others = [sent(clock, watches) for _ in range(OVERTAKERS)]
    clock.advance(1.0)
    for w in others:
        w.heard(clock())
        watches.discard(w, now=clock(), abandoned=False)  # answered and gone
    clock.advance(5.0)
    monitor(clock, watches)._cut_overtaken()
    assert lost.orphaned


@pytest.mark.parametrize(
    ("case", "kwargs"),
    [
        ("too few later requests started", {"later": OVERTAKERS - 1}),
        ("later requests with far smaller bodies prefill faster: no evidence", {"later": 3, "size": 40}),
        ("requests sent within a poll interval may arrive in either order", {"later": 5, "gap": POLL / 2}),
    ],
)
def test_weak_evidence_cuts_nothing(case: str, kwargs: dict[str, Any]) -> None:
    clock, watches = FakeClock(), Watches()
    lost = scenario(clock, watches, **kwargs)
    clock.advance(30.0)
    monitor(clock, watches)._cut_overtaken()
    assert not lost.orphaned, case


def test_only_streamed_requests_that_may_be_cut_are_judged() -> None:
    clock, watches = FakeClock(), Watches()
    plain = sent(clock, watches, streams=False)  # a JSON answer shows nothing until it is complete
    once = sent(clock, watches)
    once.may_overtake = False  # its call was cut by this rule already
    clock.advance(1.0)
    others = [sent(clock, watches) for _ in range(5)]
    clock.advance(1.0)
    for w in others:
        w.heard(clock())
    clock.advance(30.0)
    monitor(clock, watches)._cut_overtaken()
    assert not plain.orphaned and not once.orphaned


def test_nothing_is_cut_when_the_server_shows_several_engines_or_orphan_detection_is_off() -> None:
    clock, watches = FakeClock(), Watches()
    lost = scenario(clock, watches, later=5)
    clock.advance(30.0)
    mon = monitor(clock, watches)
    mon.last_load = ServerLoad(running=5, waiting=0, kv_cache_usage=None, engines=2, scraped_at=clock())
    mon._cut_overtaken()
    assert not lost.orphaned
    assert monitor(clock, watches, orphan_grace=None)._detector is None  # _poll never runs the rule


def test_a_call_is_cut_by_the_rule_once() -> None:
    clock, watches = FakeClock(), Watches()
    request = Request("POST", "http://sim/v1/chat/completions", {}, body={"stream": True})
    att = Attempt(
        transport=None,  # type: ignore[arg-type]
        silence=60.0,
        deadline_at=1e9,
        connect_timeout=None,
        clock=clock,
        watches=watches,
        status_error=lambda r: None,  # type: ignore[arg-type,return-value]
        release=lambda exc: None,
        request=request,
    )
    first = att.new_watch()
    assert first.may_overtake and first.size == len(request.content or b"")
    first.cut_overtaken(3, 4)
    error = att.timed_out(first)
    assert isinstance(error, OrphanedRequestError) and error.overtaken_by == 3
    assert "sent after it have started answering" in str(error)
    assert request.overtaken
    assert not att.new_watch().may_overtake  # the call's next attempt waits for the other rules


@pytest.mark.anyio
async def test_a_lost_request_is_found_without_metrics(anyio_backend: str) -> None:
    # Every /metrics scrape a 404: without this rule the lost request waits out the stall limit.
    config: SimulatorConfig = sim_config(fault_script=["lost"], faults={"metrics_missing": 1.0})
    with SimulatorThread(config) as sim:
        client = sim_client(sim, max_concurrency=8)
        results = await many(client, 8, 200, gap=0.03)
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) for r in results), results
    # Found by this rule before the stall limit (60 simulated s), which would have counted a stall.
    # (Not a wall-clock bound: on a loaded 2-core machine one run took 1.13 s against the limit's 1.2.)
    assert stats.orphans == 1 and stats.stalls == 0
