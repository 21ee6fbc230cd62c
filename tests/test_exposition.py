from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from resilient_llm._exceptions import ConfigError
from resilient_llm._vllm._exposition import (
    BREAKER_STATES,
    CLIENT_METRICS_CONTENT_TYPE,
    ClientMetricsCollector,
    client_metrics_registry,
    render_client_metrics,
)

FULL_STATS: dict[str, float | int | str] = {
    "in_flight": 3,
    "queued": 5,
    "held_by_breaker": 2,
    "breaker_state": "open",
    "ramp_level": 0.25,
    "attempts": 40,
    "retries": 7,
    "retry_budget_available": 2.5,
    "deadlines_exceeded": 1,
    "stalls": 2,
    "orphans": 3,
    "circuit_open_rejections": 4,
    "calls_ok": 30,
    "calls_failed": 2,
}


def samples(body: bytes) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """(sample name, labels) -> value, through prometheus_client's own parser."""
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def types(body: bytes) -> dict[str, str]:
    return {f.name: f.type for f in text_string_to_metric_families(body.decode())}


NO_LABELS: frozenset[tuple[str, str]] = frozenset()


@pytest.mark.parametrize(
    ("sample", "labels", "value"),
    [
        ("resilient_llm_in_flight", {}, 3.0),
        ("resilient_llm_queued", {}, 5.0),
        ("resilient_llm_held_by_breaker", {}, 2.0),
        ("resilient_llm_ramp_level", {}, 0.25),
        ("resilient_llm_retry_budget_available", {}, 2.5),
        ("resilient_llm_breaker_state", {"state": "open"}, 1.0),
        ("resilient_llm_breaker_state", {"state": "closed"}, 0.0),
        ("resilient_llm_breaker_state", {"state": "half_open"}, 0.0),
        ("resilient_llm_attempts_total", {}, 40.0),
        ("resilient_llm_retries_total", {}, 7.0),
        ("resilient_llm_deadlines_exceeded_total", {}, 1.0),
        ("resilient_llm_stalls_total", {}, 2.0),
        ("resilient_llm_orphans_total", {}, 3.0),
        ("resilient_llm_circuit_open_rejections_total", {}, 4.0),
        ("resilient_llm_calls_total", {"outcome": "ok"}, 30.0),
        ("resilient_llm_calls_total", {"outcome": "failed"}, 2.0),
    ],
)
def test_each_stat_becomes_a_sample(sample: str, labels: dict[str, str], value: float) -> None:
    assert samples(render_client_metrics(FULL_STATS))[(sample, frozenset(labels.items()))] == value


def test_nothing_else_is_rendered() -> None:
    names = {name for name, _ in samples(render_client_metrics(FULL_STATS))}
    assert names == {
        "resilient_llm_in_flight",
        "resilient_llm_queued",
        "resilient_llm_held_by_breaker",
        "resilient_llm_breaker_state",
        "resilient_llm_ramp_level",
        "resilient_llm_retry_budget_available",
        "resilient_llm_attempts_total",
        "resilient_llm_retries_total",
        "resilient_llm_deadlines_exceeded_total",
        "resilient_llm_stalls_total",
        "resilient_llm_orphans_total",
        "resilient_llm_circuit_open_rejections_total",
        "resilient_llm_calls_total",
    }


def test_types() -> None:
    t = types(render_client_metrics(FULL_STATS))
    assert t["resilient_llm_in_flight"] == "gauge"
    assert t["resilient_llm_breaker_state"] == "gauge"
    assert t["resilient_llm_attempts"] == "counter"
    assert t["resilient_llm_calls"] == "counter"


def test_constant_labels_on_every_sample() -> None:
    got = samples(render_client_metrics(FULL_STATS, labels={"client": "arc", "server": "gpu-1"}))
    assert got
    for _, labels in got:
        assert ("client", "arc") in labels
        assert ("server", "gpu-1") in labels
    assert got[
        ("resilient_llm_calls_total", frozenset({("client", "arc"), ("server", "gpu-1"), ("outcome", "ok")}))
    ]


@pytest.mark.parametrize(
    ("state", "ones"),
    [
        ("closed", {"closed"}),
        ("half_open", {"half_open"}),
        ("half-open", {"half_open"}),
        ("Half Open", {"half_open"}),
        ("OPEN", {"open"}),
        ("saturated", {"saturated"}),  # an unknown state gets its own series, the known ones stay at 0
    ],
)
def test_breaker_state(state: str, ones: set[str]) -> None:
    got = samples(render_client_metrics({"breaker_state": state}))
    series = {dict(labels)["state"]: value for (name, labels), value in got.items()}
    assert {s for s, v in series.items() if v == 1.0} == ones
    assert set(BREAKER_STATES) <= set(series)
    assert sum(series.values()) == 1.0


def test_missing_keys_render_nothing() -> None:
    assert render_client_metrics({}) == b""
    got = samples(render_client_metrics({"calls_failed": 1}))
    assert got == {("resilient_llm_calls_total", frozenset({("outcome", "failed")})): 1.0}


def test_extras() -> None:
    got = samples(render_client_metrics({"capacity": 16, "budget_exhausted": 5, "metrics_available": True}))
    assert got == {
        ("resilient_llm_capacity", NO_LABELS): 16.0,
        ("resilient_llm_retry_budget_exhausted_total", NO_LABELS): 5.0,
        ("resilient_llm_server_metrics_available", NO_LABELS): 1.0,
    }


def test_unknown_keys_are_ignored_and_bad_values_skipped(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_llm.exposition")
    body = render_client_metrics({"in_flight": "three", "breaker_state": 1, "whatever": 9, "queued": 2})
    assert samples(body) == {("resilient_llm_queued", NO_LABELS): 2.0}
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "in_flight" in messages
    assert "breaker_state" in messages


@pytest.mark.parametrize(
    "labels",
    [{"state": "x"}, {"outcome": "x"}, {"1abc": "x"}, {"a-b": "x"}, {"__name": "x"}, {"": "x"}, {"ok": 3}],
)
def test_bad_labels(labels: dict[str, str]) -> None:
    with pytest.raises(ConfigError, match="labels"):
        render_client_metrics(FULL_STATS, labels=labels)


def test_registry_reads_the_source_on_every_scrape() -> None:
    stats: dict[str, float | int | str] = {"in_flight": 1}
    registry = client_metrics_registry(lambda: stats, labels={"client": "a"})
    assert samples(generate_latest(registry)) == {
        ("resilient_llm_in_flight", frozenset({("client", "a")})): 1.0
    }
    stats["in_flight"] = 7
    assert samples(generate_latest(registry)) == {
        ("resilient_llm_in_flight", frozenset({("client", "a")})): 7.0
    }


def test_two_clients_two_registries() -> None:
    a = client_metrics_registry(lambda: {"queued": 1}, labels={"client": "a"})
    b = client_metrics_registry(lambda: {"queued": 2}, labels={"client": "b"})
    assert b'client="a"' in generate_latest(a)
    assert b'client="a"' not in generate_latest(b)


def test_collector_validates_labels_at_construction() -> None:
    with pytest.raises(ConfigError, match="outcome"):
        ClientMetricsCollector(dict, labels={"outcome": "x"})


def test_content_type() -> None:
    assert CLIENT_METRICS_CONTENT_TYPE.startswith("text/plain; version=0.0.4")


def test_label_values_are_escaped() -> None:
    body = render_client_metrics({"queued": 1}, labels={"client": 'a "quoted"\nname'})
    assert samples(body) == {("resilient_llm_queued", frozenset({("client", 'a "quoted"\nname')})): 1.0}


@settings(max_examples=100, deadline=None)
@given(
    st.fixed_dictionaries(
        {},
        optional={
            key: st.integers(0, 10**9) | st.floats(0, 1e9) for key in FULL_STATS if key != "breaker_state"
        },
    )
)
def test_round_trip(stats: dict[str, float]) -> None:
    got = samples(render_client_metrics(stats))
    names = {
        "calls_ok": ("resilient_llm_calls_total", frozenset({("outcome", "ok")})),
        "calls_failed": ("resilient_llm_calls_total", frozenset({("outcome", "failed")})),
    }
    counters = {"attempts", "retries", "deadlines_exceeded", "stalls", "orphans", "circuit_open_rejections"}
    expected = {}
    for key, value in stats.items():
        if key in names:
            expected[names[key]] = float(value)
        else:
            name = f"resilient_llm_{key}_total" if key in counters else f"resilient_llm_{key}"
            expected[(name, NO_LABELS)] = float(value)
    assert got == pytest.approx(expected)
