"""What the call pipeline knows of the server it talks to, and what it asks of it.

* **Has it ever answered?** A server that refused connections from the start (a wrong port, a server
  never started) is an error, as openai-python makes it: ``ServerUnreachable`` is retried like any
  connection error and the call fails after the normal retries, in seconds. Only a server that answered
  this client before — a restart, an outage — is waited for, within the call's deadline and for at most
  ``BreakerConfig.outage_wait`` seconds of outage, with only the breaker's probes going out. A pipeline
  started while vLLM is still loading its weights asks for that wait from the start:
  ``BreakerConfig.wait_for_server``.
* **How much may it take?** Its ``/metrics`` (through :class:`~resilient_llm._vllm._monitor.ServerMonitor`)
  feed the breaker and the limiter: with no ``max_concurrency`` given, the limit follows the server's
  batch capacity once it showed it (``running`` stayed put while requests waited) plus the queue the
  breaker allows, and new calls enter by the server's headroom (free sequences plus queue room below the
  high watermark). Before it showed that, the limit starts at :data:`FALLBACK_CONCURRENCY` and doubles
  with each scrape that shows no request waiting, or a queue the server takes in within its next update
  (twice the requests it shows); while the server shows no metrics, :data:`FALLBACK_CONCURRENCY` is the
  limit. The first scrape that reads the metrics ends the slow-start ramp.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Final

import anyio

from ._clock import Clock
from ._events import EventHook
from ._exceptions import ServerUnreachable
from ._hedge import Pace
from ._http._base import Transport
from ._limiter import Lane
from ._load import ServerLoad
from ._policies._breaker import Breaker
from ._testing_mode import is_testing
from ._vllm._metrics import parse_metrics
from ._vllm._monitor import Scrape, ServerMonitor
from ._watch import Watches

logger = logging.getLogger("resilient_llm")

#: Calls in flight at once while the server shows no ``/metrics`` and no ``max_concurrency`` was given.
FALLBACK_CONCURRENCY: Final = 64
#: The limit with no ``max_concurrency`` given, whatever the server shows: a guard against runaway use.
ADAPTIVE_CEILING: Final = 4096


class Upstream:
    """One server as the pipeline of a client sees it (shared by its ``with_options`` copies).

    ``lane`` is the server's lane in the client's limiter (one per replica). ``scrape``, when given,
    is how the monitor reads the load (a replica's: through the fleet's shared view); by default
    :meth:`scrape`, a GET of ``metrics_url``.
    """

    def __init__(
        self,
        *,
        server: str,
        metrics_url: str | None,
        breaker: Breaker | None,
        lane: Lane,
        adaptive: bool,
        transport: Callable[[], Transport],
        clock: Clock,
        hooks: tuple[EventHook, ...] = (),
        scrape: Callable[[], Awaitable[Scrape]] | None = None,
        pace: Pace | None = None,
    ) -> None:
        self.server = server  # masked: for log lines
        self._metrics_url = metrics_url
        self._breaker = breaker
        self._lane = lane
        self._adaptive = adaptive
        self._transport = transport
        self._clock = clock
        self.answered = False
        self._created_at: float | None = None
        self._unreachable_since: float | None = None
        self.watches: Watches | None = None
        self.monitor: ServerMonitor | None = None
        if adaptive:
            lane.max_concurrency = ADAPTIVE_CEILING
            lane.server_cap = FALLBACK_CONCURRENCY
        if breaker is not None:
            self.watches = Watches()
            if metrics_url is not None:
                self.monitor = ServerMonitor(
                    config=breaker.config,
                    server=server,
                    scrape=scrape or self.scrape,
                    on_load=self.on_load,
                    on_idle=self.on_idle,
                    watches=self.watches,
                    busy=lambda: lane.in_flight > 0 or lane.queued > 0,
                    clock=clock,
                    hooks=hooks,
                    pace=pace,
                )

    # --- did it answer? ----------------------------------------------------------------------------
    def call_started(self) -> None:
        if self._created_at is None:
            self._created_at = self._clock()
        if self.monitor is not None and not is_testing():
            self.monitor.ensure_running()

    def responded(self) -> None:
        """An HTTP response arrived (any status): the server is up and has answered this client."""
        self.answered = True
        self._unreachable_since = None

    def waits_for(self, exc: BaseException) -> bool:
        """Whether a refused connection makes the call wait for the server instead of using a retry."""
        breaker = self._breaker
        if not isinstance(exc, ServerUnreachable) or breaker is None:
            return False
        now = self._clock()
        if self._unreachable_since is None:
            self._unreachable_since = now
            if self.answered and self.monitor is not None:
                self.monitor.server_restarted()  # it went away: what its metrics taught is void
        config = breaker.config
        if self.answered:
            return now - self._unreachable_since < config.outage_wait
        started = self._created_at if self._created_at is not None else now
        return now - started < config.wait_for_server

    # --- its load ----------------------------------------------------------------------------------
    async def scrape(self) -> Scrape:
        """One read of ``/metrics``; never raises (no metrics is a normal condition)."""
        url = self._metrics_url
        assert url is not None and self._breaker is not None
        budget = max(1.0, 2 * self._breaker.config.poll_interval)
        requested_at = self._clock()  # the counts are taken between this and the answer's arrival
        try:
            with anyio.move_on_after(budget):
                raw = await self._transport().request(
                    "GET", url, headers={"accept": "text/plain"}, content=None, connect_timeout=1.0
                )
                body = await raw.read()
                if raw.status != 200:
                    # 4xx: nothing there (OpenAI, a gateway, a mock); 5xx: the server is in trouble
                    return Scrape(None, f"HTTP {raw.status}", absent=400 <= raw.status < 500)
                self.responded()
                text = body.decode("utf-8", "replace")
                load = parse_metrics(text, scraped_at=self._clock(), requested_at=requested_at)
                if load is None:
                    return Scrape(None, "no vLLM request gauges in the response", absent=True)
                return Scrape(load)
            return Scrape(None, f"no answer within {budget:g}s")
        except Exception as exc:  # a failed scrape says nothing more than that
            return Scrape(None, f"{type(exc).__name__}: {exc}")

    def on_load(self, load: ServerLoad | None) -> None:
        """A scrape's load (``None``: none this time): the breaker's input, the limiter's admission."""
        breaker = self._breaker
        assert breaker is not None
        breaker.on_load(load)
        lane = self._lane
        if load is not None:
            lane.scraped()
            lane.end_ramp()
        available = breaker.metrics_available
        if self._adaptive:
            saturated = breaker.saturated_capacity
            if not available:
                lane.server_cap = FALLBACK_CONCURRENCY
            elif saturated is None:
                # No limit seen yet: double what the server shows it holds, scrape by scrape, as a
                # slow start does, while nothing waits or what waits is taken in within its next
                # update. Only counts the server shows: a scrape from before this client's sends
                # (its /metrics lag) must not double a limit those sends already fill.
                if load is not None and (load.waiting == 0 or breaker.absorbing):
                    lane.server_cap = max(lane.server_cap or 0, FALLBACK_CONCURRENCY, 2 * load.active)
            else:
                lane.server_cap = saturated + (breaker.high_watermark or 0)
        lane.set_admission_budget(self._headroom(load) if available else None)

    def on_idle(self) -> None:
        """Polling stopped: nobody renews the admission budget, so none may hold calls."""
        self._lane.set_admission_budget(None)

    def _headroom(self, load: ServerLoad | None) -> int | None:
        """New calls the server can take now: free sequences plus queue room below the high watermark.

        Only once the server showed its capacity (a full batch with requests waiting); before that
        nothing says where its limit is, and new calls are not held back.
        """
        breaker = self._breaker
        if load is None or breaker is None:
            return None
        capacity, high = breaker.saturated_capacity, breaker.high_watermark
        if capacity is None or high is None:
            return None
        return capacity + high - load.active

    async def aclose(self) -> None:
        if self.monitor is not None:
            await self.monitor.stop()


__all__ = ["ADAPTIVE_CEILING", "FALLBACK_CONCURRENCY", "Upstream"]
