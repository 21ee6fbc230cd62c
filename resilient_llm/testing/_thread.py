"""``SimulatorThread``: a :class:`VLLMSimulator` on its own event loop in a daemon thread.

For trio tests and synchronous code, which cannot host the aiohttp server on their own loop::

    with SimulatorThread(SimulatorConfig(time_scale=0.01)) as sim:
        httpx.get(sim.url + "/health")
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

from resilient_llm.testing._config import SimulatorConfig
from resilient_llm.testing._core import MetricsMode
from resilient_llm.testing._server import VLLMSimulator
from resilient_llm.testing._stats import QueueSample, SimulatorStats

__all__ = ["SimulatorThread"]

T = TypeVar("T")


class SimulatorThread:
    """Runs a simulator in a background thread; every method is safe to call from any thread.

    ``timeout`` bounds each wait on the server thread (start, stop, calls), in real seconds.
    """

    def __init__(self, config: SimulatorConfig | None = None, *, timeout: float = 10.0) -> None:
        self._config = config if config is not None else SimulatorConfig()
        self._timeout = timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sim: VLLMSimulator | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("the simulator thread is already started")
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._serve(),), name="vllm-simulator", daemon=True
        )
        self._thread.start()
        if not self._ready.wait(self._timeout):
            raise RuntimeError(f"the simulator did not start within {self._timeout:g}s")
        if self._error is not None:
            raise self._error

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with VLLMSimulator(self._config) as sim:
                self._sim = sim
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # reported to the starting thread by start()
            self._error = exc
        finally:
            self._ready.set()

    def stop(self) -> None:
        """Stop the server and wait (up to ``timeout``) for its thread to end."""
        if self._thread is None:
            return
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self._timeout)
        self._thread = None

    def _call(self, make: Callable[[VLLMSimulator], Coroutine[Any, Any, T]]) -> T:
        if self._loop is None or self._sim is None:
            raise RuntimeError("the simulator thread is not running")
        return asyncio.run_coroutine_threadsafe(make(self._sim), self._loop).result(self._timeout)

    def _sync(self, fn: Callable[[VLLMSimulator], T]) -> T:
        async def run(sim: VLLMSimulator) -> T:
            return fn(sim)

        return self._call(run)

    @property
    def _server(self) -> VLLMSimulator:
        if self._sim is None:
            raise RuntimeError("the simulator thread is not running")
        return self._sim

    @property
    def config(self) -> SimulatorConfig:
        return self._config

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def base_url(self) -> str:
        return self._server.base_url

    @property
    def is_up(self) -> bool:
        return self._server.is_up

    def stats(self) -> SimulatorStats:
        return self._sync(lambda sim: sim.stats())

    @property
    def running(self) -> int:
        """Sequences running now, over all engines (what an instant ``/metrics`` would say)."""
        return self._sync(lambda sim: sim.running)

    @property
    def waiting(self) -> int:
        return self._sync(lambda sim: sim.waiting)

    def samples(self) -> list[QueueSample]:
        return self._sync(lambda sim: sim.samples())

    def restart(self, down_for: float | None = None) -> None:
        """See :meth:`VLLMSimulator.restart`; returns once the server is down."""
        self._call(lambda sim: sim.restart(down_for))

    def wait_up(self) -> None:
        self._call(lambda sim: sim.wait_up())

    def set_metrics_mode(self, mode: MetricsMode) -> None:
        self._sync(lambda sim: sim.set_metrics_mode(mode))

    def set_engine_dead(self, dead: bool = True) -> None:
        self._sync(lambda sim: sim.set_engine_dead(dead))
