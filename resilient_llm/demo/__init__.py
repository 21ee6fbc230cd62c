"""The demo: the incident's workload against the simulator, with the incident's settings and with ours.

``resilient-llm demo`` runs it; :mod:`._workload` is also what ``benchmarks/bench_faults.py`` uses.
"""

from ._workload import ArcWorkload, CallOutcome, RunResult, run_workload

__all__ = ["ArcWorkload", "CallOutcome", "RunResult", "run_workload"]
