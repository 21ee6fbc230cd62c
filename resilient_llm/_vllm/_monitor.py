"""The server monitor: one background poll of ``/metrics`` per client.

Every ``poll_interval`` it scrapes the server, hands the load to the breaker (queue-depth hold), wakes
the limiter, and runs the orphan rule (``_orphans.py``) over the attempts this client is waiting on.

It starts lazily with the first call and stops with ``close()``. A background task needs a loop to live
on: on asyncio it is a task of the running loop (re-created if a later ``asyncio.run()`` brings a new
loop); on other backends the monitor stays off and the breaker works from failures alone (logged once).
A scrape that fails, times out or returns something that is not vLLM's metrics counts as "no metrics":
never an error, never a block.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import anyio
import sniffio

from .._events import MetricsAvailability, OrphansAborted, emit
from .._policies._breaker_config import BreakerConfig
from .._secrets import mask_url
from ._load import ServerLoad
from ._metrics import parse_metrics
from ._orphans import OrphanDetector

if TYPE_CHECKING:
    from .._attempt import Watch
    from .._engine import Engine

logger = logging.getLogger("resilient_llm.monitor")


class ServerMonitor:
    def __init__(self, engine: Engine, config: BreakerConfig, metrics_url: str | None) -> None:
        self._engine = engine
        self._config = config
        self.url = config.metrics_url or metrics_url
        self._detector: OrphanDetector[Watch] | None = (
            None if config.orphan_grace is None else OrphanDetector(grace=config.orphan_grace)
        )
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._warned_backend = False
        self._available: bool | None = None
        self.last_load: ServerLoad | None = None

    def ensure_started(self) -> None:
        task = self._task
        if task is not None and not task.done():
            try:
                if asyncio.get_running_loop() is self._loop:
                    return
            except RuntimeError:
                return
        if self.url is None:
            return
        if sniffio.current_async_library() != "asyncio":
            if not self._warned_backend:
                self._warned_backend = True
                logger.info("metrics polling needs asyncio; the breaker uses failures only on this backend")
            return
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._run(), name="resilient_llm metrics poller")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        try:
            if asyncio.get_running_loop() is self._loop:
                with anyio.move_on_after(2.0):
                    await asyncio.gather(task, return_exceptions=True)
        except RuntimeError:
            pass

    async def _run(self) -> None:
        engine = self._engine
        breaker = engine.breaker
        assert breaker is not None
        interval = self._config.poll_interval
        try:
            while not engine.closed:
                load = await self.scrape()
                try:
                    self._note_availability(load)
                    self.last_load = load
                    breaker.on_load(load)
                    engine.limiter.set_admission_budget(self._headroom(load))
                    if load is not None and engine.watches:
                        if self._detector is not None:
                            self._abort_orphans(load, self._detector)
                        if load.waiting:
                            self._excuse_queued(load)
                except Exception:  # a bug here must neither stop the poller nor leave calls held
                    logger.exception("server monitor: handling a scrape failed")
                    engine.limiter.set_admission_budget(None)
                await anyio.sleep(interval)
        finally:
            # Without a poller nobody renews the admission budget: never leave calls held on a stale one.
            engine.limiter.set_admission_budget(None)

    async def scrape(self) -> ServerLoad | None:
        assert self.url is not None
        engine = self._engine
        try:
            with anyio.move_on_after(max(1.0, 2 * self._config.poll_interval)):
                raw = await engine.transport.request(
                    "GET", self.url, headers={"accept": "text/plain"}, content=None, connect_timeout=1.0
                )
                body = await raw.read()
                if raw.status != 200:
                    self._detail = f"HTTP {raw.status}"
                    return None
                load = parse_metrics(body.decode("utf-8", "replace"), scraped_at=engine.clock())
                self._detail = "no vLLM request gauges" if load is None else "ok"
                return load
            self._detail = "timed out"
        except Exception as exc:  # never let the poller die: no metrics is a normal condition
            self._detail = f"{type(exc).__name__}: {exc}"
        return None

    _detail = ""

    def _note_availability(self, load: ServerLoad | None) -> None:
        """Hooks hear when metrics come and go (the breaker logs it, once each way)."""
        available = load is not None
        if available == self._available:
            return
        first = self._available is None
        self._available = available
        if first and available:
            logger.info("reading server load from %s", mask_url(str(self.url)))
        elif self._engine.hooks:
            emit(
                self._engine.hooks,
                MetricsAvailability(available=available, url=mask_url(str(self.url)), detail=self._detail),
            )

    def _headroom(self, load: ServerLoad | None) -> int | None:
        """New calls the server can take now: free sequences plus queue room below the high watermark."""
        breaker = self._engine.breaker
        if load is None or breaker is None or not breaker.metrics_available:
            return None
        capacity, high = breaker.capacity, breaker.high_watermark
        if capacity is None or high is None:
            return None
        return capacity + high - load.active

    def _excuse_queued(self, load: ServerLoad) -> None:
        """vLLM sends nothing while a request waits to be scheduled: that silence is no stall.

        Up to ``load.waiting`` of this client's attempts that have received no byte yet get their
        silence clock restarted, newest first (in a FIFO queue the newest wait longest). The rest are
        left to the stall limit and the orphan rule.
        """
        now = self._engine.clock()
        unstarted = [w for w in self._engine.watches or () if not w.started and not w.orphaned]
        for w in unstarted[-load.waiting :]:
            w.excuse_silence(now)

    def _abort_orphans(self, load: ServerLoad, detector: OrphanDetector[Watch]) -> None:
        engine = self._engine
        watches = engine.watches
        assert watches is not None
        silent = [(w, w.silent_since) for w in watches]
        # Attempts this scrape must count: sent long enough ago to be past the metrics lag, or already
        # answering (a request streaming its answer is scheduled, hence counted).
        settled, scraped = load.scraped_at - detector.grace, load.scraped_at
        known = sum(
            1
            for w in watches
            if w.sent_at <= settled or (w.first_byte_at is not None and w.first_byte_at <= scraped)
        )
        streaming = [w for w in watches if w.first_byte_at is not None and w.first_byte_at <= scraped]
        victims: list[Any] = detector.observe(load, silent, engine.clock(), known=known, streaming=streaming)
        if not victims:
            return
        for w in victims:
            w.abort_orphan(load.active, len(silent))
        logger.warning(
            "server reports %d running+waiting request(s) while this client waits on %d: "
            "aborting %d orphan(s)",
            load.active,
            len(silent),
            len(victims),
        )
        if engine.hooks:
            emit(
                engine.hooks,
                OrphansAborted(count=len(victims), server_active=load.active, client_waiting=len(silent)),
            )
