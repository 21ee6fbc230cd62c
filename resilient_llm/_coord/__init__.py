"""Coordination through Redis: limits shared by every process of a fleet, on every host.

Per server (named by :func:`server_key`): a global concurrency limit (leases with an expiry and a
fair ticket queue), a global token bucket (GCRA), a global retry budget, and a shared view of the
server's ``/metrics`` scraped by one process at a time. Every Redis call is bounded in time; when
Redis is unreachable each object falls back to local limits sized as a fair share of the global one.

Needs the ``redis`` extra (coredis); nothing here imports it until a :class:`Coordinator` is entered.
"""

from __future__ import annotations

from ._bucket import GlobalTokenBucket, gcra_reserve
from ._budget import GlobalRetryBudget
from ._config import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_LEASE_TTL,
    DEFAULT_POLL_INTERVAL,
    DEFAULT_RECONNECT_INTERVAL,
    DEFAULT_REDIS_TIMEOUT,
    CoordinationConfig,
    mask_url,
)
from ._coordinator import Coordinator, server_key
from ._errors import CoordinationUnavailable, GlobalWaitTimeout
from ._fleet import fair_rate, fair_share
from ._leases import GlobalConcurrencyLimit, Lease
from ._view import SharedLoad, SharedServerView

__all__ = [
    "DEFAULT_KEY_PREFIX",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_POLL_INTERVAL",
    "DEFAULT_RECONNECT_INTERVAL",
    "DEFAULT_REDIS_TIMEOUT",
    "CoordinationConfig",
    "CoordinationUnavailable",
    "Coordinator",
    "GlobalConcurrencyLimit",
    "GlobalRetryBudget",
    "GlobalTokenBucket",
    "GlobalWaitTimeout",
    "Lease",
    "SharedLoad",
    "SharedServerView",
    "fair_rate",
    "fair_share",
    "gcra_reserve",
    "mask_url",
    "server_key",
]
