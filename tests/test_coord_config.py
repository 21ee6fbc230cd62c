"""Coordination without Redis: settings, fair shares, GCRA, server keys, the lazy optional import."""

from __future__ import annotations

import subprocess
import sys

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_llm._coord import CoordinationConfig, fair_rate, fair_share, gcra_reserve, mask_url, server_key
from resilient_llm._coord._link import import_coredis
from resilient_llm._exceptions import ConfigError

pytestmark = pytest.mark.timeout(20)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@h:6379/0", "redis://***@h:6379/0"),
        ("rediss://user:s3cret@h/1", "rediss://***@h/1"),
        ("redis://h:6379/0", "redis://h:6379/0"),
        ("unix:///run/redis.sock?db=0&password=s3cret", "unix:///run/redis.sock?***"),
    ],
)
def test_credentials_are_masked_in_repr_and_messages(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in repr(CoordinationConfig(url=url))
    assert masked in repr(CoordinationConfig(url=url))


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"url": "http://h:6379"}, "url"),
        ({"url": "redis://:s3cret@h:notaport"}, "url"),
        ({"key_prefix": ""}, "key_prefix"),
        ({"key_prefix": "a{b}"}, "key_prefix"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"redis_timeout": -1}, "redis_timeout"),
        ({"lease_ttl": 1.0, "redis_timeout": 0.5}, "redis_timeout"),
        ({"poll_interval": float("nan")}, "poll_interval"),
        ({"reconnect_interval": 0}, "reconnect_interval"),
        ({"fleet_size": 0}, "fleet_size"),
        ({"fleet_size": True}, "fleet_size"),
    ],
)
def test_bad_settings_name_the_argument_and_hide_the_password(changes: dict[str, object], named: str) -> None:
    settings: dict[str, object] = {"url": "redis://:s3cret@h:6379/0", **changes}
    with pytest.raises(ConfigError, match=f"CoordinationConfig: {named} must be") as info:
        CoordinationConfig(**settings)  # type: ignore[arg-type]
    assert "s3cret" not in str(info.value)


def test_config_is_frozen_and_keyword_only() -> None:
    config = CoordinationConfig(url="redis://h")
    with pytest.raises(AttributeError):
        config.lease_ttl = 1.0  # type: ignore[misc]
    with pytest.raises(TypeError):
        CoordinationConfig("redis://h")  # type: ignore[misc]
    assert config.renew_interval == pytest.approx(config.lease_ttl / 3)
    assert config.key("lease", "http://h:8000", "holders") == "resilient_llm:lease:{http://h:8000}:holders"


@pytest.mark.parametrize(
    ("limit", "fleet", "share"),
    [(50, None, 50), (50, 1, 50), (50, 4, 12), (10, 4, 2), (3, 4, 1), (1, 8, 1), (64, 8, 8)],
)
def test_fair_share_stays_within_the_global_limit_unless_it_is_smaller_than_the_fleet(
    limit: int, fleet: int | None, share: int
) -> None:
    assert fair_share(limit, fleet) == share
    if fleet is not None and limit >= fleet:
        assert share * fleet <= limit


def test_fair_rate_splits_rate_and_burst() -> None:
    assert fair_rate(10.0, 10, None) == (10.0, 10)
    assert fair_rate(10.0, 10, 4) == (2.5, 2)
    assert fair_rate(1.0, 1, 4) == (0.25, 1)


@pytest.mark.parametrize(
    ("tat", "now", "booked", "wait"),
    [
        (0.0, 100.0, True, 0.0),  # fresh bucket
        (100.3, 100.0, True, 0.0),  # 3 of a burst of 5 used: still free
        (100.4, 100.0, True, 0.0),  # the 5th token of the burst
        (100.5, 100.0, True, 0.1),  # burst spent: one interval
        (101.0, 100.0, False, 0.6),  # due after max_wait (0.5)
    ],
)
def test_gcra_reserve_table(tat: float, now: float, booked: bool, wait: float) -> None:
    r = gcra_reserve(tat, now, interval=0.1, burst=5, max_wait=0.5)
    assert r.booked is booked
    assert r.wait == pytest.approx(wait)
    assert r.tat == (pytest.approx(max(tat, now) + 0.1) if booked else tat)


@given(
    burst=st.integers(1, 20),
    rate=st.floats(0.5, 100.0),
    gaps=st.lists(st.floats(0.0, 0.5), min_size=1, max_size=200),
)
def test_gcra_never_releases_more_than_burst_plus_rate_times_time(
    burst: int, rate: float, gaps: list[float]
) -> None:
    interval, tat, now = 1 / rate, 0.0, 1000.0
    due: list[float] = []
    for gap in gaps:
        now += gap
        r = gcra_reserve(tat, now, interval=interval, burst=burst, max_wait=float("inf"))
        tat = r.tat
        due.append(now + r.wait)
    due.sort()
    for i, start in enumerate(due):  # any window [start, start + w] holds at most burst + w * rate tokens
        for j in range(i, len(due)):
            assert j - i + 1 <= burst + (due[j] - start) * rate + 1e-6


@pytest.mark.parametrize(
    ("base_url", "key"),
    [
        ("http://h:8000/v1", "http://h:8000"),
        ("http://user:pw@H:8000/v1/", "http://h:8000"),
        ("https://h/proxy/v1?x=1", "https://h/proxy"),
        ("http://[::1]:8000/v1", "http://[::1]:8000"),
    ],
)
def test_server_key_is_the_root_url_without_credentials(base_url: str, key: str) -> None:
    assert server_key(base_url) == key


def test_a_plain_import_does_not_import_the_redis_client() -> None:
    code = "import resilient_llm, resilient_llm._coord, sys; print('coredis' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "False"


def test_a_missing_extra_names_it_in_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "coredis", None)
    with pytest.raises(ConfigError) as info:
        import_coredis()
    assert str(info.value) == 'coordination needs the "redis" extra: pip install "resilient-llm[redis]"'
