"""Settings: defaults, validation, and the ``RESILIENT_LLM_*`` environment variables.

All time values are in seconds. Every setting has a default chosen so that, with no arguments at all,
no call can wait forever: the ``deadline`` bounds each call end to end, whatever else is switched off.

Precedence: an explicit argument, then the environment variable, then the default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Final

from openai import DEFAULT_TIMEOUT as _openai_default_timeout

from ._compat import timeout_parts
from ._exceptions import ConfigError
from ._policies._backoff import DEFAULT_BACKOFF, Backoff, BackoffPolicy
from ._policies._breaker import BreakerConfig
from ._policies._breaker_config import check_metrics_url
from ._policies._budget import DEFAULT_MIN_PER_SECOND, DEFAULT_RATIO, DEFAULT_TTL
from ._policies._tenacity import TenacityBackoff, is_tenacity_wait
from ._policies._validate import (
    check_int,
    check_number,
    check_url,
    expected_int,
    expected_number,
    reject,
    rejection,
)
from ._secrets import mask_url

if TYPE_CHECKING:
    from ._coord import CoordinationConfig

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_HEDGE_SLOWDOWN",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RAMP_UP",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "ENV_VARS",
    "NOT_GIVEN",
    "CallSettings",
    "NotGiven",
    "RateLimit",
    "RetryBudgetConfig",
    "Settings",
]


class NotGiven:
    """Sentinel: "not given, use the default", as opposed to ``None`` meaning "switched off"."""

    _instance: NotGiven | None = None

    def __new__(cls) -> NotGiven:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __bool__(self) -> bool:
        return False

    def __repr__(self) -> str:
        return "NOT_GIVEN"


NOT_GIVEN: Final = NotGiven()


def is_given(value: object) -> bool:
    """``NOT_GIVEN`` from this library or from openai-python (``NotGiven``/``Omit``) means "leave it out"."""
    return type(value).__name__ not in ("NotGiven", "Omit")


#: Whole-call budget: every attempt, backoff sleep and queue wait. 30 minutes covers a 20k-token
#: answer generated at a few tokens per second under load, and is what openai-python's defaults
#: (600 s per attempt, 2 retries) could already take in the worst case.
DEFAULT_DEADLINE: Final = 1800.0
#: Per attempt, openai-python's own default (600 s, 5 s to connect); its read part is the longest
#: silence between two pieces of the answer (never a cap on a generation that keeps producing tokens).
DEFAULT_TIMEOUT: Final = _openai_default_timeout
#: The longest silence tolerated while an answer is produced (before the first token too).
DEFAULT_STALL_TIMEOUT: Final = 60.0
DEFAULT_MAX_RETRIES: Final = 4
#: ``None``: no fixed limit — the server's batch capacity (from its ``/metrics``) plus the queue the
#: breaker allows sets it; 64 while the server shows no metrics (``_upstream.FALLBACK_CONCURRENCY``).
DEFAULT_MAX_CONCURRENCY: Final[int | None] = None
DEFAULT_RAMP_UP: Final = 10.0
#: A non-streaming answer arriving this many times slower than the server's others gets a hedged copy.
DEFAULT_HEDGE_SLOWDOWN: Final = 4.0

ENV_PREFIX: Final = "RESILIENT_LLM_"

#: The owner named in the errors about the client's own arguments (``Settings`` are made from them).
CLIENT: Final = "AsyncOpenAI"
#: The owner named in the errors about ``RESILIENT_LLM_*`` variables (each names its variable).
ENVIRONMENT: Final = "environment"


@dataclass(frozen=True, slots=True)
class _Rule:
    """What one of the client's numeric settings accepts: a number (or an integer) within bounds."""

    integer: bool = False
    at_least: float | None = None
    above: float | None = None

    def check(self, owner: str, name: str, value: object) -> Any:
        if self.integer:
            return check_int(owner, name, value, at_least=int(self.at_least or 0))
        return check_number(owner, name, value, at_least=self.at_least, above=self.above)

    def expected(self) -> str:
        if self.integer:
            return expected_int(at_least=int(self.at_least or 0))
        return expected_number(at_least=self.at_least, above=self.above)


#: The client's numeric arguments, and so their ``RESILIENT_LLM_*`` variables; all times in seconds.
_RULES: Final[Mapping[str, _Rule]] = {
    "deadline": _Rule(above=0),
    "stall_timeout": _Rule(above=0),
    "timeout": _Rule(above=0),
    "ramp_up": _Rule(at_least=0),
    "rate_limit": _Rule(above=0),
    "max_concurrency": _Rule(integer=True, at_least=1),
    "max_retries": _Rule(integer=True, at_least=0),
    "rate_limit_burst": _Rule(integer=True, at_least=1),
    "hedge_slowdown": _Rule(above=1),
}


def check_setting(name: str, value: object) -> Any:
    """The client's argument ``name`` (``deadline``, ``max_retries``...), checked: its error names it."""
    return _RULES[name].check(CLIENT, name, value)


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """A token bucket: ``rate`` requests per second on average, up to ``burst`` at once."""

    rate: float
    burst: int | None = None

    def __post_init__(self) -> None:
        check_number("RateLimit", "rate", self.rate, above=0)
        if self.burst is not None:
            check_int("RateLimit", "burst", self.burst, at_least=1)

    @property
    def effective_burst(self) -> int:
        """``burst``, or one second's worth of requests (at least 1)."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate))


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryBudgetConfig:
    """Retries allowed per sliding ``ttl`` window: ``ratio`` × requests plus ``min_per_second`` × ttl."""

    ratio: float = DEFAULT_RATIO
    min_per_second: float = DEFAULT_MIN_PER_SECOND
    ttl: float = DEFAULT_TTL

    def __post_init__(self) -> None:
        check_number("RetryBudgetConfig", "ratio", self.ratio, at_least=0)
        check_number("RetryBudgetConfig", "min_per_second", self.min_per_second, at_least=0)
        check_number("RetryBudgetConfig", "ttl", self.ttl, above=0)


def check_timeout(value: object) -> object:
    """openai-python's ``timeout``: a number of seconds, ``None``, or a ``Timeout`` of any httpx flavour."""
    if value is None or hasattr(value, "read"):
        return value
    return check_setting("timeout", value)


def check_backoff(value: object) -> BackoffPolicy:
    """``backoff``: a :class:`Backoff`, or a tenacity wait strategy (adapted: :class:`TenacityBackoff`)."""
    if isinstance(value, (Backoff, TenacityBackoff)):
        return value
    if not is_tenacity_wait(value):
        reject(CLIENT, "backoff", value, "a Backoff or a tenacity wait strategy")
    adapted = TenacityBackoff(value)
    try:
        adapted.delay(1, None)
    except Exception as exc:  # e.g. wait_exception, which reads the outcome: there is none to give it
        expected = "a tenacity wait strategy that reads only the attempt number"
        raise rejection(CLIENT, "backoff", value, expected) from exc
    return adapted


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """The resilience settings a client (or a ``with_options`` copy) applies to each call. Immutable.

    ``timeout`` and ``max_retries`` are openai-python's own client attributes (per call: the
    ``timeout`` and ``max_retries`` request options) and live there, not here.
    """

    deadline: float = DEFAULT_DEADLINE
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    backoff: BackoffPolicy = DEFAULT_BACKOFF  # a tenacity wait strategy given here is adapted

    def __post_init__(self) -> None:
        check_setting("deadline", self.deadline)
        if self.stall_timeout is not None:
            check_setting("stall_timeout", self.stall_timeout)
        object.__setattr__(self, "backoff", check_backoff(self.backoff))

    def evolve(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    def for_call(self, timeout: object, max_retries: int) -> CallSettings:
        """This call's limits: ``timeout`` (openai's: number, ``None`` or ``Timeout``) sets the connect
        limit and, with ``stall_timeout``, the longest silence inside an attempt."""
        connect, read = timeout_parts(timeout)
        stall = self.stall_timeout
        silence = read if stall is None else (stall if read is None else min(read, stall))
        return CallSettings(
            deadline=self.deadline,
            connect_timeout=connect,
            silence=silence,
            stall_timeout=stall,
            max_retries=max_retries,
            backoff=self.backoff,
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallSettings:
    """What the call pipeline needs for one call (derived; never validated again)."""

    deadline: float
    connect_timeout: float | None
    silence: float | None  # longest silence inside an attempt: min(read timeout, stall_timeout)
    stall_timeout: float | None
    max_retries: int
    backoff: BackoffPolicy


# --- environment variables -------------------------------------------------------------------------

#: Every ``RESILIENT_LLM_*`` variable, and the argument it gives.
ENV_VARS: Final[Mapping[str, str]] = {
    f"{ENV_PREFIX}{name.upper()}": name
    for name in (
        "deadline",
        "stall_timeout",
        "timeout",
        "max_retries",
        "max_concurrency",
        "ramp_up",
        "rate_limit",
        "rate_limit_burst",
        "breaker",
        "metrics_url",
        "replicas",
        "coordination",
        "hedge_slowdown",
    )
}
_SWITCHES_OFF = frozenset({"stall_timeout", "rate_limit", "breaker", "coordination", "hedge_slowdown"})
_OFF = frozenset({"none", "off", "false", "0", "no", "disabled"})
_ON = frozenset({"on", "true", "1", "yes", "enabled"})


def read_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings given as ``RESILIENT_LLM_*`` environment variables, checked and named by argument.

    ``RESILIENT_LLM_STALL_TIMEOUT=off`` (or ``none``) switches stall detection off; likewise
    ``RATE_LIMIT`` and ``HEDGE_SLOWDOWN``; ``RESILIENT_LLM_BREAKER=off`` switches the breaker off and
    ``RESILIENT_LLM_METRICS_URL`` points it at another ``/metrics``. ``RESILIENT_LLM_REPLICAS`` is a
    comma-separated list of base URLs; ``RESILIENT_LLM_COORDINATION`` a Redis URL (``off`` for none).
    A value the argument would not accept raises :class:`ConfigError` naming the variable and the
    text it holds.
    """
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for var, name in ENV_VARS.items():
        raw = env.get(var)
        if raw is None or raw.strip() == "":
            continue
        text = raw.strip()
        if name in _SWITCHES_OFF and text.lower() in _OFF:
            out[name] = None
        elif name == "breaker":
            if text.lower() not in _ON:
                reject(ENVIRONMENT, var, raw, "'on' or 'off'")
        elif name == "metrics_url":
            out[name] = check_metrics_url(ENVIRONMENT, var, text)
        elif name == "coordination":
            out[name] = text
        elif name == "replicas":
            out[name] = [url.strip() for url in text.split(",") if url.strip()]
        else:
            out[name] = _env_number(var, _RULES[name], raw)
    return out


def _env_number(var: str, rule: _Rule, raw: str) -> Any:
    try:
        return rule.check(ENVIRONMENT, var, (int if rule.integer else float)(raw.strip()))
    except (ValueError, ConfigError):  # named with the text as it was set, not as it was parsed
        raise rejection(ENVIRONMENT, var, raw, rule.expected()) from None


def resolve_breaker(value: object, env: Mapping[str, Any]) -> BreakerConfig | None:
    """``breaker``: NOT_GIVEN → default config (or the environment's), ``None`` → off."""
    if isinstance(value, NotGiven):
        if "breaker" in env:
            return None
        url = env.get("metrics_url")
        return BreakerConfig(metrics_url=url) if url else BreakerConfig()
    if value is None or isinstance(value, BreakerConfig):
        return value
    raise rejection(CLIENT, "breaker", value, "a BreakerConfig or None")


def resolve_rate_limit(value: object, env: Mapping[str, Any]) -> RateLimit | None:
    if isinstance(value, NotGiven):
        rate = env.get("rate_limit")
        if rate is None:
            return None
        return RateLimit(rate=rate, burst=env.get("rate_limit_burst"))
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return RateLimit(rate=check_setting("rate_limit", value))
    raise rejection(CLIENT, "rate_limit", value, "requests per second (> 0), a RateLimit or None")


_REPLICA_URL: Final = "an http(s) URL with a host"


def resolve_replicas(value: object, env: Mapping[str, Any]) -> tuple[str, ...] | None:
    """``replicas``: base URLs of servers that serve the same API, each validated; ``None``: one server."""
    if isinstance(value, NotGiven):
        value = env.get("replicas")
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        reject(CLIENT, "replicas", _shown(value), "a list of base URLs")
    if not value:
        reject(CLIENT, "replicas", value, "a list of at least one base URL")
    urls: list[str] = []
    for i, url in enumerate(value):
        url = check_url(CLIENT, f"replicas[{i}]", url, schemes=("http", "https"), expected=_REPLICA_URL)
        url = url.strip().rstrip("/")
        if url in urls:
            reject(
                CLIENT,
                f"replicas[{i}]",
                mask_url(url),
                f"a server not listed before (replicas[{urls.index(url)}] is the same)",
            )
        urls.append(url)
    return tuple(urls)


def resolve_coordination(value: object, env: Mapping[str, Any]) -> CoordinationConfig | None:
    """``coordination``: a Redis URL or a ``CoordinationConfig``; ``None`` (default) for none.

    Needs the ``redis`` extra: without it, a one-line :class:`ConfigError` says which to install.
    """
    from ._coord import CoordinationConfig
    from ._coord._link import import_coredis

    if isinstance(value, NotGiven):
        value = env.get("coordination")
    if value is None:
        return None
    if isinstance(value, str):
        value = CoordinationConfig(url=value.strip())
    if not isinstance(value, CoordinationConfig):
        reject(CLIENT, "coordination", _shown(value), "a Redis URL, a CoordinationConfig or None")
    import_coredis()
    return value


def _shown(value: object) -> object:
    """A value for an error message, URLs masked."""
    return mask_url(value) if isinstance(value, str) else value
