"""A simulated vLLM server for tests, demos and benchmarks."""

from __future__ import annotations

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
]
