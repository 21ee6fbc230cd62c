"""``VLLMSimulator``: the simulated vLLM served by aiohttp on a real loopback socket.

::

    async with VLLMSimulator(SimulatorConfig(capacity=4, time_scale=0.01)) as sim:
        client = AsyncOpenAI(base_url=sim.base_url, api_key="EMPTY")
        ...
        print(sim.stats().tokens_wasted)

It runs on the current asyncio loop; :class:`~resilient_llm.testing.SimulatorThread` runs one on a
loop of its own for trio or synchronous code. A restart really closes the listening socket and
every open connection, so clients see refused connections until it is back; :meth:`die` does the
same for good. :meth:`set_draining` makes it refuse new generation requests with 503 (and answer
``/health`` with 503) while the running ones finish. Several of them side by side:
:class:`~resilient_llm.testing.SimulatedReplicas`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from types import TracebackType

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from resilient_llm.testing._config import SimulatorConfig
from resilient_llm.testing._core import MetricsMode, SimulatorCore
from resilient_llm.testing._handlers import GenerationHandlers, error_response, stamp_request_id
from resilient_llm.testing._request_log import log_requests
from resilient_llm.testing._stats import InFlightGauge, QueueSample, SimulatorStats
from resilient_llm.testing._wire import dumps, models_body

__all__ = ["VLLMSimulator"]

logger = logging.getLogger("resilient_llm.testing")

_SHUTDOWN_TIMEOUT = 1.0
_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_GENERATION_PATHS = frozenset({"/v1/chat/completions", "/v1/completions", "/v1/embeddings"})
_DRAINING = "The server is draining: it finishes the requests it has and accepts no new ones."


@web.middleware
async def _json_http_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods answer as FastAPI does: ``{"detail": "Not Found"}``."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status not in (404, 405):
            raise
        response = web.Response(
            status=exc.status, body=dumps({"detail": exc.reason}), content_type="application/json"
        )
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response


class VLLMSimulator:
    """An OpenAI-compatible server that behaves like vLLM where it matters (see :class:`SimulatorConfig`).

    ``gauges``: extra in-flight gauges to count this server's generation requests in (the replica set
    passes one shared by all its replicas); the server always keeps its own (``peak_in_flight``).
    """

    def __init__(
        self, config: SimulatorConfig | None = None, *, gauges: Sequence[InFlightGauge] = ()
    ) -> None:
        self._config = config if config is not None else SimulatorConfig()
        self._gauges = tuple(gauges)
        self._draining = False
        self._core: SimulatorCore | None = None
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._port = self._config.port
        self._up = asyncio.Event()
        self._background: set[asyncio.Task[None]] = set()
        self._comeback: asyncio.Task[None] | None = None

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> VLLMSimulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind ``config.host`` (a free port unless ``config.port`` is set) and start serving."""
        if self._runner is not None:
            raise RuntimeError("the simulator is already started")
        core = SimulatorCore(self._config, asyncio.get_running_loop(), on_restart=self._restart_soon)
        generation = GenerationHandlers(core)
        middlewares = [_json_http_errors, self._gate(core)]
        if self._config.log_requests:
            middlewares.insert(0, log_requests)
        app = web.Application(client_max_size=64 * 1024 * 1024, middlewares=middlewares)
        app.router.add_post("/v1/chat/completions", generation.chat)
        app.router.add_post("/v1/completions", generation.completions)
        app.router.add_post("/v1/embeddings", generation.embeddings)
        app.router.add_post("/v1/responses", generation.responses)
        app.router.add_get("/v1/models", self._models)
        app.router.add_get("/health", self._health)
        app.router.add_get("/version", self._version)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/simulator/stats", self._stats)
        app.on_response_prepare.append(stamp_request_id)
        runner = web.AppRunner(
            app, access_log=None, handler_cancellation=True, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await runner.setup()
        self._core, self._runner = core, runner
        try:
            await self._bind()
        except BaseException:
            await self.close()
            raise
        logger.debug("simulated vLLM serving %s on %s", self._config.model, self.base_url)

    async def close(self) -> None:
        """Stop serving: open connections are dropped, held requests end."""
        for task in [*self._background, *([self._comeback] if self._comeback else [])]:
            task.cancel()
        if self._core is not None:
            self._core.close()
        if self._runner is not None:
            self._drop_connections()
            await self._runner.cleanup()
        self._runner = self._site = self._core = None
        self._up.clear()

    def _gate(self, core: SimulatorCore) -> Middleware:
        """Count generation requests in flight; while draining, refuse them (503) and fail ``/health``."""
        gauges = (core.stats.in_flight, *self._gauges)

        @web.middleware
        async def gate(request: web.Request, handler: Handler) -> web.StreamResponse:
            if request.method != "POST" or request.path not in _GENERATION_PATHS:
                if self._draining and request.path == "/health":
                    return web.Response(status=503)
                return await handler(request)
            for gauge in gauges:
                gauge.enter()
            try:
                if self._draining:
                    return error_response(503, _DRAINING, "Service Unavailable")
                return await handler(request)
            finally:
                for gauge in gauges:
                    gauge.exit()

        return gate

    async def _bind(self) -> None:
        assert self._runner is not None
        site = web.TCPSite(self._runner, self._config.host, self._port, reuse_address=True)
        await site.start()
        self._site, self._port = site, site.port
        self._up.set()

    def _drop_connections(self) -> None:
        server = self._runner.server if self._runner is not None else None
        for connection in server.connections if server is not None else ():
            connection.force_close()

    # -- where it is ---------------------------------------------------------------------------
    @property
    def config(self) -> SimulatorConfig:
        return self._config

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, for ``/health`` and ``/metrics``."""
        return f"http://{self._config.host}:{self._port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``, for an OpenAI client's ``base_url``."""
        return self.url + "/v1"

    @property
    def is_up(self) -> bool:
        """Whether the listening socket is open (false during a restart)."""
        return self._up.is_set()

    # -- observing -----------------------------------------------------------------------------
    def _require_core(self) -> SimulatorCore:
        if self._core is None:
            raise RuntimeError("the simulator is not running; use 'async with VLLMSimulator(...)'")
        return self._core

    def stats(self) -> SimulatorStats:
        """The counters so far (they survive restarts)."""
        return self._require_core().stats.snapshot()

    def samples(self) -> list[QueueSample]:
        """Queue depth sampled every ``sample_interval`` since the start (at most 100 000 samples)."""
        return self._require_core().samples()

    @property
    def running(self) -> int:
        """Sequences running now, over all engines (what an instant ``/metrics`` would say)."""
        return self._require_core().running()

    @property
    def waiting(self) -> int:
        return self._require_core().waiting()

    @property
    def in_flight(self) -> int:
        """Generation requests being handled now (see ``SimulatorStats.peak_in_flight``)."""
        return self._require_core().stats.in_flight.current

    @property
    def draining(self) -> bool:
        return self._draining

    # -- server-wide faults --------------------------------------------------------------------
    async def restart(self, down_for: float | None = None) -> None:
        """Go down now and come back after ``down_for`` simulated seconds (× ``time_scale``).

        Closes the listening socket and every connection; in-flight requests are lost. The server
        returns with empty queues and zeroed ``/metrics`` counters (the simulator's own counters
        go on). Returns once it is down; :meth:`wait_up` waits for the return.
        """
        down = self._config.scaled(self._config.restart_down_for if down_for is None else down_for)
        await self._go_down()
        logger.info("simulated vLLM restarting: down for %.3fs", down)
        self._comeback = asyncio.create_task(self._come_back(down))

    async def die(self) -> None:
        """Go down for good: as :meth:`restart`, but the server never comes back (connections are
        refused from now on). Its counters stay readable."""
        await self._go_down()
        logger.info("simulated vLLM on port %d died", self._port)

    def set_draining(self, draining: bool = True) -> None:
        """Draining: new generation requests get 503 and ``/health`` 503; running requests finish."""
        self._require_core()
        self._draining = draining
        logger.info("simulated vLLM on port %d %s", self._port, "draining" if draining else "accepting again")

    async def _go_down(self) -> None:
        core = self._require_core()
        if self._comeback is not None:
            self._comeback.cancel()
            self._comeback = None
        if self._site is not None:
            await self._site.stop()
            self._site = None
        self._up.clear()
        self._drop_connections()
        core.reset()

    async def _come_back(self, down: float) -> None:
        await asyncio.sleep(down)
        await self._bind()
        logger.info("simulated vLLM back on %s", self.base_url)

    def _restart_soon(self, down_for: float) -> None:
        task = asyncio.get_running_loop().create_task(self.restart(down_for))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def wait_up(self) -> None:
        """Wait until the server accepts connections (after a restart)."""
        await self._up.wait()

    def set_metrics_mode(self, mode: MetricsMode) -> None:
        """``"ok"``; ``"missing"`` (``/metrics`` answers 404); ``"frozen"`` (the values of this moment)."""
        self._require_core().set_metrics_mode(mode)

    def set_engine_dead(self, dead: bool = True) -> None:
        """A dead engine: ``/health`` answers 503, new requests 500, in-flight ones go silent."""
        self._require_core().set_dead(dead)

    # -- small endpoints -----------------------------------------------------------------------
    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(status=503 if self._require_core().dead else 200)  # empty, no content type

    async def _version(self, request: web.Request) -> web.Response:
        return web.Response(
            body=dumps({"version": self._config.server_version}), content_type="application/json"
        )

    async def _models(self, request: web.Request) -> web.Response:
        core = self._require_core()
        body = models_body(
            model=self._config.model, created=int(core.created_unix), max_model_len=self._config.max_model_len
        )
        return web.Response(body=dumps(body), content_type="application/json")

    async def _metrics(self, request: web.Request) -> web.Response:
        text = self._require_core().metrics_text()
        if text is None:
            return web.Response(
                status=404, body=dumps({"detail": "Not Found"}), content_type="application/json"
            )
        return web.Response(text=text, headers={"Content-Type": _METRICS_CONTENT_TYPE})

    async def _stats(self, request: web.Request) -> web.Response:
        core = self._require_core()
        body = {
            **core.stats.snapshot().as_dict(),
            "running": core.running(),
            "waiting": core.waiting(),
            "attempts": core.planner.attempts,
            "engine_dead": core.dead,
            "in_flight": core.stats.in_flight.current,
            "draining": self._draining,
            "metrics_mode": core.metrics_mode,
        }
        return web.Response(body=dumps(body), content_type="application/json")
