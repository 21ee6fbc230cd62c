"""Reading vLLM's ``/metrics``: where it lives and what it says about load.

vLLM exports Prometheus text with one series per engine (label ``engine``; data-parallel servers run
several engines behind one API server) and the served model in ``model_name``. Three gauges describe load:

- ``vllm:num_requests_running``: requests in the running batch;
- ``vllm:num_requests_waiting``: requests queued for scheduling (the queue is unbounded by default);
- ``vllm:kv_cache_usage_perc`` (0..1), named ``vllm:gpu_cache_usage_perc`` by older servers.

Running and waiting counts are summed over engines. KV-cache usage is the **mean** over engines: the
engines of one server hold identically sized caches, so the mean is exactly the pooled fraction of KV
blocks in use, the same "one server, one pool" view as the summed counts; and the server's load
balancer places a new request on a less loaded engine, so the hottest engine alone is not what the
next request meets. Per-engine values stay available through :func:`parse_metrics_by_engine`.

Parsing is done by ``prometheus_client.parser``. A loaded vLLM scrape is ~600 lines, mostly histogram
buckets, and a full parse costs ~9 ms; the scraper runs about twice a second, so the text is first
narrowed to the lines of the three gauge families (a prefix test per line), which brings a parse of
the loaded sample to ~0.2 ms. Lines of other families are never parsed, so damage elsewhere in the
text does not matter.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

from prometheus_client.parser import text_string_to_metric_families

from resilient_llm._exceptions import ConfigError
from resilient_llm._load import ServerLoad
from resilient_llm._secrets import mask_url

__all__ = [
    "KV_CACHE_USAGE_METRICS",
    "NO_ENGINE_LABEL",
    "RUNNING_METRIC",
    "WAITING_METRIC",
    "combine_engines",
    "metrics_url",
    "parse_metrics",
    "parse_metrics_by_engine",
    "server_root_url",
]

logger = logging.getLogger("resilient_llm.vllm")

RUNNING_METRIC = "vllm:num_requests_running"
WAITING_METRIC = "vllm:num_requests_waiting"
#: Current name first; the older one is read only when the current one is absent.
KV_CACHE_USAGE_METRICS = ("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc")

#: A counter: requests preempted back to the queue. Its samples are ``..._total``; depending on how
#: the exposition names the family, the parser reports it under either name.
PREEMPTIONS_METRIC = "vllm:num_preemptions"
_PREEMPTIONS_TOTAL = f"{PREEMPTIONS_METRIC}_total"

_GAUGES = (RUNNING_METRIC, WAITING_METRIC, *KV_CACHE_USAGE_METRICS)
#: family name as parsed → (the name it is read as, the sample name that carries its value)
_READ_AS = {name: (name, name) for name in _GAUGES} | {
    PREEMPTIONS_METRIC: (PREEMPTIONS_METRIC, _PREEMPTIONS_TOTAL),
    _PREEMPTIONS_TOTAL: (PREEMPTIONS_METRIC, _PREEMPTIONS_TOTAL),
}
# Sample lines start with the name followed by ``{`` or a space; metadata lines with ``# HELP name`` or
# ``# TYPE name``. An exact-name prefix keeps e.g. ``vllm:num_requests_waiting_by_reason`` out.
_LINE_PREFIXES = tuple(
    prefix for name in _READ_AS for prefix in (f"{name}{{", f"{name} ", f"# HELP {name} ", f"# TYPE {name} ")
)

#: Engine key for series that carry no ``engine`` label (servers that run one engine and say nothing).
NO_ENGINE_LABEL = ""


def server_root_url(base_url: str) -> str:
    """The server's root for a client base URL: a trailing ``/v1`` (and slashes) removed.

    ``http://h:8000/v1`` → ``http://h:8000``; ``http://h/proxy/v1/`` → ``http://h/proxy``. Query and
    fragment are dropped. Raises :class:`ConfigError` unless the URL is http(s) with a host.
    """
    try:
        parts = urlsplit(base_url.strip())
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        raise ConfigError(f"base_url must be an http(s) URL with a host, got {mask_url(base_url)!r}")
    path = parts.path.rstrip("/")
    if path.endswith("/v1"):
        path = path[: -len("/v1")]
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def metrics_url(base_url: str) -> str:
    """Where the server behind ``base_url`` serves ``/metrics``: beside ``/v1``, under any path prefix.

    ``http://h:8000/v1`` → ``http://h:8000/metrics``; ``http://h/proxy/v1`` → ``http://h/proxy/metrics``.
    """
    return server_root_url(base_url) + "/metrics"


def parse_metrics(text: str, *, scraped_at: float, requested_at: float | None = None) -> ServerLoad | None:
    """The server's load from ``/metrics`` text, summed over engines; ``None`` if it says nothing.

    ``None`` when the text has no ``vllm:num_requests_running`` and ``vllm:num_requests_waiting``
    families (some other server's ``/metrics``, or not Prometheus text at all) or when those families
    are malformed; the reason is logged at debug level. Never raises on bad text. ``engines`` counts
    distinct ``engine`` label values (1 when unlabelled); ``kv_cache_usage`` is the mean over engines
    that report it (see the module docstring), ``None`` when none does. ``scraped_at``: when the
    response arrived; ``requested_at``: when the scrape was sent (:class:`ServerLoad`).
    """
    per_engine = parse_metrics_by_engine(text, scraped_at=scraped_at)
    if per_engine is None:
        return None
    return combine_engines(per_engine, scraped_at=scraped_at, requested_at=requested_at)


def combine_engines(
    per_engine: Mapping[str, ServerLoad], *, scraped_at: float, requested_at: float | None = None
) -> ServerLoad:
    """One server-wide load: running and waiting summed, KV usage the mean of the engines reporting it."""
    loads = per_engine.values()
    kv = [load.kv_cache_usage for load in loads if load.kv_cache_usage is not None]
    preempted = [load.preemptions for load in loads if load.preemptions is not None]
    return ServerLoad(
        running=sum(load.running for load in loads),
        waiting=sum(load.waiting for load in loads),
        kv_cache_usage=math.fsum(kv) / len(kv) if kv else None,
        engines=sum(load.engines for load in loads),
        scraped_at=scraped_at,
        preemptions=sum(preempted) if preempted else None,
        requested_at=requested_at,
    )


def parse_metrics_by_engine(text: str, *, scraped_at: float) -> dict[str, ServerLoad] | None:
    """Like :func:`parse_metrics`, one :class:`ServerLoad` (``engines=1``) per engine label value.

    Keys are the ``engine`` label values in order of first appearance; series without the label are
    keyed :data:`NO_ENGINE_LABEL` (``""``). Series for several ``model_name`` values add up.
    """
    try:
        gauges = _read_gauges(_relevant_lines(text))
    except Exception as exc:  # the parser raises ValueError, IndexError, ... on damaged text
        logger.debug("unreadable /metrics text (%s: %s)", type(exc).__name__, exc)
        return None
    if RUNNING_METRIC not in gauges or WAITING_METRIC not in gauges:
        logger.debug("no vLLM request gauges in /metrics text; not a vLLM server?")
        return None
    kv_name = next((name for name in KV_CACHE_USAGE_METRICS if name in gauges), None)
    kv_by_engine = gauges[kv_name] if kv_name is not None else {}
    preempted_by_engine = gauges.get(PREEMPTIONS_METRIC, {})

    engines: list[str] = []
    for name in (RUNNING_METRIC, WAITING_METRIC):
        engines.extend(engine for engine in gauges[name] if engine not in engines)
    loads: dict[str, ServerLoad] = {}
    for engine in engines:
        running = gauges[RUNNING_METRIC].get(engine, 0.0)
        waiting = gauges[WAITING_METRIC].get(engine, 0.0)
        if not (_is_count(running) and _is_count(waiting)):
            logger.debug("bad request gauges for engine %r: running=%r waiting=%r", engine, running, waiting)
            return None
        kv = kv_by_engine.get(engine)
        preempted = preempted_by_engine.get(engine)
        loads[engine] = ServerLoad(
            running=round(running),
            waiting=round(waiting),
            kv_cache_usage=kv if kv is not None and math.isfinite(kv) and kv >= 0 else None,
            engines=1,
            scraped_at=scraped_at,
            preemptions=round(preempted) if preempted is not None and _is_count(preempted) else None,
        )
    return loads


def _relevant_lines(text: str) -> str:
    """The lines of the gauge families we read, in order; everything else is dropped unparsed."""
    return "\n".join(line for line in text.splitlines() if line.startswith(_LINE_PREFIXES)) + "\n"


def _read_gauges(text: str) -> dict[str, dict[str, float]]:
    """family name → engine → value summed over the family's other labels (e.g. ``model_name``).

    The preemptions counter is read too, under :data:`PREEMPTIONS_METRIC`."""
    gauges: dict[str, dict[str, float]] = {}
    for family in text_string_to_metric_families(text):
        read_as = _READ_AS.get(family.name)
        if read_as is None:
            continue
        name, wanted = read_as
        by_engine = gauges.setdefault(name, {})
        for sample in family.samples:
            if sample.name != wanted:
                continue
            engine = sample.labels.get("engine", NO_ENGINE_LABEL)
            by_engine[engine] = by_engine.get(engine, 0.0) + float(sample.value)
    return gauges


def _is_count(value: float) -> bool:
    return math.isfinite(value) and value >= 0
