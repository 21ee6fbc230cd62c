"""The memory benchmark: summary and verdict, RSS readings, and a short run of both modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_memory


def test_memory_summary_and_verdict() -> None:
    rows = [
        {"mode": "resilient_llm", "traced": False, "status": "ok", "peak_rss_kb_per_call": 4.0,
         "rss_kb_per_call": 4.5, "queued_seen": 100},
        {"mode": "resilient_llm", "traced": True, "status": "ok", "traced_kb_per_call": 3.0},
        {"mode": "floor", "traced": False, "status": "error: timed out"},
    ]  # fmt: skip
    summary = bench_memory.summarize(rows)
    assert summary["resilient_llm"] == {
        "status": "ok",
        "peak_rss_kb_per_call": 4.0,
        "rss_kb_per_call": 4.5,
        "queued_seen": 100,
        "traced_kb_per_call": 3.0,
    }
    assert summary["floor"]["status"] == "error: timed out"
    assert "4.50 KB" in bench_memory.verdict_line(summary["resilient_llm"], 5.0)
    assert "meets" in bench_memory.verdict_line(summary["resilient_llm"], 5.0)
    assert "misses" in bench_memory.verdict_line(summary["resilient_llm"], 4.0)
    assert bench_memory.verdict_line(None, 5.0) == "resilient_llm: not measured"
    assert "timed out" in bench_memory.table(summary, 100)


def test_rss_readings_are_positive() -> None:
    assert bench_memory.rss_kb() > 0
    assert bench_memory.peak_rss_kb() >= bench_memory.rss_kb() // 2


@pytest.mark.timeout(120)
def test_memory_short_run_measures_both_modes(tmp_path: Path) -> None:
    output = tmp_path / "memory.json"
    code = bench_memory.main(["--calls", "300", "--settle", "0.3", "--output", str(output)])
    assert code == 0
    document = json.loads(output.read_text())
    for mode in ("resilient_llm", "floor"):
        entry = document["summary"][mode]
        assert entry["status"] == "ok", entry
        assert entry["queued_seen"] >= 300
        assert entry["traced_kb_per_call"] > 0  # every queued call costs something
    traced = [run for run in document["runs"] if run["traced"]]
    assert all(run["top_sites"] for run in traced)
