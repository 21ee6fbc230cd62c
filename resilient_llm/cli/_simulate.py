"""``resilient-llm simulate``: serve the simulated vLLM until Ctrl-C or SIGTERM.

``--instant`` answers as fast as the server can (no prefill or token delay, 16-token answers, no
reasoning text): the setting for measuring a client's own overhead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from typing import Any

from resilient_llm._exceptions import ConfigError
from resilient_llm.testing import (
    LogNormalLength,
    SimulatedReplicas,
    SimulatorConfig,
    VLLMSimulator,
    parse_faults,
)

__all__ = ["add_parser", "config_from_args", "run"]

INSTANT_OUTPUT_TOKENS = 16


def _faults(text: str) -> dict[str, float]:
    try:
        return parse_faults(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _fault_script(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",")) if text.strip() else ()


def _output_tokens(text: str) -> int | LogNormalLength:
    """``N`` or ``lognormal:MEDIAN[:SIGMA[:MAX]]``."""
    try:
        if not text.startswith("lognormal:"):
            return int(text)
        numbers = text.removeprefix("lognormal:").split(":")
        if not 1 <= len(numbers) <= 3:
            raise ValueError
        median = int(numbers[0])
        sigma = float(numbers[1]) if len(numbers) > 1 else 1.0
        maximum = int(numbers[2]) if len(numbers) > 2 else max(32768, median)
        return LogNormalLength(median=median, sigma=sigma, maximum=maximum)
    except (ValueError, ConfigError):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not N or lognormal:MEDIAN[:SIGMA[:MAX]] (e.g. 256 or lognormal:400:1.0)"
        ) from None


def add_parser(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="serve a simulated vLLM (OpenAI-compatible) with faults",
        description="Serve a simulated vLLM server until Ctrl-C or SIGTERM. Durations are simulated "
        "seconds, multiplied by --time-scale.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--replicas", type=int, default=1, help="serve this many replicas on consecutive ports from --port"
    )
    parser.add_argument("--model", default=SimulatorConfig.model, help="served model name")
    parser.add_argument("--capacity", type=int, default=16, help="sequences running at once per engine")
    parser.add_argument("--engines", type=int, default=1, help="data-parallel engines (metric series)")
    parser.add_argument(
        "--faults", type=_faults, default={}, metavar="KIND=P,...", help="e.g. ghost=0.02,drop=0.01"
    )
    parser.add_argument(
        "--fault-script",
        type=_fault_script,
        default=(),
        metavar="KIND,...",
        help="faults of the first attempts",
    )
    parser.add_argument("--time-scale", type=float, default=1.0, help="0.01 runs 100x faster than real")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--token-time", type=float, help="seconds per token for one sequence alone")
    parser.add_argument(
        "--batch-slowdown", type=float, help="extra token time per additional running sequence"
    )
    parser.add_argument("--prefill-time-per-token", type=float)
    parser.add_argument(
        "--output-tokens", type=_output_tokens, help="answer length: N or lognormal:MEDIAN[:SIGMA[:MAX]]"
    )
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--kv-cache-tokens", type=int)
    parser.add_argument(
        "--max-queued", type=int, help="answer 503 when this many requests are running or waiting already"
    )
    parser.add_argument("--metrics-lag", type=float, help="seconds /metrics trails the engine by")
    parser.add_argument("--instant", action="store_true", help="no delays, short answers (benchmarks)")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])


def config_from_args(args: argparse.Namespace) -> SimulatorConfig:
    """The :class:`SimulatorConfig` the arguments describe (raises ``ConfigError``)."""
    options: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "model": args.model,
        "capacity": args.capacity,
        "engines": args.engines,
        "faults": args.faults,
        "fault_script": args.fault_script,
        "time_scale": args.time_scale,
        "seed": args.seed,
    }
    if args.instant:
        options.update(
            token_time=0.0,
            prefill_time_per_token=0.0,
            output_tokens=INSTANT_OUTPUT_TOKENS,
            reasoning_ratio=0.0,
        )
    for name in (
        "token_time",
        "batch_slowdown",
        "prefill_time_per_token",
        "output_tokens",
        "max_model_len",
        "kv_cache_tokens",
        "max_queued",
        "metrics_lag",
    ):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    return SimulatorConfig(**options)


async def _serve(config: SimulatorConfig, replicas: int = 1) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    if replicas > 1:
        async with SimulatedReplicas(config, replicas=replicas) as fleet:
            urls = " ".join(fleet.base_urls)
            print(
                f"Simulated vLLM serving {config.model!r} on {replicas} replicas: {urls} (Ctrl-C to stop)",
                flush=True,
            )
            await stop.wait()
            print(f"Stopped. peak_in_flight={fleet.peak_in_flight}", flush=True)
            for url, stats in zip(fleet.base_urls, fleet.stats(), strict=True):
                print(
                    f"  {url}: requests={stats.requests_received} completed={stats.requests_completed}",
                    flush=True,
                )
        return
    async with VLLMSimulator(config) as sim:
        print(f"Simulated vLLM serving {config.model!r} at {sim.base_url} (Ctrl-C to stop)", flush=True)
        await stop.wait()
        stats = sim.stats()
    print(
        f"Stopped. requests={stats.requests_received} completed={stats.requests_completed} "
        f"faults={stats.faults_injected} tokens_wasted={stats.tokens_wasted}",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        print(f"resilient-llm simulate: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if args.replicas < 1:
        print(f"resilient-llm simulate: error: --replicas must be >= 1, got {args.replicas}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, args.replicas))
    except OSError as exc:
        print(f"resilient-llm simulate: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
