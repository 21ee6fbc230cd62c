"""``resilient-llm simulate``: serve the simulated vLLM until Ctrl-C or SIGTERM.

It prints one line once it listens (address, capacity, time scale, faults) and one when it stops;
``--log-requests`` adds a line per request. ``--help`` shows every default and lists the fault kinds.

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
    FAULT_KINDS,
    LogNormalLength,
    ReplicaFaults,
    SimulatedReplicas,
    SimulatorConfig,
    VLLMSimulator,
    parse_faults,
)
from resilient_llm.testing._request_log import REQUEST_LOGGER

__all__ = ["FAULT_HELP", "add_parser", "check_extras", "config_from_args", "run"]

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


_DEFAULTS = SimulatorConfig()
DEFAULT_PORT = 8000

#: One line per fault kind for ``simulate --help`` (docs/reference/testing.md has the long form).
FAULT_HELP: dict[str, str] = {
    "lost": "never reaches the engine: no answer, ever",
    "ghost": "generated but never sent; the server forgets it",
    "drop": "the connection drops at the answer's midpoint",
    "503": "refused at once, no Retry-After (--max-num-queued-reqs)",
    "429": "refused with Retry-After",
    "500": "an internal error at once",
    "truncated": "the body is cut in half (a stream ends without [DONE])",
    "error_chunk": "an error event mid-stream (500 without streaming)",
    "slow": f"tokens come {_DEFAULTS.slow_factor:g} times slower",
    "restart": f"down for {_DEFAULTS.restart_down_for:g} simulated seconds, comes back empty",
    "metrics_missing": "that /metrics scrape answers 404 (drawn per scrape)",
    "metrics_frozen": "that /metrics scrape repeats old values (per scrape)",
}


def _epilog() -> str:
    width = max(len(kind) for kind in FAULT_KINDS)
    kinds = "\n".join(f"  {kind:<{width}}  {FAULT_HELP.get(kind, '')}".rstrip() for kind in FAULT_KINDS)
    return (
        f"fault kinds (--faults KIND=P,..., --fault-script KIND,...):\n{kinds}\n\n"
        "examples:\n"
        "  resilient-llm simulate --port 8000\n"
        "  resilient-llm simulate --faults ghost=0.05,lost=0.02,drop=0.02 --time-scale 0.05\n"
        "  resilient-llm simulate --output-tokens lognormal:350:0.9:4000 --max-queued 64 --log-requests\n"
        "  resilient-llm simulate --replicas 3 --replica 1:die_at=60 --replica 2:slowdown=2,drain_at=120"
    )


def add_parser(subparsers: Any) -> None:
    d = _DEFAULTS
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "simulate",
        help="serve a simulated vLLM (OpenAI-compatible) with faults",
        description="Serve a simulated vLLM server until Ctrl-C or SIGTERM. Durations are simulated\n"
        "seconds, multiplied by --time-scale.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--host", default=d.host, help=f"address to listen on (default {d.host})")
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, metavar="N", help=f"port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--replicas",
        type=int,
        default=1,
        metavar="N",
        help="serve N replicas on consecutive ports from --port (default 1)",
    )
    parser.add_argument(
        "--replica",
        action="append",
        default=[],
        metavar="I:KEY=V,...",
        help="what happens to replica I (0 is the one on --port): slowdown=F (F times slower), "
        "die_at=S (refuses connections from S simulated seconds on, its requests lost), drain_at=S "
        "(503 to new requests from S on); repeat for several replicas (default: none)",
    )
    parser.add_argument(
        "--model", default=d.model, metavar="NAME", help=f"served model name (default {d.model})"
    )
    parser.add_argument(
        "--capacity",
        type=int,
        default=d.capacity,
        metavar="N",
        help=f"sequences running at once per engine (default {d.capacity})",
    )
    parser.add_argument(
        "--engines",
        type=int,
        default=d.engines,
        metavar="N",
        help=f"data-parallel engines, one metric series each (default {d.engines})",
    )
    parser.add_argument(
        "--faults",
        type=_faults,
        default={},
        metavar="KIND=P,...",
        help="probability of each fault per attempt, e.g. ghost=0.02,drop=0.01 (default none)",
    )
    parser.add_argument(
        "--fault-script",
        type=_fault_script,
        default=(),
        metavar="KIND,...",
        help="the faults of the first attempts, in order; 'none' for a clean one (default none)",
    )
    parser.add_argument(
        "--time-scale",
        type=float,
        default=d.time_scale,
        metavar="F",
        help=f"real seconds per simulated second: 0.01 runs 100x faster than real (default {d.time_scale:g})",
    )
    parser.add_argument(
        "--seed", type=int, default=d.seed, metavar="N", help=f"random seed (default {d.seed})"
    )
    parser.add_argument(
        "--token-time",
        type=float,
        metavar="SECONDS",
        help=f"seconds per token for one sequence alone (default {d.token_time:g}; 0 with --instant)",
    )
    parser.add_argument(
        "--batch-slowdown",
        type=float,
        metavar="F",
        help=f"extra token time per additional running sequence (default {d.batch_slowdown:g})",
    )
    parser.add_argument(
        "--prefill-time-per-token",
        type=float,
        metavar="SECONDS",
        help=f"prefill seconds per prompt token (default {d.prefill_time_per_token:g}; 0 with --instant)",
    )
    parser.add_argument(
        "--output-tokens",
        type=_output_tokens,
        metavar="N|lognormal:MEDIAN[:SIGMA[:MAX]]",
        help=f"answer length (default {d.output_tokens}; {INSTANT_OUTPUT_TOKENS} with --instant)",
    )
    parser.add_argument(
        "--max-model-len",
        type=int,
        metavar="N",
        help=f"longest prompt + answer in tokens (default {d.max_model_len})",
    )
    parser.add_argument(
        "--kv-cache-tokens",
        type=int,
        metavar="N",
        help=f"KV cache per engine, in tokens (default {d.kv_cache_tokens})",
    )
    parser.add_argument(
        "--max-queued",
        type=int,
        metavar="N",
        help="answer 503 when this many requests are running or waiting already (default: no limit)",
    )
    parser.add_argument(
        "--metrics-lag",
        type=float,
        metavar="SECONDS",
        help=f"how far /metrics trails the engine (default {d.metrics_lag:g})",
    )
    parser.add_argument(
        "--metrics-lag-mode",
        choices=("snapshot", "arrivals", "steps"),
        default=None,
        help="how it trails: snapshot (the whole /metrics is that old), arrivals (new requests are "
        "counted that late, finished ones leave at once) or steps (as vLLM: counted at the end of the "
        f"engine step that first sees them, longer for a burst) (default {d.metrics_lag_mode})",
    )
    parser.add_argument(
        "--instant", action="store_true", help="no delays and 16-token answers, for benchmarks (default off)"
    )
    parser.add_argument(
        "--log-requests",
        action="store_true",
        help="log one line per request when it ends, and each fault as it is drawn (default off)",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="the simulator's log level (default INFO)",
    )


def check_extras(args: argparse.Namespace) -> None:
    """``simulate`` needs nothing beyond the core install."""


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
        "log_requests": args.log_requests,
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
        "metrics_lag_mode",
    ):
        value = getattr(args, name)
        if value is not None:
            options[name] = value
    return SimulatorConfig(**options)


class _FaultsAndLevel(logging.Filter):
    """With ``--log-requests``: the simulator's records at the chosen level, plus its DEBUG line per
    attempt that drew a fault (``attempt 7: fault ghost``)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= self.level or str(record.msg).startswith("attempt ")


def startup_line(config: SimulatorConfig, base_url: str) -> str:
    """The one line ``simulate`` prints once it is listening: where, how to stop, what differs."""
    parts = [] if config.model == _DEFAULTS.model else [f"model {config.model}"]
    parts.append(
        f"capacity {config.capacity}" + (f" x {config.engines} engines" if config.engines > 1 else "")
    )
    if config.time_scale != 1:
        parts.append(f"time scale {config.time_scale:g}")
    faults = ",".join(f"{kind}={p:g}" for kind, p in config.faults.items())
    parts.append(f"faults {faults}" if faults else "no faults")
    return f"Simulated vLLM at {base_url} (Ctrl-C to stop): {', '.join(parts)}"


_REPLICA_KEYS = ("slowdown", "die_at", "drain_at")


def replica_faults(specs: list[str], replicas: int) -> dict[int, ReplicaFaults]:
    """``--replica I:KEY=V,...`` options as :class:`ReplicaFaults` by replica index.

    Raises :class:`ConfigError` naming the option and what is wrong with it.
    """
    plan: dict[int, ReplicaFaults] = {}
    for spec in specs:
        index_text, sep, settings = spec.partition(":")
        try:
            index = int(index_text)
        except ValueError:
            index = -1
        if not sep or not 0 <= index < replicas:
            raise ConfigError(
                f"--replica must be I:KEY=VALUE,... with I a replica index in 0..{replicas - 1}, got {spec!r}"
            )
        if index in plan:
            raise ConfigError(f"--replica {index} is given twice; put its settings in one option")
        values: dict[str, float] = {}
        for item in settings.split(","):
            key, eq, value = item.strip().partition("=")
            if key not in _REPLICA_KEYS or not eq:
                raise ConfigError(
                    f"--replica {index}: each setting must be KEY=VALUE with KEY one of "
                    f"{', '.join(_REPLICA_KEYS)}, got {item.strip()!r}"
                )
            try:
                values[key] = float(value)
            except ValueError:
                raise ConfigError(f"--replica {index}: {key} must be a number, got {value!r}") from None
        plan[index] = ReplicaFaults(**values)  # type: ignore[arg-type]
    return plan


async def _serve(
    config: SimulatorConfig, replicas: int = 1, plan: dict[int, ReplicaFaults] | None = None
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # not on Windows
            loop.add_signal_handler(sig, stop.set)
    if replicas > 1 or plan:
        async with SimulatedReplicas(config, replicas=replicas, faults=plan) as fleet:
            print(startup_line(config, " ".join(fleet.base_urls)), flush=True)
            await stop.wait()
            print(f"Stopped. peak_in_flight={fleet.peak_in_flight}", flush=True)
            for url, stats in zip(fleet.base_urls, fleet.stats(), strict=True):
                print(
                    f"  {url}: requests={stats.requests_received} completed={stats.requests_completed}",
                    flush=True,
                )
        return
    async with VLLMSimulator(config) as sim:
        print(startup_line(config, sim.base_url), flush=True)
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
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S"
    )
    if args.log_requests:
        REQUEST_LOGGER.setLevel(logging.INFO)
        simulator_log = logging.getLogger("resilient_llm.testing")
        simulator_log.setLevel(logging.DEBUG)
        simulator_log.addFilter(_FaultsAndLevel(logging.getLevelName(args.log_level)))
    if args.replicas < 1:
        print(f"resilient-llm simulate: error: --replicas must be >= 1, got {args.replicas}", file=sys.stderr)
        return 2
    try:
        plan = replica_faults(args.replica, args.replicas)
    except ConfigError as exc:
        print(f"resilient-llm simulate: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(config, args.replicas, plan))
    except OSError as exc:
        print(f"resilient-llm simulate: cannot serve on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1
    return 0
