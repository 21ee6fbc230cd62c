from __future__ import annotations

import math
from datetime import datetime, timezone
from email.utils import format_datetime

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from resilient_llm._policies._retry_after import is_retryable_status, retry_after, should_retry_header

#: 2026-01-02 03:04:05 UTC
NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"content-type": "application/json"}, None),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250.5"}, 0.2505),
        ({"Retry-After-Ms": "2000"}, 2.0),
        ({"retry-after-ms": "-10"}, 0.0),
        ({"retry-after-ms": "100", "retry-after": "7"}, 0.1),  # milliseconds win
        ({"retry-after-ms": "soon", "retry-after": "7"}, 7.0),  # unreadable ms: fall back
        ({"retry-after-ms": "nan", "retry-after": "7"}, 7.0),
        ({"retry-after-ms": "nan"}, None),
        ({"retry-after": "3"}, 3.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"RETRY-AFTER": " 4 "}, 4.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "-inf"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "Fri, 99 Foo 2026 99:99:99 GMT"}, None),
        ({"retry-after": "Fri, 02 Jan 2026 03:04:35 GMT"}, 30.0),
        ({"retry-after": "Fri, 02 Jan 2026 03:04:35 +0000"}, 30.0),
        ({"retry-after": "Fri, 02 Jan 2026 04:04:35 +0100"}, 30.0),
        ({"retry-after": "Fri, 02 Jan 2026 03:04:35 -0000"}, 30.0),  # no zone claim: UTC
        ({"retry-after": "Friday, 02-Jan-26 03:05:05 GMT"}, 60.0),  # obsolete RFC 850 form
        ({"retry-after": "Thu, 01 Jan 2026 03:04:05 GMT"}, 0.0),  # in the past
        ({"retry-after": "Fri, 02 Jan 2026 03:04:05 GMT"}, 0.0),  # exactly now
    ],
)
def test_retry_after_table(headers: dict[str, str], expected: float | None) -> None:
    assert retry_after(headers, now_wall=NOW) == (None if expected is None else pytest.approx(expected))


def test_retry_after_reads_httpx_headers_case_insensitively() -> None:
    headers = httpx.Headers([("Retry-After", "12")])
    assert retry_after(headers, now_wall=NOW) == 12.0
    headers = httpx.Headers([("Retry-After-MS", "12")])
    assert retry_after(headers, now_wall=NOW) == pytest.approx(0.012)


def test_http_date_is_relative_to_now_wall() -> None:
    later = format_datetime(datetime(2026, 1, 2, 3, 6, 5, tzinfo=timezone.utc), usegmt=True)
    assert retry_after({"retry-after": later}, now_wall=NOW) == pytest.approx(120.0)
    assert retry_after({"retry-after": later}, now_wall=NOW + 100) == pytest.approx(20.0)
    assert retry_after({"retry-after": later}, now_wall=NOW + 1000) == 0.0


def test_long_waits_are_reported_not_capped() -> None:
    assert retry_after({"retry-after": "3600"}, now_wall=NOW) == 3600.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"x-should-retry": "true"}, True),
        ({"x-should-retry": "false"}, False),
        ({"X-Should-Retry": "True"}, True),
        ({"x-should-retry": " FALSE "}, False),
        ({"x-should-retry": "yes"}, None),
        ({"x-should-retry": "1"}, None),
        ({"x-should-retry": ""}, None),
    ],
)
def test_should_retry_header_table(headers: dict[str, str], expected: bool | None) -> None:
    assert should_retry_header(headers) is expected


def test_should_retry_header_reads_httpx_headers() -> None:
    assert should_retry_header(httpx.Headers({"X-Should-Retry": "false"})) is False


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (200, False),
        (301, False),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (413, False),
        (422, False),
        (408, True),
        (409, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (504, True),
        (599, True),
    ],
)
def test_is_retryable_status_table(status: int, expected: bool) -> None:
    assert is_retryable_status(status) is expected


@given(st.integers(min_value=400, max_value=499))
def test_only_three_client_errors_are_retryable(status: int) -> None:
    assert is_retryable_status(status) is (status in (408, 409, 429))


header_names = st.sampled_from(["retry-after", "Retry-After", "retry-after-ms", "RETRY-AFTER-MS", "other"])


@given(
    headers=st.dictionaries(header_names, st.text(max_size=40), max_size=4),
    now_wall=st.floats(min_value=0, max_value=4e9),
)
def test_retry_after_never_raises_and_is_never_negative(headers: dict[str, str], now_wall: float) -> None:
    value = retry_after(headers, now_wall=now_wall)
    assert value is None or (math.isfinite(value) and value >= 0)


@given(seconds=st.floats(min_value=0, max_value=1e9), upper=st.booleans())
def test_numeric_seconds_round_trip(seconds: float, upper: bool) -> None:
    name = "Retry-After" if upper else "retry-after"
    assert retry_after({name: repr(seconds)}, now_wall=NOW) == seconds
    assert retry_after({name + "-ms": repr(seconds)}, now_wall=NOW) == seconds / 1000


@given(offset=st.integers(min_value=-(10**8), max_value=10**8))
def test_http_dates_round_trip(offset: int) -> None:
    date = format_datetime(datetime.fromtimestamp(NOW + offset, tz=timezone.utc), usegmt=True)
    assert retry_after({"retry-after": date}, now_wall=NOW) == max(0, offset)
