"""The library's own CPU cost per call, without the network: an in-process transport answers at once.

``bench_overhead.py`` measures whole clients against a real server over loopback, so its figures move
with the machine (aiohttp's own rate varies twofold between runs on a shared 2-core machine). This one
replaces the library's HTTP transport with one in the same process that answers every request with the
stub server's streamed answer (one loop turn for the headers, one for the body), so what is left is the
library's own path: the resource's ``create``, the engine (deadline, limiter, breaker, budget), the
attempt (silence limit, orphan registration, hedging pace), SSE parsing, reassembly and openai's
``ChatCompletion``. The figure is CPU time per call (``time.process_time``), the median of ``--rounds``.

``--gc`` shows what Python's garbage collector adds: ``default`` (as a user runs it), ``off``
(``gc.disable()``: the library's cost without it) and ``freeze`` (``gc.freeze()`` after the warm-up:
the objects of the imported modules are left out of full collections, which then walk only what the
calls allocate; an application can do this itself after its imports).

    python benchmarks/bench_own_cost.py                          # 256 concurrent, every --gc mode
    python benchmarks/bench_own_cost.py --concurrency 8 --gc default
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._clients import API_KEY, request_body
from benchmarks._machine import REPO_ROOT, command_line, describe, machine_info, write_results
from benchmarks._stub_server import split_content, stream_events

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "own-cost.json"
GC_MODES = ("default", "off", "freeze")
ANSWER = "The grid is rotated by ninety degrees."
_SSE_HEADERS: Mapping[str, str] = {"content-type": "text/event-stream; charset=utf-8"}


def answer_body() -> bytes:
    """The stub server's streamed answer (role chunk, four content chunks, usage, ``[DONE]``)."""
    parts = split_content(ANSWER, 4)
    events = stream_events(request_id="chatcmpl-bench", created=1, parts=parts, include_usage=True)
    return b"".join(events)


class InstantResponse:
    """A streamed 200 whose whole body arrives in one read, a loop turn after it is asked for."""

    __slots__ = ("_body",)
    status = 200
    headers = _SSE_HEADERS

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def read_some(self) -> bytes:
        body, self._body = self._body, b""
        if body:
            await asyncio.sleep(0)
        return body

    async def read(self) -> bytes:
        return await self.read_some()

    async def release(self) -> None:
        return None

    async def aclose(self) -> None:
        return None

    def close(self) -> None:
        return None


class InstantTransport:
    """The library's transport interface, answering every request with :func:`answer_body`."""

    def __init__(self) -> None:
        self.requests = 0
        self._body = answer_body()

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str],
        content: bytes | None,
        connect_timeout: float | None,
    ) -> InstantResponse:
        self.requests += 1
        await asyncio.sleep(0)
        return InstantResponse(self._body)

    async def aclose(self) -> None:
        return None


async def measure(concurrency: int, calls: int, rounds: int, mode: str) -> list[float]:
    """CPU microseconds per call, one figure per round, through a fresh client on the instant transport."""
    import resilient_llm

    client = resilient_llm.AsyncOpenAI(
        api_key=API_KEY, base_url="http://127.0.0.1:9/v1", max_concurrency=max(1024, concurrency), ramp_up=0
    )
    transport = InstantTransport()
    client._engine._transport = transport  # the engine's transport slot: the library's own seam
    body = request_body()
    per_worker = max(1, calls // concurrency)

    async def worker(n: int) -> None:
        for _ in range(n):
            completion = await client.chat.completions.create(**body)
            if completion.choices[0].message.content != ANSWER:
                raise AssertionError(f"unexpected answer: {completion!r}")

    async def one_round(n: int) -> float:
        started = time.process_time()
        await asyncio.gather(*(worker(n) for _ in range(concurrency)))
        return (time.process_time() - started) / (n * concurrency) * 1e6

    try:
        await one_round(max(1, per_worker // 4))  # warm-up: caches, the monitor's first look
        if mode == "freeze":
            gc.collect()
            gc.freeze()
        elif mode == "off":
            gc.disable()
        return [await one_round(per_worker) for _ in range(rounds)]
    finally:
        gc.enable()
        gc.unfreeze()
        await client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="The library's own CPU cost per call, on an in-process transport that answers at once.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--concurrency", type=int, default=256, help="calls in flight")
    parser.add_argument("--calls", type=int, default=20_000, help="calls per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds per mode")
    parser.add_argument(
        "--gc", nargs="+", choices=GC_MODES, default=list(GC_MODES), help="garbage collector modes"
    )
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    for name in ("concurrency", "calls", "rounds"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1")
    info = machine_info()
    command = command_line(None if argv is None else [sys.argv[0], *argv])
    print(describe(info, command))
    results: dict[str, Any] = {}
    for mode in args.gc:
        figures = asyncio.run(measure(args.concurrency, args.calls, args.rounds, mode))
        median = statistics.median(figures)
        results[mode] = {"median_us": median, "rounds_us": figures}
        shown = ", ".join(f"{f:.0f}" for f in figures)
        print(f"gc {mode:8s} {median:7.1f} us per call (rounds: {shown})", flush=True)
    document = {
        "benchmark": "own_cost",
        "command": command,
        "machine": info,
        "concurrency": args.concurrency,
        "calls_per_round": args.calls,
        "results": results,
    }
    write_results(args.output, document)
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
