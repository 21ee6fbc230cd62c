"""Several OS processes sharing one Redis: the server never sees more than the global limit, and the
slots of a SIGKILLed process come back within the lease expiry."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

from resilient_llm._coord import CoordinationConfig, Coordinator, GlobalWaitTimeout
from resilient_llm.testing import SimulatorConfig, SimulatorThread
from tests.redis_server import unique_prefix, url_of

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


def worker(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.coord_worker", *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_four_processes_never_put_more_than_the_global_limit_on_the_server(redis_server: Any) -> None:
    limit, processes, calls = 3, 4, 10
    # 256 tokens x 0.02 s x 0.01: about 50 ms a request; 16 sequences could run at once on the server.
    config = SimulatorConfig(time_scale=0.01, tick=0.002, sample_interval=1.0, capacity=16)
    with SimulatorThread(config) as sim:
        common = ["--redis", url_of(redis_server), "--prefix", unique_prefix(), "--limit", str(limit)]
        common += ["--redis-timeout", "1.0", "--lease-ttl", "10"]  # no fallback on a loaded machine
        procs = [
            worker("calls", *common, "--sim", sim.url, "--calls", str(calls), "--concurrency", "5")
            for _ in range(processes)
        ]
        try:
            results = [json.loads(p.communicate(timeout=45)[0].strip().splitlines()[-1]) for p in procs]
        finally:
            for p in procs:
                p.kill()
                p.wait(5)
        stats = sim.stats()
    assert [r["ok"] for r in results] == [calls] * processes, results
    assert stats.requests_completed == processes * calls
    assert stats.peak_in_flight == limit  # reached, never exceeded (20 calls wanted to run at once)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_sigkilled_holders_slots_come_back_within_the_lease_expiry(redis_server: Any) -> None:
    limit, lease_ttl, prefix = 3, 1.0, unique_prefix()
    holder = worker("hold", "--redis", url_of(redis_server), "--prefix", prefix, "--limit", str(limit),
                    "--lease-ttl", str(lease_ttl))  # fmt: skip
    try:
        with anyio.fail_after(20):
            line = await anyio.to_thread.run_sync(holder.stdout.readline)  # type: ignore[union-attr]
        assert line.strip() == "HELD", holder.stderr.read() if holder.stderr else ""
        config = CoordinationConfig(
            url=url_of(redis_server),
            key_prefix=prefix,
            lease_ttl=lease_ttl,
            redis_timeout=0.1,
            poll_interval=0.01,
        )
        async with Coordinator(config) as coordinator:
            slots = coordinator.concurrency_limit("sim", limit=limit)
            with pytest.raises(GlobalWaitTimeout):
                await slots.acquire(deadline=anyio.current_time() + 0.3)  # the holder has them all
            holder.kill()
            killed = time.monotonic()
            leases = [await slots.acquire(deadline=anyio.current_time() + 5) for _ in range(limit)]
            back_after = time.monotonic() - killed
            for lease in leases:
                slots.release(lease)
    finally:
        holder.kill()
        holder.communicate(timeout=5)
    assert back_after <= lease_ttl + 0.3  # renewed every lease_ttl / 3: back within the expiry
