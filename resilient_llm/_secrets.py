"""Credentials: checked once when a client is made, never shown afterwards.

* :func:`check_api_key` / :func:`check_headers` — surrounding whitespace (a key read from a file with
  its newline) is stripped; a control character, a space or a non-ASCII character inside is refused
  with a :class:`~resilient_llm.ConfigError` that does not show the value.
* :func:`mask_url` — the one way the library shows a URL: ``user:password@`` becomes ``***@`` and a
  query string becomes ``?***``. Used for logs, reprs, exception requests and messages.
* :func:`split_credentials` — credentials written in a URL are sent as HTTP Basic auth (as httpx and
  openai-python do: it takes the place of the ``Bearer`` key) and never as part of the URL.
* :func:`scrub` and :func:`summarize_cause` — a foreign exception (aiohttp, httpx) may carry the
  request's headers in its attributes or repr; the library attaches a :class:`CauseSummary` (its type
  and scrubbed message) as ``__cause__`` instead of the foreign object.
"""

from __future__ import annotations

import base64
import contextlib
import re
from collections.abc import Iterable, Mapping
from typing import Final
from urllib.parse import unquote, urlsplit, urlunsplit

from ._exceptions import ConfigError

__all__ = [
    "SENSITIVE_HEADERS",
    "CauseSummary",
    "check_api_key",
    "check_headers",
    "mask_url",
    "scrub",
    "secret_values",
    "split_credentials",
    "summarize_cause",
]

#: Headers whose values are credentials: never logged, shown, or sent to another origin.
SENSITIVE_HEADERS: Final = frozenset(
    {
        "authorization",
        "proxy-authorization",
        "api-key",
        "x-api-key",
        "cookie",
        "openai-organization",
        "openai-project",
    }
)

_MASK: Final = "***"
# visible ASCII only: no space, no control character (including DEL), nothing past 0x7e
_BAD_KEY_CHAR = re.compile(r"[^\x21-\x7e]")
# header values may hold spaces and tabs, nothing else outside visible ASCII
_BAD_VALUE_CHAR = re.compile(r"[^\x20-\x7e\t]")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _describe_char(ch: str) -> str:
    kind = "a control character" if ord(ch) < 0x20 or ord(ch) == 0x7F else "a character"
    if ch == " ":
        kind = "a space"
    return f"{kind} (U+{ord(ch):04X})"


def check_api_key(key: str | None, *, name: str = "api_key") -> str | None:
    """``key`` without surrounding whitespace; ``None`` stays ``None`` (no Authorization header).

    Raises :class:`ConfigError` naming ``name`` (never the value) for a non-string, or a key with a
    space, control character or non-ASCII character inside it.
    """
    if key is None:
        return None
    if not isinstance(key, str):
        raise ConfigError(f"{name} must be a string, got {type(key).__name__}")
    stripped = key.strip()
    bad = _BAD_KEY_CHAR.search(stripped)
    if bad is not None:
        raise ConfigError(
            f"{name} contains {_describe_char(bad.group())}; a key must be printable ASCII without "
            "spaces (the value is not shown)"
        )
    return stripped


def check_headers(headers: Mapping[str, str], *, name: str = "default_headers") -> dict[str, str]:
    """Header values stripped of surrounding whitespace; names and values checked.

    A name must be an HTTP token; a value may not hold control or non-ASCII characters. The
    :class:`ConfigError` names the header, never its value.
    """
    checked: dict[str, str] = {}
    for key, value in headers.items():
        if not isinstance(key, str) or not _TOKEN.fullmatch(key):
            raise ConfigError(f"{name}: {key!r} is not a valid header name")
        if not isinstance(value, str):
            raise ConfigError(f"{name}[{key!r}] must be a string, got {type(value).__name__}")
        stripped = value.strip()
        bad = _BAD_VALUE_CHAR.search(stripped)
        if bad is not None:
            raise ConfigError(
                f"{name}[{key!r}] contains {_describe_char(bad.group())} (the value is not shown)"
            )
        checked[key] = stripped
    return checked


def mask_url(url: object) -> str:
    """``url`` for display: ``user:password@`` → ``***@``, a query string → ``?***``.

    Plain string work (no URL parser), so any scheme keeps its shape (``unix:///run/redis.sock``) and
    an unparseable URL is masked all the same.
    """
    text = str(url)
    if "@" not in text and "?" not in text:
        return text
    text = _USERINFO.sub(rf"\1{_MASK}@", text, count=1)
    return _QUERY.sub(f"?{_MASK}", text, count=1)


_USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*://)[^/?#]*@")
_QUERY = re.compile(r"\?[^#]*")


def split_credentials(url: str) -> tuple[str, str | None]:
    """``url`` without ``user:password@``, and the ``Authorization`` value (Basic) they stand for."""
    if "@" not in url:
        return url, None
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url, None
    host = parts.netloc.rpartition("@")[2]
    clean = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    return clean, "Basic " + base64.b64encode(pair.encode()).decode("ascii")


def secret_values(headers: Mapping[str, str]) -> tuple[str, ...]:
    """The credential strings in ``headers`` (each whole value and the token after its scheme)."""
    found: list[str] = []
    for key, value in headers.items():
        if key.lower() in SENSITIVE_HEADERS and value:
            found.append(value)
            scheme, _, token = value.partition(" ")
            if token and scheme.isalpha():
                found.append(token)
                if scheme.lower() == "basic":
                    with contextlib.suppress(ValueError):
                        found.extend(p for p in base64.b64decode(token).decode().split(":", 1) if p)
    return tuple(sorted(found, key=len, reverse=True))


def scrub(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret (of 4 characters or more) replaced by ``***``."""
    for secret in secrets:
        if len(secret) >= 4 and secret in text:
            text = text.replace(secret, _MASK)
    return text


class CauseSummary(Exception):
    """Stands in for a foreign exception as ``__cause__``: its type and scrubbed message only.

    aiohttp's ``ClientResponseError`` and httpx's errors hold the sent request (headers included);
    the library keeps none of those objects.
    """

    def __init__(self, type_name: str, message: str) -> None:
        super().__init__(f"{type_name}: {message}" if message else type_name)
        self.type_name = type_name


def summarize_cause(exc: BaseException, secrets: Iterable[str] = ()) -> CauseSummary:
    cls = type(exc)
    text = scrub(str(exc), secrets)
    # URLs in foreign messages: mask any credentials they carry
    text = re.sub(r"//[^/\s'\"@]*@", f"//{_MASK}@", text)
    return CauseSummary(f"{cls.__module__}.{cls.__qualname__}", text[:1000])
