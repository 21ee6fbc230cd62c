"""Coordination settings: where Redis is, how long leases live, how long one Redis call may take.

All time values are in seconds. The defaults keep Redis off the critical path: a call waits at most
``redis_timeout`` for Redis before it falls back to local limits, and a process that dies gives its
global slots back within ``lease_ttl``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from .._policies._validate import check_int, check_number, check_url, reject
from .._secrets import mask_url

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RECONNECT_INTERVAL",
    "DEFAULT_REDIS_TIMEOUT",
    "REDIS_SCHEMES",
    "CoordinationConfig",
    "mask_url",
]

#: Every key the library writes starts with this (several fleets can share one Redis with others).
DEFAULT_KEY_PREFIX: Final = "resilient_llm"
#: A lease not renewed for this long is gone: the bound on how long a killed process keeps its slots.
DEFAULT_LEASE_TTL: Final = 10.0
#: One Redis round trip may take this long before Redis counts as unreachable (loopback or LAN: ~1 ms).
DEFAULT_REDIS_TIMEOUT: Final = 0.25
#: A process waiting for a global slot asks Redis again this often (jittered), besides on every release.
DEFAULT_POLL_INTERVAL: Final = 0.05
#: While Redis is unreachable, it is tried again this often; calls meanwhile use local limits at once.
DEFAULT_RECONNECT_INTERVAL: Final = 1.0

REDIS_SCHEMES: Final = ("redis", "rediss", "unix")


@dataclass(frozen=True, kw_only=True, slots=True, repr=False)
class CoordinationConfig:
    """Where the fleet's Redis is and how the process uses it.

    ``url``: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://...`` (TLS) or
    ``unix:///path/to/socket``. ``fleet_size``: the number of processes sharing the limits, when it is
    known in advance; otherwise it is counted from live heartbeats. It only sizes the local fallback
    (a fair share of each global limit) while Redis is unreachable.
    """

    url: str
    key_prefix: str = DEFAULT_KEY_PREFIX
    lease_ttl: float = DEFAULT_LEASE_TTL
    redis_timeout: float = DEFAULT_REDIS_TIMEOUT
    poll_interval: float = DEFAULT_POLL_INTERVAL
    reconnect_interval: float = DEFAULT_RECONNECT_INTERVAL
    fleet_size: int | None = None

    def __post_init__(self) -> None:
        owner = "CoordinationConfig"
        _check_url(self.url)
        if (
            not isinstance(self.key_prefix, str)
            or not self.key_prefix
            or any(c in self.key_prefix for c in "{} ")
        ):
            reject(owner, "key_prefix", self.key_prefix, "a non-empty string without braces or spaces")
        check_number(owner, "lease_ttl", self.lease_ttl, above=0)
        check_number(owner, "redis_timeout", self.redis_timeout, above=0)
        check_number(owner, "poll_interval", self.poll_interval, above=0)
        check_number(owner, "reconnect_interval", self.reconnect_interval, above=0)
        if self.redis_timeout * 2 > self.renew_interval:
            reject(
                owner,
                "redis_timeout",
                self.redis_timeout,
                f"at most lease_ttl / 6 = {self.lease_ttl / 6:g} (two renewals must fit in a lease)",
            )
        if self.fleet_size is not None:
            check_int(owner, "fleet_size", self.fleet_size, at_least=1)

    @property
    def renew_interval(self) -> float:
        """Leases and heartbeats are renewed this often: a third of ``lease_ttl``."""
        return self.lease_ttl / 3

    @property
    def ticket_ttl(self) -> float:
        """A waiting process's place in a queue lapses after this long without a poll."""
        return 5 * self.poll_interval + 2 * self.redis_timeout

    def key(self, kind: str, name: str, part: str = "") -> str:
        """The Redis key of ``part`` of the ``kind`` state for ``name``: ``PREFIX:KIND:{NAME}[:PART]``.

        The braces make every key of one name a Redis Cluster hash tag, so one script may touch them all.
        """
        return f"{self.key_prefix}:{kind}:{{{name}}}" + (f":{part}" if part else "")

    @property
    def masked_url(self) -> str:
        return mask_url(self.url)

    def __repr__(self) -> str:
        return (
            f"CoordinationConfig(url={self.masked_url!r}, key_prefix={self.key_prefix!r}, "
            f"lease_ttl={self.lease_ttl:g}, redis_timeout={self.redis_timeout:g}, "
            f"poll_interval={self.poll_interval:g}, reconnect_interval={self.reconnect_interval:g}, "
            f"fleet_size={self.fleet_size!r})"
        )


def _check_url(url: object) -> None:
    expected = f"a Redis URL ({', '.join(s + '://' for s in REDIS_SCHEMES)})"
    check_url("CoordinationConfig", "url", url, schemes=REDIS_SCHEMES, expected=expected)
