"""Redirect decisions (pure): same origin followed, anything else refused with a reason."""

from __future__ import annotations

import pytest

from resilient_llm._http._redirects import Hop, plan_redirect

pytestmark = pytest.mark.timeout(10)

URL = "http://h:8000/v1/chat/completions"


@pytest.mark.parametrize(
    ("method", "status", "location", "expected"),
    [
        ("POST", 307, "/v2/chat/completions", Hop("POST", "http://h:8000/v2/chat/completions")),
        ("POST", 308, "http://h:8000/x?y=1#frag", Hop("POST", "http://h:8000/x?y=1")),
        ("GET", 301, "/v1/models/", Hop("GET", "http://h:8000/v1/models/")),
        ("GET", 303, "/elsewhere", Hop("GET", "http://h:8000/elsewhere")),
        ("POST", 307, "http://other:8000/v1", "another origin"),
        ("POST", 307, "http://h:8001/v1", "another origin"),
        ("POST", 307, "https://h:8000/v1", "another origin"),
        ("POST", 307, "http://u:p@h:8000/v1", "carries credentials"),
        ("POST", 307, "ftp://h/v1", "not an http(s) URL"),
        ("POST", 307, None, "no Location header"),
        ("POST", 307, "  ", "no Location header"),
        ("POST", 302, "/v2", "turn the POST into a GET"),
        ("POST", 303, "/v2", "turn the POST into a GET"),
        ("POST", 300, "/v2", "status 300 is not a redirect"),
        ("GET", 304, None, "status 304 is not a redirect"),
        ("POST", 307, "http://h:99999/", "not a valid URL"),
    ],
)
def test_plan_redirect(method: str, status: int, location: str | None, expected: Hop | str) -> None:
    plan = plan_redirect(method, URL, status, location)
    if isinstance(expected, Hop):
        assert plan == expected
    else:
        assert isinstance(plan, str) and expected in plan


def test_http_to_https_upgrade_of_the_same_host_is_followed() -> None:
    plan = plan_redirect("POST", "http://h/v1/x", 308, "https://h/v1/x")
    assert plan == Hop("POST", "https://h/v1/x")
    assert isinstance(plan_redirect("POST", "https://h/v1/x", 308, "http://h/v1/x"), str)  # no downgrade
