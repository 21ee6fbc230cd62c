"""Several simulated vLLM replicas on consecutive ports, each with faults of its own.

::

    plan = {1: ReplicaFaults(die_at=30.0), 2: ReplicaFaults(slowdown=2.0)}
    async with SimulatedReplicas(SimulatorConfig(time_scale=0.01), replicas=3, faults=plan) as fleet:
        client = AsyncOpenAI(replicas=fleet.base_urls, api_key="EMPTY")
        ...
        assert fleet.peak_in_flight <= 8        # the most requests in flight at once, all replicas
        print([s.requests_received for s in fleet.stats()])

Replica ``i`` listens on ``port + i``. With ``config.port == 0`` a free run of consecutive loopback
ports is found. Each replica runs the base config with its own seed (``seed + i``) and the changes its
:class:`ReplicaFaults` asks for: slower tokens, its own fault probabilities, death or draining at a
given (simulated) time after the start. :meth:`SimulatedReplicas.die` and :meth:`~SimulatedReplicas.drain`
do the same on demand.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType, TracebackType

from resilient_llm._policies._validate import check_int, check_number, reject
from resilient_llm.testing._config import SimulatorConfig
from resilient_llm.testing._server import VLLMSimulator
from resilient_llm.testing._stats import InFlightGauge, SimulatorStats

__all__ = ["ReplicaFaults", "SimulatedReplicas"]

logger = logging.getLogger("resilient_llm.testing")

#: Tries at finding a free run of consecutive ports before giving up.
_PORT_TRIES = 20


@dataclass(frozen=True, kw_only=True, slots=True)
class ReplicaFaults:
    """What happens to one replica. Times are simulated seconds after the start (× ``time_scale``).

    ``slowdown`` multiplies its per-token and prefill times (2.0: half the speed). ``die_at``: from
    then on its connections are refused and the requests it held are lost, for good. ``drain_at``:
    from then on new generation requests get 503 (and ``/health`` 503) while running ones finish.
    ``faults``: its own fault probabilities instead of the base config's (``None`` keeps those).
    """

    slowdown: float = 1.0
    die_at: float | None = None
    drain_at: float | None = None
    faults: Mapping[str, float] | None = None

    def __post_init__(self) -> None:
        check_number("ReplicaFaults", "slowdown", self.slowdown, above=0)
        for name in ("die_at", "drain_at"):
            value = getattr(self, name)
            if value is not None:
                check_number("ReplicaFaults", name, value, at_least=0)
        if self.faults is not None:
            object.__setattr__(self, "faults", MappingProxyType(dict(self.faults)))

    def apply(self, config: SimulatorConfig) -> SimulatorConfig:
        """``config`` as this replica runs it (validated again by :class:`SimulatorConfig`)."""
        changes: dict[str, object] = {}
        if self.slowdown != 1.0:
            changes["token_time"] = config.token_time * self.slowdown
            changes["prefill_time_per_token"] = config.prefill_time_per_token * self.slowdown
        if self.faults is not None:
            changes["faults"] = self.faults
        return dataclasses.replace(config, **changes) if changes else config  # type: ignore[arg-type]


class SimulatedReplicas:
    """``replicas`` simulated vLLM servers on consecutive ports (see the module docstring)."""

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        replicas: int = 3,
        faults: Mapping[int, ReplicaFaults] | None = None,
    ) -> None:
        owner = "SimulatedReplicas"
        check_int(owner, "replicas", replicas, at_least=1)
        plan = dict(faults or {})
        for index, fault in plan.items():
            if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < replicas:
                reject(owner, "faults key", index, f"a replica index in 0..{replicas - 1}")
            if not isinstance(fault, ReplicaFaults):
                reject(owner, f"faults[{index}]", fault, "a ReplicaFaults")
        self._config = config if config is not None else SimulatorConfig()
        self._count = replicas
        self._plan = plan
        self._gauge = InFlightGauge()
        self._servers: list[VLLMSimulator] = []
        self._timers: list[asyncio.TimerHandle] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -----------------------------------------------------------------------------
    async def __aenter__(self) -> SimulatedReplicas:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Bind every replica (consecutive ports) and arm the timed faults."""
        if self._servers:
            raise RuntimeError("the replicas are already started")
        tries = 1 if self._config.port else _PORT_TRIES
        for attempt in range(tries):
            try:
                await self._bind_all(self._config.port)
                break
            except OSError:
                await self._close_servers()
                if attempt == tries - 1:
                    raise
        loop = asyncio.get_running_loop()
        for index, fault in self._plan.items():
            if fault.drain_at is not None:
                self._timers.append(
                    loop.call_later(self._config.scaled(fault.drain_at), self._servers[index].set_draining)
                )
            if fault.die_at is not None:
                self._timers.append(loop.call_later(self._config.scaled(fault.die_at), self._die_soon, index))
        logger.info("simulated vLLM replicas on %s", ", ".join(self.base_urls))

    async def _bind_all(self, first_port: int) -> None:
        for index in range(self._count):
            port = first_port + index if first_port or index else 0
            config = dataclasses.replace(self._config, port=port, seed=self._config.seed + index)
            fault = self._plan.get(index)
            server = VLLMSimulator(fault.apply(config) if fault else config, gauges=(self._gauge,))
            await server.start()
            self._servers.append(server)
            if index == 0:
                first_port = server.port

    async def close(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        for task in self._tasks:
            task.cancel()
        await self._close_servers()

    async def _close_servers(self) -> None:
        servers, self._servers = self._servers, []
        for server in servers:
            await server.close()

    def _die_soon(self, index: int) -> None:
        task = asyncio.get_running_loop().create_task(self.die(index))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- where they are ------------------------------------------------------------------------
    @property
    def replicas(self) -> list[VLLMSimulator]:
        """The servers, in port order."""
        return list(self._servers)

    def __len__(self) -> int:
        return self._count

    @property
    def ports(self) -> list[int]:
        return [s.port for s in self._servers]

    @property
    def urls(self) -> list[str]:
        """``http://HOST:PORT`` of each replica."""
        return [s.url for s in self._servers]

    @property
    def base_urls(self) -> list[str]:
        """``http://HOST:PORT/v1`` of each replica: what a client's ``replicas=`` takes."""
        return [s.base_url for s in self._servers]

    # -- observing and faults ------------------------------------------------------------------
    def stats(self) -> list[SimulatorStats]:
        """Each replica's counters (``peak_in_flight`` is per replica)."""
        return [s.stats() for s in self._servers]

    @property
    def in_flight(self) -> int:
        """Generation requests in flight now over all replicas."""
        return self._gauge.current

    @property
    def peak_in_flight(self) -> int:
        """The most generation requests in flight at once over all replicas together."""
        return self._gauge.peak

    async def die(self, index: int) -> None:
        """Replica ``index`` goes down for good (connections refused from now on)."""
        await self._servers[index].die()

    def drain(self, index: int, draining: bool = True) -> None:
        """Replica ``index`` refuses new requests with 503 while it finishes the running ones."""
        self._servers[index].set_draining(draining)
