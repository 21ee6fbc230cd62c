"""The replicas benchmark: the ideal makespan for the capacity that remains, the report, a short run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_replicas
from benchmarks._servers import simulator_available


def test_ideal_makespan_is_three_replicas_then_two() -> None:
    # 100 calls x 50 tokens x 0.02 s = 100 sequence-seconds; 3 x 2 sequences until 5 s (30 done), then 2 x 2
    ideal = bench_replicas.ideal_makespan(calls=100, tokens=50, capacity=2, kill_at=5.0)
    assert ideal == pytest.approx(5.0 + 70 / 4)
    # done before the kill: all three replicas' capacity throughout
    assert bench_replicas.ideal_makespan(calls=10, tokens=50, capacity=2, kill_at=100.0) == pytest.approx(
        10 / 6
    )


def test_table_shows_every_round_and_the_split() -> None:
    row: dict[str, Any] = {
        "label": "resilient_llm, replicas=[3 URLs]",
        "ok": 480,
        "failed": 0,
        "hung": 0,
        "limit_hit": False,
        "makespan_simulated_s": 231.8,
        "median_over_ideal": 1.1,
        "ratios": [1.1, 1.12, 1.08],
        "completed_per_replica": [217, 46, 217],
    }
    text = bench_replicas.table([row])
    assert "1.10, 1.12, 1.08" in text and "217/46/217" in text and "231.8" in text


@pytest.mark.timeout(120)
def test_replicas_short_run_the_library_completes_every_call(tmp_path: Path) -> None:
    if not simulator_available():
        pytest.skip("the simulator's command line is not installed")
    output = tmp_path / "replicas.json"
    argv = ["--clients", "resilient_llm", "--rounds", "1", "--calls", "60", "--tokens", "50"]
    code = bench_replicas.main([*argv, "--kill-at", "6", "--time-scale", "0.05", "--output", str(output)])
    assert code == 0
    (row,) = json.loads(output.read_text())["results"]
    assert (row["ok"], row["failed"], row["hung"]) == (60, 0, 0)
    assert row["makespan_over_ideal"] > 0
