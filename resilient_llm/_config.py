"""Settings: defaults, validation, and the ``RESILIENT_LLM_*`` environment variables.

All time values are in seconds. Every setting has a default chosen so that, with no arguments at all,
no call can wait forever: the ``deadline`` bounds each call end to end, whatever else is switched off.

Precedence: an explicit argument, then the environment variable, then the default.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlsplit

from openai import DEFAULT_TIMEOUT as _openai_default_timeout

from ._compat import timeout_parts
from ._exceptions import ConfigError
from ._policies._backoff import Backoff
from ._policies._breaker import BreakerConfig
from ._secrets import mask_url

if TYPE_CHECKING:
    from ._coord import CoordinationConfig

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RAMP_UP",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_TIMEOUT",
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

ENV_PREFIX: Final = "RESILIENT_LLM_"


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number of seconds, got {value!r}")
    v = float(value)
    if math.isnan(v) or math.isinf(v) or v < 0 or (v == 0 and not allow_zero):
        kind = "a non-negative" if allow_zero else "a positive"
        raise ConfigError(f"{name} must be {kind} finite number, got {value!r}")
    return v


def _count(name: str, value: object, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass(frozen=True, kw_only=True, slots=True)
class RateLimit:
    """A token bucket: ``rate`` requests per second on average, up to ``burst`` at once."""

    rate: float
    burst: int | None = None

    def __post_init__(self) -> None:
        _positive("rate_limit.rate", self.rate)
        if self.burst is not None:
            _count("rate_limit.burst", self.burst, minimum=1)

    @property
    def effective_burst(self) -> int:
        """``burst``, or one second's worth of requests (at least 1)."""
        return self.burst if self.burst is not None else max(1, math.ceil(self.rate))


@dataclass(frozen=True, kw_only=True, slots=True)
class RetryBudgetConfig:
    """Retries allowed per sliding ``ttl`` window: ``ratio`` × requests plus ``min_per_second`` × ttl."""

    ratio: float = 0.2
    min_per_second: float = 2.0
    ttl: float = 10.0

    def __post_init__(self) -> None:
        _positive("retry_budget.ratio", self.ratio, allow_zero=True)
        _positive("retry_budget.min_per_second", self.min_per_second, allow_zero=True)
        _positive("retry_budget.ttl", self.ttl)


def check_timeout(value: object, name: str = "timeout") -> object:
    """openai-python's ``timeout``: a number of seconds, ``None``, or a ``Timeout`` of any httpx flavour."""
    if value is None or hasattr(value, "read"):
        return value
    return _positive(name, value)


@dataclass(frozen=True, kw_only=True, slots=True)
class Settings:
    """The resilience settings a client (or a ``with_options`` copy) applies to each call. Immutable.

    ``timeout`` and ``max_retries`` are openai-python's own client attributes (per call: the
    ``timeout`` and ``max_retries`` request options) and live there, not here.
    """

    deadline: float = DEFAULT_DEADLINE
    stall_timeout: float | None = DEFAULT_STALL_TIMEOUT
    backoff: Backoff = field(default_factory=Backoff)

    def __post_init__(self) -> None:
        _positive("deadline", self.deadline)
        if self.stall_timeout is not None:
            _positive("stall_timeout", self.stall_timeout)
        if not isinstance(self.backoff, Backoff):
            raise ConfigError(f"backoff must be a Backoff, got {self.backoff!r}")

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
    backoff: Backoff


# --- environment variables -------------------------------------------------------------------------

_ENV_FLOATS = ("DEADLINE", "STALL_TIMEOUT", "TIMEOUT", "RAMP_UP", "RATE_LIMIT")
_ENV_STRINGS = ("METRICS_URL", "COORDINATION")
_ENV_INTS = ("MAX_CONCURRENCY", "MAX_RETRIES", "RATE_LIMIT_BURST")
_OFF = frozenset({"none", "off", "false", "0", "no", "disabled"})


def read_env(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Settings given as ``RESILIENT_LLM_*`` environment variables, parsed and named by argument.

    ``RESILIENT_LLM_STALL_TIMEOUT=off`` (or ``none``) switches stall detection off; likewise
    ``RATE_LIMIT``; ``RESILIENT_LLM_BREAKER=off`` switches the breaker off and
    ``RESILIENT_LLM_METRICS_URL`` points it at another ``/metrics``. ``RESILIENT_LLM_REPLICAS`` is a
    comma-separated list of base URLs; ``RESILIENT_LLM_COORDINATION`` a Redis URL (``off`` for none).
    """
    env = os.environ if environ is None else environ
    out: dict[str, Any] = {}
    for key in (*_ENV_FLOATS, *_ENV_INTS, *_ENV_STRINGS, "BREAKER", "REPLICAS"):
        raw = env.get(ENV_PREFIX + key)
        if raw is None or raw.strip() == "":
            continue
        text = raw.strip()
        name = key.lower()
        if key in ("STALL_TIMEOUT", "RATE_LIMIT", "BREAKER", "COORDINATION") and text.lower() in _OFF:
            out[name] = None
            continue
        if key == "BREAKER":
            if text.lower() in {"on", "true", "1", "yes", "enabled"}:
                continue
            raise ConfigError(f"{ENV_PREFIX}BREAKER must be 'on' or 'off', got {raw!r}")
        if key in _ENV_STRINGS:
            out[name] = text
            continue
        if key == "REPLICAS":
            out[name] = [url.strip() for url in text.split(",") if url.strip()]
            continue
        try:
            out[name] = int(text) if key in _ENV_INTS else float(text)
        except ValueError:
            kind = "an integer" if key in _ENV_INTS else "a number"
            raise ConfigError(f"{ENV_PREFIX}{key} must be {kind}, got {raw!r}") from None
    return out


def resolve_breaker(value: object, env: Mapping[str, Any]) -> BreakerConfig | None:
    """``breaker``: NOT_GIVEN → default config (or the environment's), ``None`` → off."""
    if isinstance(value, NotGiven):
        if "breaker" in env:
            return None
        url = env.get("metrics_url")
        return BreakerConfig(metrics_url=url) if url else BreakerConfig()
    if value is None or isinstance(value, BreakerConfig):
        return value
    raise ConfigError(f"breaker must be a BreakerConfig or None, got {value!r}")


def resolve_rate_limit(value: object, env: Mapping[str, Any]) -> RateLimit | None:
    if isinstance(value, NotGiven):
        rate = env.get("rate_limit")
        if rate is None:
            return None
        return RateLimit(rate=rate, burst=env.get("rate_limit_burst"))
    if value is None or isinstance(value, RateLimit):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return RateLimit(rate=_positive("rate_limit", value))
    raise ConfigError(f"rate_limit must be requests per second, a RateLimit or None, got {value!r}")


def resolve_replicas(value: object, env: Mapping[str, Any]) -> tuple[str, ...] | None:
    """``replicas``: base URLs of servers that serve the same API, each validated; ``None``: one server."""
    if isinstance(value, NotGiven):
        value = env.get("replicas")
    if value is None:
        return None
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise ConfigError(f"replicas must be a list of base URLs, got {_shown(value)}")
    if not value:
        raise ConfigError("replicas must name at least one base URL, got an empty list")
    urls: list[str] = []
    for i, url in enumerate(value):
        if not isinstance(url, str) or not _is_http_url(url):
            raise ConfigError(f"replicas[{i}] must be an http(s) URL with a host, got {_shown(url)}")
        url = url.strip().rstrip("/")
        if url in urls:
            raise ConfigError(f"replicas[{i}] repeats replicas[{urls.index(url)}]: {mask_url(url)!r}")
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
        raise ConfigError(
            f"coordination must be a Redis URL, a CoordinationConfig or None, got {_shown(value)}"
        )
    import_coredis()
    return value


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url.strip())
        return parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        return False


def _shown(value: object) -> str:
    """A value for an error message, URLs masked."""
    return repr(mask_url(value)) if isinstance(value, str) else repr(value)
