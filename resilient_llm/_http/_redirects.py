"""Redirects, followed by us (the HTTP libraries' own following is off) the same way on both transports.

openai-python follows redirects (its httpx client sets ``follow_redirects=True``, up to 20); httpx then
drops ``Authorization`` on a move to another origin but still sends ``api-key``, ``x-api-key`` and the
request body there. This library is stricter:

* only a redirect to the **same origin** (scheme, host, port) is followed, or the upgrade of the same
  host from ``http`` to ``https`` on the default ports (what httpx also keeps credentials for);
  every header, credentials included, stays with the request since it stays with the same server;
* a redirect to any other origin is **not followed**: no credential and no prompt ever goes there;
* a 301/302/303 that would turn a ``POST`` into a ``GET`` (dropping its body) is not followed;
* at most ``Limits.max_redirects`` in a row.

Any 3xx that is not followed raises :class:`~resilient_llm._errors_io.RedirectError` (an
``openai.APIStatusError``; not retried) naming the status, the target (masked) and the reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

from .._errors_io import RedirectError
from .._secrets import mask_url
from ._base import RawResponse, describe_request, describe_response

__all__ = ["FOLLOWED_STATUSES", "Hop", "follow", "plan_redirect"]

FOLLOWED_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}

SendOnce = Callable[[str, str, Mapping[str, str], "bytes | None"], Awaitable[RawResponse]]


@dataclass(frozen=True, slots=True)
class Hop:
    """The next request of a followed redirect."""

    method: str
    url: str


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or _DEFAULT_PORTS.get(scheme)


def plan_redirect(method: str, url: str, status: int, location: str | None) -> Hop | str:
    """Where a 3xx answer to ``method url`` leads, or why it is not followed (pure)."""
    if status not in FOLLOWED_STATUSES:
        return f"status {status} is not a redirect the client follows"
    if not location or not location.strip():
        return "the answer has no Location header"
    try:
        target = urljoin(url, location.strip())
        parts = urlsplit(target)
        here, there = _origin(url), _origin(target)
    except ValueError:
        return "its Location is not a valid URL"
    if parts.scheme.lower() not in _DEFAULT_PORTS or not parts.hostname:
        return "its Location is not an http(s) URL"
    if parts.username is not None or parts.password is not None:
        return "its Location carries credentials"
    upgrade = here == ("http", there[1], 80) and there == ("https", here[1], 443)
    if there != here and not upgrade:
        return "it points to another origin; set base_url to the new address if you trust it"
    changes_method = status == 303 or (status in (301, 302) and method == "POST")
    if changes_method and method not in ("GET", "HEAD"):
        return f"a {status} would turn the {method} into a GET and drop its body"
    return Hop(method, urlunsplit((parts.scheme, parts.netloc, parts.path, parts.query, "")))


async def follow(
    send_once: SendOnce,
    method: str,
    url: str,
    headers: Mapping[str, str],
    content: bytes | None,
    *,
    max_redirects: int,
    first: RawResponse | None = None,
) -> RawResponse:
    """Send, following redirects by :func:`plan_redirect`; the first answer that is not a 3xx.

    ``first``: the answer to the first send when the caller already has it (a transport sends once
    itself and comes here only for a 3xx, so that a request that is not redirected costs nothing more).
    """
    redirects = 0
    while True:
        raw = first if first is not None else await send_once(method, url, headers, content)
        first = None
        if not 300 <= raw.status < 400:
            return raw
        location = raw.headers.get("location")
        plan = plan_redirect(method, url, raw.status, location)
        if isinstance(plan, Hop) and redirects >= max_redirects:
            plan = f"more than Limits.max_redirects={max_redirects} redirects in a row"
        await raw.aclose()  # a redirect's body is not read: drop its connection
        if not isinstance(plan, Hop):
            shown = None
            if location:
                try:
                    shown = mask_url(urljoin(url, location.strip()))
                except ValueError:
                    shown = mask_url(location)
            response = describe_response(raw.status, raw.headers, describe_request(method, url))
            raise RedirectError(response=response, reason=plan, location=shown[:300] if shown else None)
        redirects += 1
        method, url = plan.method, plan.url
