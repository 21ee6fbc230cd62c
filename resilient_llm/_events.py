"""Events passed to hooks: small frozen objects, emitted on the exceptional paths only.

A hook is any callable taking one event (``hooks=[my_hook]`` on the client). Hooks run inline and must
be quick; an exception in a hook is logged and never breaks the call. Events about one server name it
in ``replica`` (``url`` for :class:`MetricsAvailability`): its base URL with credentials masked, the
same for a client of one server as for each of several ``replicas``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol, TypeAlias, Union

logger = logging.getLogger("resilient_llm")


@dataclass(frozen=True, slots=True)
class RetryScheduled:
    """An attempt failed and another will follow after ``delay`` seconds; ``replica``: where it failed."""

    retry: int
    delay: float
    reason: str
    error: BaseException
    replica: str = ""


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """The circuit breaker of ``replica`` changed state."""

    old_state: str
    new_state: str
    reason: str
    replica: str = ""


@dataclass(frozen=True, slots=True)
class OrphansAborted:
    """The server reported fewer live requests than this client waited on; ``count`` attempts were aborted."""

    count: int
    server_active: int
    client_waiting: int
    replica: str = ""


@dataclass(frozen=True, slots=True)
class MetricsAvailability:
    """The server's ``/metrics`` became usable (``available=True``) or stopped being so."""

    available: bool
    url: str
    detail: str


Event: TypeAlias = Union[RetryScheduled, BreakerTransition, OrphansAborted, MetricsAvailability]  # noqa: UP007 (3.10 runtime alias)


class EventHook(Protocol):
    def __call__(self, event: Event, /) -> None: ...


def emit(hooks: Iterable[EventHook], event: Event) -> None:
    for hook in hooks:
        try:
            hook(event)
        except Exception:
            logger.exception("event hook %r raised on %r", hook, type(event).__name__)
