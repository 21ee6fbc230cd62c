"""``BreakerConfig``: the circuit breaker's settings (and its ``/metrics`` poller's), validated."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from .._secrets import mask_url
from ._validate import check_int, check_number, check_url, reject

__all__ = [
    "DEFAULT_FAILURE_THRESHOLD",
    "DEFAULT_HALF_OPEN_PROBES",
    "DEFAULT_HIGH_FRACTION",
    "DEFAULT_KV_HIGH",
    "DEFAULT_KV_LOW",
    "DEFAULT_MAX_COOLDOWN",
    "DEFAULT_MIN_HIGH_WATERMARK",
    "DEFAULT_OPEN_COOLDOWN",
    "DEFAULT_ORPHAN_GRACE",
    "DEFAULT_ORPHAN_GRACE_MIN",
    "DEFAULT_ORPHAN_LAG_WINDOW",
    "DEFAULT_OUTAGE_WAIT",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_STALE_AFTER",
    "DEFAULT_WAIT_FOR_SERVER",
    "METRICS_URL_SCHEMES",
    "BreakerConfig",
    "check_metrics_url",
]

DEFAULT_MIN_HIGH_WATERMARK: Final = 8
DEFAULT_HIGH_FRACTION: Final = 0.25
DEFAULT_KV_HIGH: Final = 0.98
DEFAULT_KV_LOW: Final = 0.90
DEFAULT_FAILURE_THRESHOLD: Final = 5
DEFAULT_OPEN_COOLDOWN: Final = 1.0
DEFAULT_MAX_COOLDOWN: Final = 30.0
DEFAULT_HALF_OPEN_PROBES: Final = 2
DEFAULT_STALE_AFTER: Final = 5.0
DEFAULT_POLL_INTERVAL: Final = 0.5
#: A real vLLM 0.32 on a busy CPU counted a burst's new requests only after up to 13.5 s; the orphan
#: rule tolerates a lag of about 2 x grace (docs/real-vllm.md).
DEFAULT_ORPHAN_GRACE: Final = 10.0
DEFAULT_ORPHAN_GRACE_MIN: Final = 0.5  # about one poll interval
DEFAULT_ORPHAN_LAG_WINDOW: Final = 300.0
DEFAULT_OUTAGE_WAIT: Final = 300.0
DEFAULT_WAIT_FOR_SERVER: Final = 0.0

METRICS_URL_SCHEMES: Final = ("http", "https")


@dataclass(frozen=True, kw_only=True, slots=True)
class BreakerConfig:
    """Settings of the :class:`Breaker` (and of the client's ``/metrics`` poller); seconds for times.

    ``high_watermark``: waiting requests at which new calls are held; ``None`` derives it from the
    observed capacity (the largest ``running`` seen) as ``max(min_high_watermark,
    ceil(high_fraction * capacity))``. ``low_watermark``: calls resume at or below it; ``None`` is
    ``high // 2``. ``kv_high`` / ``kv_low``: the same for KV cache usage (0..1).
    ``failure_threshold`` consecutive failures open the breaker for ``open_cooldown``, doubled per
    consecutive re-open up to ``max_cooldown``; ``half_open_probes`` calls go through in half-open and
    as many successes close it. A load older than ``stale_after`` is ignored. ``poll_interval``,
    ``metrics_url`` and the ``orphan_*`` settings are read by the client's ``/metrics`` poller. A server
    that refuses connections is waited for — only the breaker's probes go out — for ``outage_wait``
    seconds once it has answered this client before, and for ``wait_for_server`` seconds (default 0)
    before it ever answered; otherwise refused connections are failed attempts like any other. These are
    validated here (``stale_after`` must exceed ``poll_interval``). The repr masks credentials and
    query strings in ``metrics_url``.

    Orphan detection waits a *grace* before it trusts the server's count (``_vllm/_orphans.py``).
    ``orphan_grace`` is the longest grace, the one in force until the server has shown how fast it
    counts this client's requests, and at any larger load than it has shown; from that evidence the
    grace is learned (``_vllm/_lag.py``), down to ``orphan_grace_min`` (about one poll interval),
    from the observations of the last ``orphan_lag_window`` seconds. An ``orphan_grace`` at or below
    ``orphan_grace_min`` is a fixed grace: no learning. ``orphan_grace=None`` switches orphan detection
    off, for a ``base_url`` that balances over several servers whose ``/metrics`` describe only one
    of them.
    """

    high_watermark: int | None = None
    low_watermark: int | None = None
    min_high_watermark: int = DEFAULT_MIN_HIGH_WATERMARK
    high_fraction: float = DEFAULT_HIGH_FRACTION
    kv_high: float = DEFAULT_KV_HIGH
    kv_low: float = DEFAULT_KV_LOW
    failure_threshold: int = DEFAULT_FAILURE_THRESHOLD
    open_cooldown: float = DEFAULT_OPEN_COOLDOWN
    max_cooldown: float = DEFAULT_MAX_COOLDOWN
    half_open_probes: int = DEFAULT_HALF_OPEN_PROBES
    stale_after: float = DEFAULT_STALE_AFTER
    poll_interval: float = DEFAULT_POLL_INTERVAL
    metrics_url: str | None = None
    orphan_grace: float | None = DEFAULT_ORPHAN_GRACE  # None: no orphan detection (e.g. several replicas)
    orphan_grace_min: float = DEFAULT_ORPHAN_GRACE_MIN
    orphan_lag_window: float = DEFAULT_ORPHAN_LAG_WINDOW
    #: A server that answered this client before and now refuses connections (a restart) is waited for
    #: this long, within each call's deadline; after that, refusals count as failed attempts.
    outage_wait: float = DEFAULT_OUTAGE_WAIT
    #: The same wait for a server that has not answered yet (a pipeline started while vLLM loads its
    #: weights), from the client's first call. 0: such a server fails calls like any refused connection.
    wait_for_server: float = DEFAULT_WAIT_FOR_SERVER

    def __post_init__(self) -> None:
        name = "BreakerConfig"
        if self.high_watermark is not None:
            check_int(name, "high_watermark", self.high_watermark, at_least=1)
        if self.low_watermark is not None:
            check_int(name, "low_watermark", self.low_watermark, at_least=0)
            if self.high_watermark is not None and self.low_watermark > self.high_watermark:
                reject(name, "low_watermark", self.low_watermark, f"<= high_watermark={self.high_watermark}")
        check_int(name, "min_high_watermark", self.min_high_watermark, at_least=1)
        check_number(name, "high_fraction", self.high_fraction, above=0)
        check_number(name, "kv_high", self.kv_high, above=0, at_most=1)
        check_number(name, "kv_low", self.kv_low, above=0, at_most=self.kv_high)
        check_int(name, "failure_threshold", self.failure_threshold, at_least=1)
        check_number(name, "open_cooldown", self.open_cooldown, above=0)
        check_number(name, "max_cooldown", self.max_cooldown, at_least=self.open_cooldown)
        check_int(name, "half_open_probes", self.half_open_probes, at_least=1)
        check_number(name, "poll_interval", self.poll_interval, above=0)
        check_number(name, "stale_after", self.stale_after, above=self.poll_interval)
        if self.orphan_grace is not None:
            check_number(name, "orphan_grace", self.orphan_grace, at_least=0)
        check_number(name, "orphan_grace_min", self.orphan_grace_min, at_least=0)
        check_number(name, "orphan_lag_window", self.orphan_lag_window, above=0)
        check_number(name, "outage_wait", self.outage_wait, at_least=0)
        check_number(name, "wait_for_server", self.wait_for_server, at_least=0)
        if self.metrics_url is not None:
            check_metrics_url(name, "metrics_url", self.metrics_url, none_ok=True)

    def watermarks(self, capacity: int | None) -> tuple[int, int]:
        """``(high, low)`` in effect when the largest ``running`` seen is ``capacity`` (``None``: unknown)."""
        if self.high_watermark is not None:
            high = self.high_watermark
        else:
            high = max(self.min_high_watermark, math.ceil(self.high_fraction * (capacity or 0)))
        low = high // 2 if self.low_watermark is None else min(self.low_watermark, high)
        return high, low

    def orphan_grace_range(self) -> tuple[float, float] | None:
        """``(shortest, longest)`` grace of orphan detection; equal when fixed, ``None`` when it is off."""
        if self.orphan_grace is None:
            return None
        return min(self.orphan_grace_min, self.orphan_grace), self.orphan_grace

    def __repr__(self) -> str:
        shown = []
        for key in self.__dataclass_fields__:
            value = getattr(self, key)
            if key == "metrics_url" and value is not None:
                value = mask_url(value)
            shown.append(f"{key}={value!r}")
        return f"BreakerConfig({', '.join(shown)})"


def check_metrics_url(owner: str, name: str, url: object, *, none_ok: bool = False) -> str:
    """An http(s) URL for ``/metrics`` (the breaker's ``metrics_url``, ``RESILIENT_LLM_METRICS_URL``)."""
    expected = "an http(s) URL" + (" or None" if none_ok else "")
    return check_url(owner, name, url, schemes=METRICS_URL_SCHEMES, expected=expected)
