"""The goodput benchmark: client profiles, scaled SDK retries, ideal makespan, report, a short run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import bench_faults
from benchmarks._servers import simulator_available


@pytest.mark.parametrize(
    ("name", "stagger", "timeout", "retries"),
    [("before", 2.0, 2500.0, 2), ("after", 5.0, 60.0, 3), ("resilient_llm", 0.0, None, None)],
)
def test_profiles_carry_the_incident_settings(
    name: str, stagger: float, timeout: float | None, retries: int | None
) -> None:
    profile = bench_faults.PROFILES[name]
    assert (profile.stagger, profile.timeout, profile.max_retries) == (stagger, timeout, retries)


def test_request_args_match_the_pipelines_call() -> None:
    args = bench_faults.request_args(700, 4064)
    assert args["response_format"] == {"type": "json_object"}
    assert args["max_tokens"] == 4064
    assert args["temperature"] == 0.3
    assert args["extra_body"] == {"skip_special_tokens": True, "simulator": {"output_tokens": 700}}


def test_sdk_retry_sleeps_are_scaled() -> None:
    import openai

    scaled = bench_faults.scaled_sdk_class(0.01)(api_key="k", base_url="http://127.0.0.1:9/v1")
    plain = openai.AsyncOpenAI(api_key="k", base_url="http://127.0.0.1:9/v1")
    options: Any = SimpleNamespace(get_max_retries=lambda default: 2)
    for remaining in (2, 1):
        delay = scaled._calculate_retry_timeout(remaining, options)
        ceiling = plain._calculate_retry_timeout(remaining, options) / 0.75  # jitter takes up to 25 % off
        assert 0 < delay <= ceiling * 0.01


def test_ideal_makespan_is_work_over_capacity() -> None:
    from resilient_llm.demo import ArcWorkload
    from resilient_llm.testing import SimulatorConfig

    workload = ArcWorkload(tasks=2, rounds=1, calls_per_round=2)
    half = bench_faults.ideal_makespan(workload, 16)
    full = bench_faults.ideal_makespan(workload, 8)
    assert half > 0
    assert full > half  # fewer sequences at once: the same work takes longer
    sim = SimulatorConfig(capacity=8)
    per_token = sim.token_time * (1 + sim.batch_slowdown * 7)
    expected = (
        sum(100 * sim.prefill_time_per_token + n * per_token for t in workload.plan() for r in t for n in r)
        / 8
    )
    assert full == pytest.approx(expected)


def test_first_errors_counts_failed_calls_by_type() -> None:
    outcomes = [
        SimpleNamespace(status="failed", error="StallError: silent for 3 s"),
        SimpleNamespace(status="failed", error="StallError: silent for 3 s"),
        SimpleNamespace(status="failed", error="APIConnectionError: Connection error."),
        SimpleNamespace(status="ok", error=None),
        SimpleNamespace(status="hung", error=None),
    ]
    assert bench_faults.first_errors(outcomes) == {"StallError": 2, "APIConnectionError": 1}


def test_faults_table_marks_runs_stopped_at_the_limit() -> None:
    row: dict[str, Any] = {
        "label": "openai SDK, incident settings",
        "ok": 76,
        "failed": 0,
        "hung_or_not_run": 116,
        "limit_hit": True,
        "makespan_simulated_s": 495.1,
        "makespan_over_ideal": 4.0,
        "tokens_wasted": 2467,
        "wasted_pct": 7.5,
    }
    text = bench_faults.table([row, {"label": "x", "status": "not available"}])
    assert "495.1+" in text and "4.0+" in text and "2,467 (7.5%)" in text
    assert "not available" in text


@pytest.mark.timeout(120)
def test_faults_short_run_resilient_client_hangs_nothing(tmp_path: Path) -> None:
    pytest.importorskip("resilient_llm.demo")
    if not simulator_available():
        pytest.skip("the simulator's command line is not installed")
    output = tmp_path / "faults.json"
    argv = ["--clients", "resilient_llm", "--tasks", "2", "--rounds", "2", "--calls-per-round", "3"]
    code = bench_faults.main([*argv, "--time-scale", "0.02", "--output", str(output), "--no-chart"])
    assert code == 0
    (row,) = json.loads(output.read_text())["results"]
    assert row["calls"] == 12
    assert row["hung_or_not_run"] == 0
    assert row["ok"] + row["failed"] == 12
    assert row["makespan_over_ideal"] > 0
