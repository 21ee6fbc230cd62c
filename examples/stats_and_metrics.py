"""Watch a client work: ``client.stats()``, ``client.metrics()``, event hooks and the ``resilient_llm`` logger.

    python examples/stats_and_metrics.py                                   # simulated vLLM, in-process
    python examples/stats_and_metrics.py --base-url http://127.0.0.1:8000/v1

Without ``--base-url`` the script serves a small simulated vLLM (4 sequences at once) whose first
attempts fail on purpose: a 503, a dropped connection, and a "ghost" — an answer the server finishes
but never delivers, as in the incident where the server showed ``Running: 0 reqs`` while the client
waited. Then 24 calls go out at once through a client allowed 8 in flight. While they run, a line of
``client.stats()`` is printed every quarter second; at the end come the events the hook received,
the final counters, and the client's Prometheus metrics.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
import time

from resilient_llm import AsyncOpenAI, BreakerConfig, Event, OpenAIError
from resilient_llm.testing import SimulatorConfig, VLLMSimulator

MODEL = "openai/gpt-oss-20b"
CALLS = 24

#: The first attempts the simulator receives fail this way (in arrival order); the rest are clean.
FAULTS = ("none", "503", "none", "drop", "none", "ghost")


def make_client(base_url: str, events: list[Event]) -> AsyncOpenAI:
    """Settings shrunk to fit a run of a few seconds; the defaults suit real servers (see the docs)."""
    return AsyncOpenAI(
        base_url=base_url,
        api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
        max_concurrency=8,
        ramp_up=1.0,  # start at 10 % of 8 (one call), all 8 after a second
        stall_timeout=10.0,
        deadline=60.0,
        breaker=BreakerConfig(poll_interval=0.1, stale_after=1.0, orphan_grace=0.3),
        hooks=[events.append],
    )


def stats_line(client: AsyncOpenAI, started: float) -> str:
    s = client.stats()
    return (
        f"t={time.monotonic() - started:4.1f}s in_flight={s.in_flight} queued={s.queued} "
        f"capacity={s.capacity} ramp={s.ramp_level:.2f} breaker={s.breaker_state} "
        f"ok={s.calls_ok} retries={s.retries} orphans={s.orphans}"
    )


async def run(base_url: str, model: str) -> int:
    events: list[Event] = []
    async with make_client(base_url, events) as client:

        async def one(i: int) -> str:
            reply = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"Describe grid {i} in one sentence."}],
                max_tokens=400,
            )
            return reply.choices[0].finish_reason or "?"

        started = time.monotonic()
        calls = asyncio.gather(*(one(i) for i in range(CALLS)), return_exceptions=True)
        while not calls.done():
            print(stats_line(client, started))
            await asyncio.wait([calls], timeout=0.25)
        results = await calls
        print(stats_line(client, started))

        failed = [r for r in results if isinstance(r, BaseException)]
        print(f"\n{CALLS - len(failed)} of {CALLS} calls answered; {len(failed)} failed")
        for exc in failed:
            print(f"  {type(exc).__name__}: {exc}")

        print("\nevents received by the hook:")
        for event in events:
            print(f"  {event}")

        print("\nclient.stats():")
        for key, value in client.stats().as_dict().items():
            print(f"  {key:<24} {value}")

        print("\nclient.metrics() (Prometheus text):")
        for line in client.metrics().decode().splitlines():
            if not line.startswith("#"):
                print(f"  {line}")
    return 1 if failed else 0


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args()
    # Retries, breaker transitions and orphans are logged at INFO/WARNING by the "resilient_llm" logger.
    logging.basicConfig(format="%(asctime)s %(name)s %(levelname)s %(message)s", stream=sys.stdout)
    logging.getLogger("resilient_llm").setLevel(logging.INFO)
    async with contextlib.AsyncExitStack() as stack:
        base_url = args.base_url
        if base_url is None:
            config = SimulatorConfig(model=args.model, capacity=4, time_scale=0.05, fault_script=FAULTS)
            sim = await stack.enter_async_context(VLLMSimulator(config))
            base_url = sim.base_url
            print(f"serving a simulated vLLM at {base_url} (capacity 4, faults {', '.join(FAULTS)})")
        try:
            return await run(base_url, args.model)
        except OpenAIError as exc:
            print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
