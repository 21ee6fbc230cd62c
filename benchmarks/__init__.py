"""Benchmarks for resilient_llm: client overhead, memory per queued call, goodput under faults.

Each ``bench_*.py`` is a script with ``--help``; the ``_*.py`` modules are what they share.
"""
