"""One server a client sends to — its only one, or one of its ``replicas`` — and what is kept per server.

A replica owns its lane in the client's limiter, its circuit breaker and slow-start ramp, and its
:class:`~resilient_llm._upstream.Upstream` (has it answered, its ``/metrics`` monitor, orphan detection
over the attempts waiting on it, the cap and admission it feeds its lane). A client of several
replicas also learns which models each serves from its ``/v1/models``: before its first call that
names a model (the engine reads every replica's list at once, :meth:`Replica.read_models`), then every
:data:`MODELS_REFRESH` seconds from its monitor. A replica whose list cannot be read counts as serving
any model. With coordination on, the monitor reads the load
through the fleet's shared view (one process scrapes a server at a time; ``_coordination.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final

import anyio

from ._clock import Clock
from ._events import EventHook
from ._hedge import Pace
from ._http._base import Transport
from ._json import loads
from ._limiter import Lane
from ._policies._breaker import Breaker, BreakerConfig
from ._policies._ramp import Ramp
from ._secrets import mask_url
from ._testing_mode import is_testing
from ._upstream import Upstream
from ._vllm._monitor import Scrape

logger = logging.getLogger("resilient_llm")

#: Seconds between two reads of a replica's ``/v1/models`` (servers rarely change what they serve).
MODELS_REFRESH: Final = 600.0
#: The longest a read of ``/v1/models`` may take.
MODELS_TIMEOUT: Final = 2.0

#: ``share(replica)``: the replica's load read through the fleet's view, or ``None`` to scrape it here.
ShareScrape = Callable[["Replica"], Awaitable[Scrape] | None]
#: Told ``(replica, old_state, new_state, reason)`` on every change of a replica's breaker.
TransitionListener = Callable[["Replica", str, str, str], None]


class Replica:
    """One server of a client (see the module docstring). ``base_url`` keeps its credentials: never log it."""

    def __init__(
        self,
        *,
        index: int,
        base_url: str,
        metrics_url: str | None,
        max_concurrency: int | None,
        ramp_up: float,
        breaker: BreakerConfig | None,
        transport: Callable[[], Transport],
        clock: Clock,
        hooks: tuple[EventHook, ...] = (),
        headers: Callable[[], Mapping[str, str]] | None = None,
        on_transition: TransitionListener | None = None,
        share: ShareScrape | None = None,
    ) -> None:
        self.index = index
        self.base_url = base_url
        self.name = mask_url(base_url)
        self.ramp = Ramp(duration=ramp_up, clock=clock) if ramp_up > 0 and not is_testing() else None
        self.breaker = Breaker(breaker, clock=clock) if breaker is not None else None
        self.lane = Lane(
            max_concurrency=max_concurrency or 1, ramp=self.ramp, breaker=self.breaker, index=index
        )
        self._transport = transport
        self._headers = headers  # None: a client of one server, which never reads /v1/models
        self._clock = clock
        self._share = share
        self._models_due = 0.0
        #: How fast this server's answers arrive, token by token (hedging, silent answers: ``_hedge.py``).
        self.pace = Pace()
        self.upstream = Upstream(
            server=self.name,
            metrics_url=metrics_url if breaker is not None else None,
            breaker=self.breaker,
            lane=self.lane,
            adaptive=max_concurrency is None,
            transport=transport,
            clock=clock,
            hooks=hooks,
            scrape=self._scrape,
            pace=self.pace,
        )
        self.watches = self.upstream.watches
        #: Attempts sent here, and those that failed (totals since the client was created).
        self.attempts = 0
        self.failures = 0
        if self.breaker is not None and on_transition is not None:
            listener = on_transition
            self.breaker.add_listener(lambda old, new, reason: listener(self, old, new, reason))

    @property
    def models(self) -> frozenset[str] | None:
        """The models it serves, from its ``/v1/models``; ``None`` while not known."""
        return self.lane.models

    def usable(self, model: str | None) -> bool:
        """Whether a call for ``model`` could go here now: it serves the model, its breaker lets calls in."""
        b = self.breaker
        return self.lane.serves(model) and (b is None or b.state in ("closed", "holding"))

    def answering(self) -> None:
        """An attempt here began to receive its answer (a probe that did closes a half-open breaker)."""
        if self.breaker is not None:
            self.breaker.on_answering()

    async def _scrape(self) -> Scrape:
        """The monitor's read of the load: the model list first when it is due."""
        if self._headers is not None and self._clock() >= self._models_due:
            await self.read_models()
        if self._share is not None:
            shared = self._share(self)
            if shared is not None:
                return await shared
        return await self.upstream.scrape()

    async def read_models(self) -> None:
        """Read ``/v1/models`` (within :data:`MODELS_TIMEOUT`); keep what was known when it cannot be
        read. Never raises."""
        if self._headers is None:
            return  # a client of one server has nothing to choose
        self._models_due = self._clock() + MODELS_REFRESH
        headers = self._headers()
        try:
            with anyio.move_on_after(MODELS_TIMEOUT):
                raw = await self._transport().request(
                    "GET",
                    self.base_url + "/models",
                    headers={**headers, "accept": "application/json"},
                    content=None,
                    connect_timeout=1.0,
                )
                body = await raw.read()
                if raw.status == 200:
                    models = _model_ids(loads(body))
                    if models is not None and models != self.lane.models:
                        logger.info("%s serves %s", self.name, ", ".join(sorted(models)) or "no model")
                        self.lane.models = models or None
        except Exception as exc:  # no list is a normal condition: the replica serves any model
            logger.debug("reading the models of %s failed: %s: %s", self.name, type(exc).__name__, exc)

    def __repr__(self) -> str:
        return f"Replica({self.index}, {self.name!r}, lane={self.lane!r})"


def _model_ids(data: Any) -> frozenset[str] | None:
    """The ``id`` of each card of an OpenAI model list, or ``None`` when ``data`` is not one."""
    cards = data.get("data") if isinstance(data, dict) else None
    if not isinstance(cards, list):
        return None
    return frozenset(str(card["id"]) for card in cards if isinstance(card, dict) and "id" in card)


__all__ = ["MODELS_REFRESH", "Replica", "ShareScrape", "TransitionListener"]
