from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from resilient_llm._exceptions import ConfigError
from resilient_llm._load import ServerLoad
from resilient_llm._vllm._metrics import (
    NO_ENGINE_LABEL,
    metrics_url,
    parse_metrics,
    parse_metrics_by_engine,
    server_root_url,
)

FIXTURES = Path(__file__).parent / "fixtures"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://h:8000/v1", "http://h:8000/metrics"),
        ("http://h:8000/v1/", "http://h:8000/metrics"),
        ("http://h:8000", "http://h:8000/metrics"),
        ("http://h:8000/", "http://h:8000/metrics"),
        ("http://h/proxy/v1", "http://h/proxy/metrics"),
        ("http://h/proxy/v1/", "http://h/proxy/metrics"),
        ("http://h/proxy", "http://h/proxy/metrics"),
        ("https://h/a/b/v1", "https://h/a/b/metrics"),
        ("http://127.0.0.1:8041/v1?x=1#frag", "http://127.0.0.1:8041/metrics"),
        ("http://h/v1x", "http://h/v1x/metrics"),  # only a whole /v1 segment is dropped
        ("http://h/v1/v1", "http://h/v1/metrics"),  # only the last one
        ("  http://h:8000/v1  ", "http://h:8000/metrics"),
    ],
)
def test_metrics_url(base_url: str, expected: str) -> None:
    assert metrics_url(base_url) == expected


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://h:8000/v1", "http://h:8000"),
        ("http://h/proxy/v1/", "http://h/proxy"),
        ("http://h", "http://h"),
    ],
)
def test_server_root_url(base_url: str, expected: str) -> None:
    assert server_root_url(base_url) == expected


@pytest.mark.parametrize("base_url", ["", "h:8000/v1", "ftp://h/v1", "http:///v1", "/v1", "http://[::1/v1"])
def test_metrics_url_rejects_non_http_urls(base_url: str) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        metrics_url(base_url)


def test_bad_url_error_hides_credentials() -> None:
    with pytest.raises(ConfigError) as info:
        metrics_url("ftp://user:s3cret@h/v1")
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # vLLM 0.32 on CPU, idle and with 64 requests in flight.
        ("metrics_real_v032_idle.txt", ServerLoad(0, 0, 0.0, 1, 5.0, preemptions=0)),
        ("metrics_real_v032_loaded.txt", ServerLoad(52, 12, 0.14325068870523416, 1, 5.0, preemptions=0)),
        # vLLM 0.33 format.
        ("metrics_v033_overloaded.txt", ServerLoad(48, 17, 0.9312, 1, 5.0, preemptions=37)),
        # Older server: no engine label, gpu_cache_usage_perc instead of kv_cache_usage_perc.
        ("metrics_legacy_v0.txt", ServerLoad(0, 0, 0.0, 1, 5.0, preemptions=0)),
        # Two engines: counts summed, KV averaged.
        ("metrics_two_engines.txt", ServerLoad(48, 5, 0.5, 2, 5.0, preemptions=3)),
        # Only a histogram: nothing about load.
        ("metrics_docs_excerpt.txt", None),
    ],
)
def test_parse_fixture(name: str, expected: ServerLoad | None) -> None:
    assert parse_metrics(fixture(name), scraped_at=5.0) == expected


def test_per_engine() -> None:
    loads = parse_metrics_by_engine(fixture("metrics_two_engines.txt"), scraped_at=1.0)
    assert loads == {
        "0": ServerLoad(running=30, waiting=5, kv_cache_usage=0.75, engines=1, scraped_at=1.0, preemptions=3),
        "1": ServerLoad(running=18, waiting=0, kv_cache_usage=0.25, engines=1, scraped_at=1.0, preemptions=0),
    }


def test_the_preemptions_counter_is_read_whichever_name_its_family_has() -> None:
    gauges = text("vllm:num_requests_running 3", "vllm:num_requests_waiting 1")
    for family in ("vllm:num_preemptions", "vllm:num_preemptions_total"):
        counter = f"# TYPE {family} counter\nvllm:num_preemptions_total 7.0\n"
        load = parse_metrics(gauges + counter, scraped_at=0.0)
        assert load is not None and load.preemptions == 7
    assert parse_metrics(gauges, scraped_at=0.0) == ServerLoad(3, 1, None, 1, 0.0)  # not exported: None


def test_a_scrape_keeps_when_it_was_sent_and_when_it_arrived() -> None:
    gauges = text("vllm:num_requests_running 3", "vllm:num_requests_waiting 1")
    load = parse_metrics(gauges, scraped_at=5.0, requested_at=4.0)
    assert load is not None and (load.requested_at, load.scraped_at, load.earliest_at) == (4.0, 5.0, 4.0)
    unknown = parse_metrics(gauges, scraped_at=5.0)
    assert unknown is not None and unknown.requested_at is None and unknown.earliest_at == 5.0


def test_unlabelled_series_are_one_engine() -> None:
    loads = parse_metrics_by_engine(fixture("metrics_legacy_v0.txt"), scraped_at=1.0)
    assert loads is not None
    assert list(loads) == [NO_ENGINE_LABEL]


GAUGES = """\
# TYPE vllm:num_requests_running gauge
{running}
# TYPE vllm:num_requests_waiting gauge
{waiting}
{kv}
"""


def text(running: str, waiting: str, kv: str = "") -> str:
    return GAUGES.format(running=running, waiting=waiting, kv=kv)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (text("vllm:num_requests_running 3", "vllm:num_requests_waiting 4"), ServerLoad(3, 4, None, 1, 0.0)),
        # Several model_name series on one engine add up.
        (
            text(
                'vllm:num_requests_running{model_name="a"} 1\nvllm:num_requests_running{model_name="b"} 2',
                'vllm:num_requests_waiting{model_name="a"} 3',
            ),
            ServerLoad(3, 3, None, 1, 0.0),
        ),
        # An engine that reports only one of the two gauges counts 0 for the other.
        (
            text('vllm:num_requests_running{engine="0"} 2', 'vllm:num_requests_waiting{engine="1"} 7'),
            ServerLoad(2, 7, None, 2, 0.0),
        ),
        # The current KV name wins over the older one.
        (
            text(
                "vllm:num_requests_running 0",
                "vllm:num_requests_waiting 0",
                "vllm:kv_cache_usage_perc 0.5\nvllm:gpu_cache_usage_perc 0.9",
            ),
            ServerLoad(0, 0, 0.5, 1, 0.0),
        ),
        # KV reported by one engine out of two: the mean of what is reported.
        (
            text(
                'vllm:num_requests_running{engine="0"} 1\nvllm:num_requests_running{engine="1"} 1',
                'vllm:num_requests_waiting{engine="0"} 0\nvllm:num_requests_waiting{engine="1"} 0',
                'vllm:kv_cache_usage_perc{engine="1"} 0.4',
            ),
            ServerLoad(2, 0, 0.4, 2, 0.0),
        ),
        # A NaN KV is no KV; the counts still stand.
        (
            text(
                "vllm:num_requests_running 1", "vllm:num_requests_waiting 1", "vllm:kv_cache_usage_perc NaN"
            ),
            ServerLoad(1, 1, None, 1, 0.0),
        ),
        # Float gauges with rounding noise.
        (
            text("vllm:num_requests_running 2.0000001", "vllm:num_requests_waiting 0.0"),
            ServerLoad(2, 0, None, 1, 0.0),
        ),
        # Windows line endings.
        ("vllm:num_requests_running 1\r\nvllm:num_requests_waiting 2\r\n", ServerLoad(1, 2, None, 1, 0.0)),
        # Damage outside the three families is never looked at.
        (
            "garbage {{{ line\n" + text("vllm:num_requests_running 1", "vllm:num_requests_waiting 0"),
            ServerLoad(1, 0, None, 1, 0.0),
        ),
        # The waiting_by_reason family is not the waiting gauge.
        ("vllm:num_requests_running 1\nvllm:num_requests_waiting_by_reason 9\n", None),
        # Not vLLM, or not Prometheus text.
        ("# TYPE http_requests_total counter\nhttp_requests_total 5\n", None),
        ("<html><body>Not Found</body></html>", None),
        ("", None),
        ("vllm:num_requests_running 3\n", None),
        # Malformed values or labels in the families that matter.
        (text("vllm:num_requests_running three", "vllm:num_requests_waiting 0"), None),
        (text('vllm:num_requests_running{engine="0" 3', "vllm:num_requests_waiting 0"), None),
        (text("vllm:num_requests_running -1", "vllm:num_requests_waiting 0"), None),
        (text("vllm:num_requests_running NaN", "vllm:num_requests_waiting 0"), None),
        (text("vllm:num_requests_running +Inf", "vllm:num_requests_waiting 0"), None),
    ],
)
def test_parse_cases(body: str, expected: ServerLoad | None) -> None:
    assert parse_metrics(body, scraped_at=0.0) == expected


def test_malformed_text_logs_at_debug(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="resilient_llm.vllm")
    assert (
        parse_metrics(text("vllm:num_requests_running x", "vllm:num_requests_waiting 0"), scraped_at=0)
        is None
    )
    assert any(r.levelno == logging.DEBUG and "unreadable" in r.getMessage() for r in caplog.records)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_never_raises_on_arbitrary_text(body: str) -> None:
    result = parse_metrics(body, scraped_at=1.0)
    assert result is None or (result.running >= 0 and result.waiting >= 0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 10_000), st.floats(0, 1)),
        min_size=1,
        max_size=8,
    )
)
def test_sums_over_engines(engines: list[tuple[int, int, float]]) -> None:
    lines = ["# TYPE vllm:num_requests_running gauge"]
    lines += [
        f'vllm:num_requests_running{{engine="{i}",model_name="m"}} {r}.0'
        for i, (r, _, _) in enumerate(engines)
    ]
    lines += ["# TYPE vllm:num_requests_waiting gauge"]
    lines += [
        f'vllm:num_requests_waiting{{engine="{i}",model_name="m"}} {w}.0'
        for i, (_, w, _) in enumerate(engines)
    ]
    lines += [
        f'vllm:kv_cache_usage_perc{{engine="{i}",model_name="m"}} {kv!r}'
        for i, (_, _, kv) in enumerate(engines)
    ]
    load = parse_metrics("\n".join(lines) + "\n", scraped_at=2.0)
    assert load is not None
    assert load.running == sum(r for r, _, _ in engines)
    assert load.waiting == sum(w for _, w, _ in engines)
    assert load.engines == len(engines)
    assert load.kv_cache_usage == pytest.approx(sum(kv for _, _, kv in engines) / len(engines))
    assert load.scraped_at == 2.0


def test_cost_on_a_loaded_scrape() -> None:
    # Called about twice a second per client: it must stay well under a millisecond or two. A full
    # prometheus_client parse of this text takes several milliseconds; the line filter avoids it.
    body = fixture("metrics_real_v032_loaded.txt")
    assert len(body.splitlines()) > 500
    runs = 50
    start = time.perf_counter()
    for _ in range(runs):
        assert parse_metrics(body, scraped_at=0.0) is not None
    per_call = (time.perf_counter() - start) / runs
    assert per_call < 0.005, f"parse_metrics took {per_call * 1000:.2f} ms per call"
