"""For tests: a simulated vLLM server (also for demos and benchmarks), a fake clock, a testing switch."""

from __future__ import annotations

from resilient_llm._testing_mode import set_testing
from resilient_llm.testing._clock import FakeClock
from resilient_llm.testing._config import (
    FAULT_KINDS,
    FaultKind,
    LogNormalLength,
    SimulatorConfig,
    parse_faults,
)
from resilient_llm.testing._replicas import ReplicaFaults, SimulatedReplicas
from resilient_llm.testing._server import VLLMSimulator
from resilient_llm.testing._stats import QueueSample, SimulatorStats
from resilient_llm.testing._thread import SimulatorThread

__all__ = [
    "FAULT_KINDS",
    "FakeClock",
    "FaultKind",
    "LogNormalLength",
    "QueueSample",
    "ReplicaFaults",
    "SimulatedReplicas",
    "SimulatorConfig",
    "SimulatorStats",
    "SimulatorThread",
    "VLLMSimulator",
    "parse_faults",
    "set_testing",
]
