"""``BreakerConfig``: the circuit breaker's settings (and its ``/metrics`` poller's), validated."""

from __future__ import annotations

import math
from dataclasses import dataclass
from urllib.parse import urlsplit

from .._secrets import mask_url
from ._validate import check_int, check_number, reject

__all__ = ["BreakerConfig"]


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
    ``metrics_url`` and the ``orphan_*`` settings are read by the client's ``/metrics`` poller; they are
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
    min_high_watermark: int = 8
    high_fraction: float = 0.25
    kv_high: float = 0.98
    kv_low: float = 0.90
    failure_threshold: int = 5
    open_cooldown: float = 1.0
    max_cooldown: float = 30.0
    half_open_probes: int = 2
    stale_after: float = 5.0
    poll_interval: float = 0.5
    metrics_url: str | None = None
    # A real vLLM 0.32 on a busy CPU counted a burst's new requests only after up to 13.5 s; the orphan
    # rule tolerates a lag of about 2 x grace (docs/real-vllm.md).
    orphan_grace: float | None = 10.0  # None: no orphan detection (e.g. a base_url over several replicas)
    orphan_grace_min: float = 0.5
    orphan_lag_window: float = 300.0

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
        if self.metrics_url is not None:
            _check_url(self.metrics_url)

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


def _check_url(url: object) -> None:
    expected = "an http(s) URL or None"
    if not isinstance(url, str):
        reject("BreakerConfig", "metrics_url", url, expected)
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        valid = False
    if not valid:
        reject("BreakerConfig", "metrics_url", mask_url(url), expected)
