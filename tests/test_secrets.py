"""Credentials: keys checked without being shown, URLs masked, URL credentials sent as Basic auth."""

from __future__ import annotations

import base64

import pytest

from resilient_llm._exceptions import ConfigError
from resilient_llm._secrets import (
    CauseSummary,
    check_api_key,
    check_headers,
    mask_url,
    scrub,
    secret_values,
    split_credentials,
    summarize_cause,
)

pytestmark = pytest.mark.timeout(10)

KEY = "sk-live-0123456789abcdef"


@pytest.mark.parametrize("raw", [KEY, f"{KEY}\n", f"  {KEY}\r\n", f"\t{KEY} "])
def test_surrounding_whitespace_is_stripped(raw: str) -> None:
    assert check_api_key(raw) == KEY


def test_no_key_stays_none() -> None:
    assert check_api_key(None) is None


@pytest.mark.parametrize(
    ("raw", "what"),
    [
        (f"sk-live\n{KEY}", "a control character (U+000A)"),
        (f"sk-live\x00{KEY}", "a control character (U+0000)"),
        (f"sk-live\x7f{KEY}", "a control character (U+007F)"),
        (f"sk-live {KEY}", "a space (U+0020)"),
        (f"sk-livé{KEY}", "a character (U+00E9)"),
    ],
)
def test_bad_characters_inside_a_key_are_refused_without_showing_it(raw: str, what: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_api_key(raw)
    assert what in str(info.value)
    assert "api_key" in str(info.value)
    assert KEY not in str(info.value) and KEY not in repr(info.value)
    assert isinstance(info.value, ValueError)


def test_header_values_are_checked_and_named_but_not_shown() -> None:
    assert check_headers({"api-key": f" {KEY}\n"}) == {"api-key": KEY}
    with pytest.raises(ConfigError, match=r"default_headers\['x-api-key'\] contains a control") as info:
        check_headers({"x-api-key": f"{KEY}\r\nx-injected: 1"})
    assert KEY not in str(info.value)
    with pytest.raises(ConfigError, match="not a valid header name"):
        check_headers({"bad name": "v"})


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://alice:hunter2@host:8000/v1", "http://***@host:8000/v1"),
        ("https://tok@host/v1", "https://***@host/v1"),
        ("http://host/v1?api-key=hunter2&x=1", "http://host/v1?***"),
        ("http://host:8000/v1", "http://host:8000/v1"),
        ("http://a:b@c@host/v1", "http://***@host/v1"),
        ("http://alice:hunter2@host:port/v1", "http://***@host:port/v1"),  # unparseable port
    ],
)
def test_mask_url(url: str, shown: str) -> None:
    assert mask_url(url) == shown
    assert "hunter2" not in mask_url(url)


def test_url_credentials_become_basic_auth_and_leave_the_url() -> None:
    url, auth = split_credentials("http://al%40ice:hun%3Ater2@host:8000/v1/chat?x=1")
    assert url == "http://host:8000/v1/chat?x=1"
    assert auth == "Basic " + base64.b64encode(b"al@ice:hun:ter2").decode()
    assert split_credentials("http://host/v1") == ("http://host/v1", None)


def test_scrubbed_causes_keep_type_and_message_but_no_secret() -> None:
    headers = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    secrets = secret_values(headers)
    assert KEY in secrets
    exc = ValueError(f"Illegal header value b'Bearer {KEY}\\n' for http://alice:hunter2@host/")
    cause = summarize_cause(exc, secrets)
    assert isinstance(cause, CauseSummary)
    assert cause.type_name == "builtins.ValueError"
    for text in (str(cause), repr(cause)):
        assert KEY not in text and "hunter2" not in text
        assert "Illegal header value" in text
    assert scrub("x sk-live-0123456789abcdef y", secrets) == "x *** y"


def test_basic_credentials_are_secrets_too() -> None:
    _, auth = split_credentials("http://alice:hunter2@host/")
    assert auth is not None
    assert "hunter2" in secret_values({"Authorization": auth})


def test_probe_reports_show_the_url_masked() -> None:
    import httpx

    from resilient_llm.cli._probe import probe

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503)

    with httpx.Client(transport=httpx.MockTransport(handler)) as http:
        report = probe("http://alice:hunter2@127.0.0.1:8000/v1", client=http)
    assert report.url == "http://***@127.0.0.1:8000/v1"
    assert "hunter2" not in repr(report) and "hunter2" not in str(report.as_json())
