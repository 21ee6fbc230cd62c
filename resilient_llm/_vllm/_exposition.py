"""The client's own state in Prometheus text format, beside vLLM's.

Dashboards that watch ``vllm:num_requests_waiting`` can watch the client that feeds it: how many calls
it holds in flight, queues, or keeps back behind the breaker, and how often it retried, stalled or
gave up. The statistics come as a flat mapping (``client.stats().as_dict()`` has this shape); a
:class:`ClientMetricsCollector` turns each read of it into metric families, one
:class:`~prometheus_client.CollectorRegistry` per client keeps clients apart, and
:func:`render_client_metrics` renders one mapping directly.

Stats keys and the metrics they become (every metric also carries the constant ``labels``)::

    key                      metric                                       type     meaning
    in_flight                resilient_llm_in_flight                      gauge    calls holding a slot
    queued                   resilient_llm_queued                         gauge    calls waiting for a slot
    held_by_breaker          resilient_llm_held_by_breaker                gauge    queued, held by the breaker
    breaker_state (str)      resilient_llm_breaker_state{state}           gauge    1 for the current state
    ramp_level               resilient_llm_ramp_level                     gauge    slow-start level, 0..1
    retry_budget_available   resilient_llm_retry_budget_available         gauge    retries allowed now
    attempts                 resilient_llm_attempts_total                 counter  requests sent
    retries                  resilient_llm_retries_total                  counter  attempts after the first
    deadlines_exceeded       resilient_llm_deadlines_exceeded_total       counter  calls out of time
    stalls                   resilient_llm_stalls_total                   counter  server went silent
    orphans                  resilient_llm_orphans_total                  counter  server forgot the request
    circuit_open_rejections  resilient_llm_circuit_open_rejections_total  counter  refused, breaker open
    calls_ok, calls_failed, calls_cancelled  resilient_llm_calls_total{outcome}  counter  finished calls by outcome

``breaker_state`` is lower-cased with spaces and dashes made underscores (``"half-open"`` →
``half_open``); ``closed``, ``open`` and ``half_open`` are always rendered (0 unless current) so alerts
can match on them, and any other state is added as its own series.

Optional extras, rendered when present: ``capacity`` (``resilient_llm_capacity``, gauge: calls allowed in
flight now), ``budget_exhausted`` (``resilient_llm_retry_budget_exhausted_total``, counter: retries
refused by the budget), ``hedges`` and ``hedges_won`` (``resilient_llm_hedges_total``,
``resilient_llm_hedges_won_total``, counters: hedged copies of slow answers sent, and used),
``metrics_available`` (``resilient_llm_server_metrics_available``, gauge 0/1:
whether the server's ``/metrics`` is being read), and what was learned from those metrics:
``server_capacity``, ``metrics_lag`` (``resilient_llm_server_metrics_lag_seconds``), ``metrics_leave_lag``
and ``orphan_grace`` (``resilient_llm_orphan_grace_seconds``). Missing keys produce no metric (absent, not zero);
values that are not numbers are skipped with a debug log; other keys are ignored.

Per replica (``replicas``: one mapping per server, as :class:`~resilient_llm._stats.ReplicaStats`
has them; one entry for a client of one server), each with the label ``replica`` (its base URL,
credentials masked)::

    in_flight, capacity, ramp_level    resilient_llm_replica_{in_flight,capacity,ramp_level}  gauge
    metrics_available                  resilient_llm_replica_server_metrics_available        gauge 0/1
    breaker_state                      resilient_llm_replica_breaker_state{replica,state}    gauge
    attempts, failures                 resilient_llm_replica_{attempts,failures}_total       counter

``coordination`` (``"shared"``, ``"local"``; nothing for ``"off"``) becomes
``resilient_llm_coordination_shared``, gauge: 1 while limits are shared through Redis, 0 while this
process is on its local fair share.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeAlias

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from resilient_llm._exceptions import ConfigError

__all__ = [
    "BREAKER_STATES",
    "CLIENT_METRICS_CONTENT_TYPE",
    "ClientMetricsCollector",
    "StatsMapping",
    "client_metrics_registry",
    "render_client_metrics",
]

logger = logging.getLogger("resilient_llm.exposition")

#: Content-Type of :func:`render_client_metrics`' output (Prometheus text format 0.0.4).
CLIENT_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

#: Always rendered in ``resilient_llm_breaker_state`` (0 unless current), so alerts can match on them.
BREAKER_STATES = ("closed", "open", "half_open")

#: What a stats source returns: ``client.stats().as_dict()`` fits.
StatsMapping: TypeAlias = Mapping[str, Any]

_PREFIX = "resilient_llm_"
_GAUGES = (
    ("in_flight", "in_flight", "Calls holding a concurrency slot."),
    ("queued", "queued", "Calls waiting for a concurrency slot."),
    ("held_by_breaker", "held_by_breaker", "Queued calls the circuit breaker keeps back."),
    ("ramp_level", "ramp_level", "Slow-start ramp level, 0..1 (1: full concurrency)."),
    ("retry_budget_available", "retry_budget_available", "Retries the retry budget allows to start now."),
    ("capacity", "capacity", "Calls allowed in flight right now."),
    ("metrics_available", "server_metrics_available", "1 while the server's /metrics is being read."),
    ("server_capacity", "server_capacity", "The server's batch capacity, once its /metrics showed it."),
    ("metrics_lag", "server_metrics_lag_seconds", "How long the server takes to count a new request."),
    ("metrics_leave_lag", "server_metrics_leave_lag_seconds", "How long a finished request stays counted."),
    ("orphan_grace", "orphan_grace_seconds", "The orphan rule's grace, sized from the learned lag."),
)
_COUNTERS = (
    ("attempts", "attempts", "Requests sent to the server, first attempts and retries."),
    ("retries", "retries", "Attempts after the first of a call."),
    ("deadlines_exceeded", "deadlines_exceeded", "Calls that ran out of their deadline."),
    ("stalls", "stalls", "Attempts aborted because the server went silent."),
    ("orphans", "orphans", "Attempts aborted because the server no longer knew them."),
    ("circuit_open_rejections", "circuit_open_rejections", "Calls refused because the breaker stayed open."),
    ("budget_exhausted", "retry_budget_exhausted", "Retries refused by the retry budget."),
    ("hedges", "hedges", "Hedged copies sent for answers far slower than the server's others."),
    ("hedges_won", "hedges_won", "Hedged copies whose answer was the one used."),
)
_OUTCOMES = (("calls_ok", "ok"), ("calls_failed", "failed"), ("calls_cancelled", "cancelled"))
_REPLICA_GAUGES = (
    ("in_flight", "replica_in_flight", "This client's calls in flight at the replica."),
    ("capacity", "replica_capacity", "Calls this client may have in flight at the replica now."),
    ("ramp_level", "replica_ramp_level", "The replica's slow-start ramp level, 0..1."),
    ("metrics_available", "replica_server_metrics_available", "1 while the replica's /metrics is read."),
)
_REPLICA_COUNTERS = (
    ("attempts", "replica_attempts", "Attempts sent to the replica."),
    ("failures", "replica_failures", "Attempts sent to the replica that failed."),
)
_RESERVED_LABELS = frozenset({"state", "outcome", "replica"})
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class ClientMetricsCollector:
    """A Prometheus collector reading ``source()`` (a stats mapping, see the module docstring) per scrape.

    ``labels`` are constant labels added to every metric (e.g. ``{"client": "arc", "server": "gpu-1"}``);
    names must be valid Prometheus label names other than ``state``, ``outcome`` and ``__*``, else
    :class:`ConfigError`.
    """

    def __init__(
        self, source: Callable[[], StatsMapping], *, labels: Mapping[str, str] | None = None
    ) -> None:
        self._source = source
        self._labels = _check_labels(labels)

    def collect(self) -> Iterator[Metric]:
        stats = self._source()
        names, values = list(self._labels), list(self._labels.values())
        for key, name, doc in _GAUGES:
            value = _number(stats, key)
            if value is not None:
                family = GaugeMetricFamily(_PREFIX + name, doc, labels=names)
                family.add_metric(values, value)
                yield family
        state = stats.get("breaker_state")
        if isinstance(state, str) and state:
            current = _state_label(state)
            family = GaugeMetricFamily(
                _PREFIX + "breaker_state",
                "Circuit breaker state: 1 for the current one.",
                labels=[*names, "state"],
            )
            states = BREAKER_STATES if current in BREAKER_STATES else (*BREAKER_STATES, current)
            for s in states:
                family.add_metric([*values, s], 1.0 if s == current else 0.0)
            yield family
        elif state is not None:
            logger.debug("breaker_state is not a non-empty string: %r", state)
        for key, name, doc in _COUNTERS:
            value = _number(stats, key)
            if value is not None:
                counter = CounterMetricFamily(_PREFIX + name, doc, labels=names)
                counter.add_metric(values, value)
                yield counter
        outcomes = [(label, _number(stats, key)) for key, label in _OUTCOMES]
        if any(value is not None for _, value in outcomes):
            calls = CounterMetricFamily(
                _PREFIX + "calls", "Finished calls by outcome.", labels=[*names, "outcome"]
            )
            for label, value in outcomes:
                if value is not None:
                    calls.add_metric([*values, label], value)
            yield calls
        coordination = stats.get("coordination")
        if coordination in ("shared", "local"):
            family = GaugeMetricFamily(
                _PREFIX + "coordination_shared",
                "1 while limits are shared with other processes through Redis, 0 on local limits.",
                labels=names,
            )
            family.add_metric(values, 1.0 if coordination == "shared" else 0.0)
            yield family
        replicas = stats.get("replicas")
        if isinstance(replicas, Sequence) and replicas:
            yield from _replica_families(replicas, names, values)


def _replica_families(replicas: Sequence[Any], names: list[str], values: list[str]) -> Iterator[Metric]:
    rows = [r for r in replicas if isinstance(r, Mapping) and isinstance(r.get("url"), str)]
    labels = [*names, "replica"]
    for key, name, doc in _REPLICA_GAUGES:
        family = GaugeMetricFamily(_PREFIX + name, doc, labels=labels)
        for row in rows:
            value = _number(row, key)
            if value is not None:
                family.add_metric([*values, row["url"]], value)
        yield family
    for key, name, doc in _REPLICA_COUNTERS:
        counter = CounterMetricFamily(_PREFIX + name, doc, labels=labels)
        for row in rows:
            value = _number(row, key)
            if value is not None:
                counter.add_metric([*values, row["url"]], value)
        yield counter
    states = GaugeMetricFamily(
        _PREFIX + "replica_breaker_state",
        "The replica's circuit breaker state: 1 for the current one.",
        labels=[*labels, "state"],
    )
    for row in rows:
        state = row.get("breaker_state")
        if not isinstance(state, str) or not state:
            continue
        current = _state_label(state)
        for s in BREAKER_STATES if current in BREAKER_STATES else (*BREAKER_STATES, current):
            states.add_metric([*values, row["url"], s], 1.0 if s == current else 0.0)
    yield states


def client_metrics_registry(
    source: Callable[[], StatsMapping], *, labels: Mapping[str, str] | None = None
) -> CollectorRegistry:
    """A fresh registry holding one :class:`ClientMetricsCollector`; serve it with ``generate_latest``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClientMetricsCollector(source, labels=labels))
    return registry


def render_client_metrics(stats: StatsMapping, *, labels: Mapping[str, str] | None = None) -> bytes:
    """``stats`` (see the module docstring) as Prometheus text, UTF-8; serve it with
    ``Content-Type: CLIENT_METRICS_CONTENT_TYPE``.
    """
    snapshot = dict(stats)
    out: bytes = generate_latest(client_metrics_registry(lambda: snapshot, labels=labels))
    return out


def _check_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    checked: dict[str, str] = {}
    for name, value in (labels or {}).items():
        if not isinstance(name, str) or not _LABEL_NAME.fullmatch(name) or name.startswith("__"):
            raise ConfigError(f"labels: {name!r} is not a valid Prometheus label name")
        if name in _RESERVED_LABELS:
            raise ConfigError(f"labels: {name!r} is used by the client metrics themselves")
        if not isinstance(value, str):
            raise ConfigError(f"labels: the value of {name!r} must be a str, got {value!r}")
        checked[name] = value
    return checked


def _number(stats: StatsMapping, key: str) -> float | None:
    value = stats.get(key)
    if value is None:
        return None
    if isinstance(value, (int, float)):  # bool is an int: True renders as 1
        return float(value)
    logger.debug("stats[%r] is not a number: %r", key, value)
    return None


def _state_label(state: str) -> str:
    """``"half-open"``, ``"Half Open"`` → ``"half_open"``."""
    return re.sub(r"[\s-]+", "_", state.strip().lower())
