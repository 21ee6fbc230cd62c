"""``resilient-llm probe URL [URL ...]``: is this vLLM server up, what does it serve, how loaded is it.

One pass asks ``/health``, ``/version``, ``/v1/models`` and ``/metrics`` (each with a short timeout, so an
unreachable or wedged server cannot hang the probe) and prints what it found; ``--watch`` repeats it in
a live table until Ctrl-C. Several URLs (the replicas of a client) are probed at once and shown one
row each. The exit status is meant for scripts and readiness checks (see ``EPILOG``).
The table (:mod:`._probe_view`) needs ``rich``, the ``cli`` extra; it is imported only to print.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import httpx

from resilient_llm._exceptions import ConfigError
from resilient_llm._load import ServerLoad
from resilient_llm._secrets import mask_url
from resilient_llm._vllm._metrics import (
    combine_engines,
    parse_metrics_by_engine,
    server_root_url,
)

from ._extras import EXIT_MISSING_EXTRA, require

if TYPE_CHECKING:
    from rich.console import Console

__all__ = ["ProbeReport", "add_parser", "check_extras", "exit_code", "probe", "probe_all", "run"]

DEFAULT_TIMEOUT = 2.0
DEFAULT_WATCH_INTERVAL = 2.0
# Saturation thresholds of llm-d's saturation detector: a queue of 5 or a KV cache 80 % full.
DEFAULT_MAX_WAITING = 5
DEFAULT_MAX_KV = 0.8
DEFAULT_LAG_CALLS = 8

EXIT_HEALTHY, EXIT_DOWN, EXIT_SATURATED = 0, 1, 2

EPILOG = f"""\
exit status:
  {EXIT_HEALTHY}  healthy: /health answered 200 and the server is not saturated
  {EXIT_DOWN}  down: connection refused or timed out, or /health did not answer 200
  {EXIT_SATURATED}  saturated: healthy, but waiting >= --max-waiting or KV cache usage >= --max-kv
     (summed over engines; KV is the mean over engines). Usage errors also exit 2, before any probe.
  {EXIT_MISSING_EXTRA}  rich is not installed: pip install "resilient-llm[cli]"
With several URLs, the worst of them: {EXIT_DOWN} if any is down, else {EXIT_SATURATED} if any is saturated.
With --watch the status is that of the last probe before Ctrl-C.

examples:
  resilient-llm probe http://127.0.0.1:8000/v1
  resilient-llm probe http://gpu-1:8000 --watch 1 --max-waiting 16
  resilient-llm probe http://127.0.0.1:8000/v1 --json | jq .total
  resilient-llm probe http://gpu-1:8000/v1 http://gpu-2:8000/v1 http://gpu-3:8000/v1 --watch
  resilient-llm probe http://127.0.0.1:8000/v1 --measure-lag 16
"""

Status = Literal["healthy", "down", "saturated"]

# Swapped out by tests; the watch loop's only sleep.
_sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeReport:
    """What one probe found. ``engines``/``total`` are ``None`` when ``/metrics`` gave no vLLM load."""

    url: str
    status: Status
    reasons: tuple[str, ...] = ()
    health: int | None = None
    version: str | None = None
    models: tuple[str, ...] = ()
    #: The ids of ``models`` (which are labels, with ``max_model_len`` when the server gives it).
    model_ids: tuple[str, ...] = ()
    engines: Mapping[str, ServerLoad] | None = None
    total: ServerLoad | None = None
    errors: Mapping[str, str] = field(default_factory=dict)
    elapsed: float = 0.0
    #: Local wall-clock time the probe started.
    at: datetime = field(default_factory=lambda: datetime.now().astimezone())

    @property
    def exit_code(self) -> int:
        return {"healthy": EXIT_HEALTHY, "down": EXIT_DOWN, "saturated": EXIT_SATURATED}[self.status]

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "status": self.status,
            "exit_code": self.exit_code,
            "reasons": list(self.reasons),
            "health": self.health,
            "version": self.version,
            "models": list(self.models),
            "engines": None
            if self.engines is None
            else {engine: _load_json(load) for engine, load in self.engines.items()},
            "total": None
            if self.total is None
            else {**_load_json(self.total), "engines": self.total.engines},
            "errors": dict(self.errors),
            "elapsed": round(self.elapsed, 4),
            "time": self.at.isoformat(timespec="seconds"),
        }


def probe(
    base_url: str,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    max_waiting: int = DEFAULT_MAX_WAITING,
    max_kv: float = DEFAULT_MAX_KV,
    client: httpx.Client | None = None,
) -> ProbeReport:
    """Probe the server behind ``base_url`` (with or without ``/v1``) once. Never raises for I/O errors.

    ``client`` (tests pass one with a ``MockTransport``) is used as is; otherwise one is made with
    ``timeout`` seconds for connect, read, write and pool each.
    """
    root = server_root_url(base_url)
    at = datetime.now().astimezone()
    started = time.perf_counter()
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(timeout), follow_redirects=False)
    errors: dict[str, str] = {}
    try:
        health = _get(http, f"{root}/health", "health", errors)
        if health is None:
            return ProbeReport(
                url=mask_url(base_url),
                status="down",
                reasons=(errors["health"],),
                errors=errors,
                elapsed=_since(started),
                at=at,
            )
        version = _version(_get(http, f"{root}/version", "version", errors), errors)
        cards = _model_cards(_get(http, f"{root}/v1/models", "models", errors), errors)
        metrics = _get(http, f"{root}/metrics", "metrics", errors)
    finally:
        if own:
            http.close()

    engines = total = None
    if metrics is not None and metrics.status_code == 200:
        engines = parse_metrics_by_engine(metrics.text, scraped_at=0.0)
        if engines is None:
            errors["metrics"] = "no vLLM request gauges in /metrics"
        else:
            total = combine_engines(engines, scraped_at=0.0)
    elif metrics is not None:
        errors["metrics"] = f"HTTP {metrics.status_code}"

    reasons: list[str] = []
    status: Status = "healthy"
    if health.status_code != 200:
        status = "down"
        reasons.append(f"/health answered {health.status_code}")
    elif total is not None:
        if total.waiting >= max_waiting:
            reasons.append(f"waiting {total.waiting} >= {max_waiting}")
        if total.kv_cache_usage is not None and total.kv_cache_usage >= max_kv:
            reasons.append(f"KV cache {total.kv_cache_usage:.1%} >= {max_kv:.0%}")
        if reasons:
            status = "saturated"
    return ProbeReport(
        url=mask_url(base_url),
        status=status,
        reasons=tuple(reasons),
        health=health.status_code,
        version=version,
        models=tuple(_model_label(card) for card in cards),
        model_ids=tuple(str(card["id"]) for card in cards),
        engines=engines,
        total=total,
        errors=errors,
        elapsed=_since(started),
        at=at,
    )


def probe_all(base_urls: Sequence[str], **options: Any) -> list[ProbeReport]:
    """:func:`probe` each of ``base_urls`` (the replicas of a client) at once; the reports in order."""
    if len(base_urls) == 1:
        return [probe(base_urls[0], **options)]
    with ThreadPoolExecutor(max_workers=min(16, len(base_urls))) as pool:
        return list(pool.map(lambda url: probe(url, **options), base_urls))


def exit_code(reports: Sequence[ProbeReport]) -> int:
    """The worst status of ``reports``: down if any is down, else saturated if any is, else healthy."""
    statuses = {report.status for report in reports}
    if "down" in statuses:
        return EXIT_DOWN
    return EXIT_SATURATED if "saturated" in statuses else EXIT_HEALTHY


def _get(http: httpx.Client, url: str, what: str, errors: dict[str, str]) -> httpx.Response | None:
    try:
        return http.get(url)
    except httpx.TimeoutException as exc:
        errors[what] = f"timed out ({type(exc).__name__})"
    except httpx.ConnectError as exc:
        errors[what] = f"cannot connect: {exc}" if str(exc) else "cannot connect"
    except httpx.HTTPError as exc:
        errors[what] = f"{type(exc).__name__}: {exc}"
    return None


def _version(response: httpx.Response | None, errors: dict[str, str]) -> str | None:
    if response is None:
        return None
    try:
        version = response.json()["version"] if response.status_code == 200 else None
    except (ValueError, KeyError, TypeError):
        version = None
    if version is None:
        errors.setdefault("version", f"HTTP {response.status_code}, no version")
        return None
    return str(version)


def _model_cards(response: httpx.Response | None, errors: dict[str, str]) -> tuple[Any, ...]:
    """The model cards of ``/v1/models`` (each with an ``id``); none, noted in ``errors``, when unreadable."""
    if response is None:
        return ()
    try:
        data = response.json()["data"] if response.status_code == 200 else None
        cards = tuple(data) if isinstance(data, list) else None
        if cards is not None and not all(isinstance(card, dict) and "id" in card for card in cards):
            cards = None
    except (ValueError, KeyError, TypeError):
        cards = None
    if cards is None:
        errors.setdefault("models", f"HTTP {response.status_code}, no model list")
        return ()
    return cards


def _model_label(card: Any) -> str:
    name = str(card["id"])
    max_len = card.get("max_model_len") if isinstance(card, dict) else None
    return f"{name} (max_model_len {max_len})" if max_len else name


def _since(started: float) -> float:
    return time.perf_counter() - started


def _load_json(load: ServerLoad) -> dict[str, Any]:
    return {"running": load.running, "waiting": load.waiting, "kv_cache_usage": load.kv_cache_usage}


# --- command line ------------------------------------------------------------------------------------


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "probe",
        help="check a vLLM server: health, version, models, queue depth and KV cache per engine",
        description=(
            "Probe a vLLM (or other OpenAI-compatible) server: /health, /version, /v1/models and\n"
            "the running/waiting/KV-cache gauges of /metrics, per engine and summed."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "urls",
        metavar="URL",
        nargs="+",
        type=_url,
        help="base URL, e.g. http://127.0.0.1:8000/v1 (/v1 optional); several: the replicas, one row each",
    )
    parser.add_argument(
        "--watch",
        nargs="?",
        const=DEFAULT_WATCH_INTERVAL,
        type=_positive("--watch"),
        metavar="SECONDS",
        help=f"probe again every SECONDS (default {DEFAULT_WATCH_INTERVAL:g}) in a live table until Ctrl-C",
    )
    parser.add_argument(
        "--timeout",
        type=_positive("--timeout"),
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help=f"seconds for each connect and each read (default {DEFAULT_TIMEOUT:g})",
    )
    parser.add_argument(
        "--max-waiting",
        type=_count("--max-waiting"),
        default=DEFAULT_MAX_WAITING,
        metavar="N",
        help=f"saturated when this many requests wait (default {DEFAULT_MAX_WAITING})",
    )
    parser.add_argument(
        "--max-kv",
        type=_fraction,
        default=DEFAULT_MAX_KV,
        metavar="F",
        help=f"saturated when KV cache usage reaches F, 0 < F <= 1 (default {DEFAULT_MAX_KV:g})",
    )
    parser.add_argument(
        "--measure-lag",
        nargs="?",
        const=DEFAULT_LAG_CALLS,
        type=_count("--measure-lag"),
        metavar="N",
        help="also send N short chat calls at once (default N: "
        f"{DEFAULT_LAG_CALLS}) and report the /metrics lag the library learns from them, and the "
        "orphan grace it sizes from it; puts load on the server (default off)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of the table: one object per probe, one line each with --watch (default off)",
    )
    return parser


def check_extras(args: argparse.Namespace) -> None:
    """The table needs ``rich``, from the ``cli`` extra."""
    require("probe", "cli", "rich")


def run(args: argparse.Namespace, *, console: Console | None = None) -> int:
    """Run ``probe`` with parsed ``args``; the exit status as documented in ``EPILOG``."""
    from rich.console import Console
    from rich.live import Live

    from ._probe_view import render

    out = console or Console()
    options = {"timeout": args.timeout, "max_waiting": args.max_waiting, "max_kv": args.max_kv}
    if args.watch is None:
        reports = probe_all(args.urls, **options)
        _emit(out, reports, as_json=args.json)
        if args.measure_lag:
            _emit_lag(out, reports, args.measure_lag, as_json=args.json)
        return exit_code(reports)
    if args.measure_lag:
        out.print("resilient-llm probe: --measure-lag is a one-off: leave out --watch", markup=False)
        return EXIT_SATURATED  # a usage error (documented: usage errors exit 2)

    code = EXIT_DOWN
    try:
        if args.json:
            while True:
                reports = probe_all(args.urls, **options)
                code = exit_code(reports)
                _emit(out, reports, as_json=True)
                _sleep(args.watch)
        with Live(console=out, auto_refresh=False) as live:
            while True:
                reports = probe_all(args.urls, **options)
                code = exit_code(reports)
                live.update(render(reports, every=args.watch), refresh=True)
                _sleep(args.watch)
    except KeyboardInterrupt:
        pass
    return code


def _emit_lag(out: Console, reports: Sequence[ProbeReport], calls: int, *, as_json: bool) -> None:
    """``--measure-lag``: a burst per healthy server with a model and vLLM metrics, and what it taught."""
    from ._probe_lag import measure_lag

    for report in reports:
        if report.status == "down" or not report.model_ids or report.total is None:
            why = "it is down" if report.status == "down" else "it lists no model or shows no vLLM /metrics"
            lag = {"url": report.url, "error": f"not measured: {why}"}
            out.print(
                json.dumps({"lag": lag}) if as_json else f"{report.url}: lag {lag['error']}", markup=False
            )
            continue
        measured = measure_lag(report.url, report.model_ids[0], calls=calls)
        text = json.dumps({"lag": measured.as_json()}) if as_json else measured.line()
        out.print(text, markup=False, highlight=False, soft_wrap=True)


def _emit(out: Console, reports: Sequence[ProbeReport], *, as_json: bool) -> None:
    """The reports as a table (one row per server when there are several), or one JSON line each."""
    from ._probe_view import render

    if as_json:
        for report in reports:
            out.print(json.dumps(report.as_json()), markup=False, highlight=False, soft_wrap=True)
    else:
        out.print(render(reports))


def _url(value: str) -> str:
    try:
        server_root_url(value)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _positive(flag: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = math.nan
        if not (math.isfinite(number) and number > 0):
            raise argparse.ArgumentTypeError(f"{flag} must be a positive number of seconds, got {value!r}")
        return number

    return parse


def _count(flag: str) -> Callable[[str], int]:
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = 0
        if number < 1:
            raise argparse.ArgumentTypeError(f"{flag} must be a whole number >= 1, got {value!r}")
        return number

    return parse


def _fraction(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not (0 < number <= 1):
        raise argparse.ArgumentTypeError(f"--max-kv must be a fraction with 0 < F <= 1, got {value!r}")
    return number
