"""The goodput benchmark: client profiles, scaled SDK retries, ideal makespan, report, a short run."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from benchmarks import bench_faults
from benchmarks._servers import simulator_available


@pytest.mark.parametrize(
    ("name", "stagger", "timeout", "retries", "faults"),
    [
        ("baseline", 0.0, 600.0, 2, False),
        ("before", 2.0, 2500.0, 2, True),
        ("after", 5.0, 60.0, 3, True),
        ("resilient_llm", 0.0, None, None, True),
    ],
)
def test_profiles_carry_the_incident_settings(
    name: str, stagger: float, timeout: float | None, retries: int | None, faults: bool
) -> None:
    profile = bench_faults.PROFILES[name]
    assert (profile.stagger, profile.timeout, profile.max_retries) == (stagger, timeout, retries)
    assert profile.faults is faults


def test_every_kind_preset_names_every_fault_kind_but_the_no_metrics_one() -> None:
    from resilient_llm.testing import FAULT_KINDS, parse_faults

    faults = parse_faults(bench_faults.EVERY_KIND_FAULTS)
    assert set(faults) == set(FAULT_KINDS) - {"metrics_missing"}  # that one is --no-metrics
    assert all(p > 0 for p in faults.values())
    # the incident mix inside it
    assert {k: faults[k] for k in ("ghost", "lost", "drop", "503")} == {
        "ghost": 0.03,
        "lost": 0.02,
        "drop": 0.02,
        "503": 0.03,
    }


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("incident", bench_faults.INCIDENT_FAULTS),
        ("every-kind", bench_faults.EVERY_KIND_FAULTS),
        ("ghost=0.5", "ghost=0.5"),
    ],
)
def test_faults_option_takes_a_preset_or_a_list(given: str, expected: str) -> None:
    assert bench_faults.build_parser().parse_args(["--faults", given]).faults == expected


def test_default_faults_and_clients_include_the_baseline() -> None:
    args = bench_faults.build_parser().parse_args([])
    assert args.faults == bench_faults.INCIDENT_FAULTS
    assert args.clients[0] == "baseline" and "resilient_llm" in args.clients


def test_baseline_simulator_has_no_faults_and_no_queue_bound() -> None:
    args = bench_faults.build_parser().parse_args(["--no-metrics", "--seed", "3"])
    faulty = bench_faults.simulator_args(args)
    clean = bench_faults.simulator_args(args, faults=False)
    assert faulty[faulty.index("--faults") + 1].endswith(",metrics_missing=1")
    assert "--max-queued" in faulty
    assert "--faults" not in clean and "--max-queued" not in clean
    assert clean[clean.index("--seed") + 1] == "3"
    assert clean == faulty[: len(clean)]  # the same server otherwise


def test_no_metrics_replaces_the_mixes_scrape_faults_with_every_scrape_a_404() -> None:
    from resilient_llm.testing import parse_faults

    args = bench_faults.build_parser().parse_args(["--faults", "every-kind", "--no-metrics"])
    faults = parse_faults(bench_faults.effective_faults(args))
    assert faults["metrics_missing"] == 1.0 and "metrics_frozen" not in faults
    assert faults["restart"] == 0.005  # the request faults stay
    with_metrics = bench_faults.build_parser().parse_args(["--faults", "every-kind"])
    assert bench_faults.effective_faults(with_metrics) == bench_faults.EVERY_KIND_FAULTS


def test_a_fault_mix_the_simulator_would_refuse_is_an_argument_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        bench_faults.main(["--faults", "ghost=0.7,lost=0.7"])
    assert "sum to <= 1 (here 1.4)" in capsys.readouterr().err


def test_kinds_of_the_mix_that_no_faulty_run_met_are_named() -> None:
    rows = [
        {"client": "baseline", "faults_injected": {}},
        {"client": "resilient_llm", "faults_injected": {"ghost": 3, "lost": 0}},
        {"client": "after", "faults_injected": {"drop": 1}},
    ]
    faults = "ghost=0.03,lost=0.02,drop=0.02,503=0.01,500=0"
    assert bench_faults.kinds_not_drawn(faults, rows) == ["lost", "503"]  # 500 at 0 is not asked for


def _row(client: str, makespan: float, **extra: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "client": client,
        "label": client,
        "calls": 10,
        "ok": 10,
        "failed": 0,
        "hung_or_not_run": 0,
        "limit_hit": False,
        "makespan_s": makespan,
        "makespan_simulated_s": makespan * 20,
        "makespan_over_ideal": 1.1,
        "tokens_wasted": 0,
        "wasted_pct": 0.0,
    }
    row.update(extra)
    return row


def test_ratios_divide_by_the_baselines_makespan_and_the_verdict_checks_all_three() -> None:
    rows = [_row("baseline", 10.0), _row("after", 25.0), _row("resilient_llm", 10.8)]
    assert bench_faults.add_baseline_ratios(rows) == 10.0
    assert [r["makespan_over_baseline"] for r in rows] == [1.0, 2.5, 1.08]
    result = bench_faults.verdict(rows, 1.10)
    assert result == {
        "all_ok": True,
        "none_hung": True,
        "makespan_over_baseline": 1.08,
        "target": 1.10,
        "met": True,
    }
    assert "1.08x" in bench_faults.verdict_line(result, rows[2])
    assert bench_faults.verdict(rows, 1.05)["met"] is False  # type: ignore[index]
    rows[2]["ok"] = 9
    assert bench_faults.verdict(rows, 1.10)["met"] is False  # type: ignore[index]
    assert "÷ baseline" in bench_faults.table(rows) and "2.50" in bench_faults.table(rows)


def test_no_baseline_no_ratio_and_no_verdict() -> None:
    rows = [_row("resilient_llm", 10.0)]
    assert bench_faults.add_baseline_ratios(rows) is None
    assert bench_faults.verdict(rows, 1.1) is None
    stopped = [_row("baseline", 40.0, limit_hit=True), _row("resilient_llm", 10.0)]
    # a baseline stopped at the limit is no yardstick
    assert bench_faults.add_baseline_ratios(stopped) is None


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
    assert " - " in text  # no baseline: no ratio
    assert "495.1+" in text and "4.0+" in text and "2,467 (7.5%)" in text
    assert "not available" in text


@pytest.mark.timeout(120)
def test_faults_short_run_resilient_client_hangs_nothing_and_is_divided_by_the_baseline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("resilient_llm.demo")
    if not simulator_available():
        pytest.skip("the simulator's command line is not installed")
    output = tmp_path / "faults.json"
    argv = ["--clients", "baseline", "resilient_llm", "--tasks", "2", "--rounds", "2"]
    argv += ["--calls-per-round", "3", "--time-scale", "0.02", "--output", str(output), "--no-chart"]
    code = bench_faults.main(argv)
    assert code == 0
    document = json.loads(output.read_text())
    baseline, row = document["results"]
    assert baseline["client"] == "baseline" and baseline["faults_injected"] == {}
    assert baseline["ok"] == 12 and baseline["makespan_over_baseline"] == 1.0
    assert row["calls"] == 12
    assert row["hung_or_not_run"] == 0
    assert row["ok"] + row["failed"] == 12
    assert row["makespan_over_ideal"] > 0
    assert document["baseline_makespan_simulated_s"] > 0
    assert document["verdict"]["target"] == 1.10
    assert document["verdict"]["makespan_over_baseline"] == row["makespan_over_baseline"]
    assert len(row["timeline"]) == 12 and {tuple(r[:3]) for r in row["timeline"]} == {
        (t, r, i) for t in range(2) for r in range(2) for i in range(3)
    }
    out = capsys.readouterr().out
    assert "x the baseline's (target <= 1.10x)" in out
    if row["hung_or_not_run"] == 0:
        assert row["slowest_task"]["task"] in (0, 1) and "ended last at" in out


def test_slowest_task_follows_the_task_that_ended_last_round_by_round() -> None:
    timeline = [
        [0, 0, 0, 100, 0.0, 10.0, "ok"],
        [0, 0, 1, 300, 0.0, 30.0, "ok"],
        [0, 1, 0, 50, 30.0, 41.5, "ok"],
        [1, 0, 0, 900, 0.5, 60.0, "ok"],
        [1, 1, 0, 20, 60.0, 90.25, "failed"],
        [1, 1, 1, 400, 60.0, 80.0, "ok"],
    ]
    slowest = bench_faults.slowest_task(timeline)
    assert slowest == {
        "task": 1,
        "ended": 90.25,
        "rounds": [
            {"round": 0, "started": 0.5, "ended": 60.0, "last_call_tokens": 900, "last_call_seconds": 59.5},
            {"round": 1, "started": 60.0, "ended": 90.25, "last_call_tokens": 20, "last_call_seconds": 30.25},
        ],
    }
    line = bench_faults.describe_slowest(slowest)
    assert line.startswith("task 1 ended last at 90.2 s: round 0 59.5 s (last call 900 tokens, 59.5 s)")
    assert bench_faults.slowest_task([*timeline, [0, 1, 1, 10, 30.0, None, "hung"]]) is None
    assert bench_faults.slowest_task([]) is None


def test_log_option_sends_the_librarys_info_lines_to_a_file_not_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    library = logging.getLogger("resilient_llm")
    saved = (library.level, library.propagate, list(library.handlers))
    try:
        bench_faults.configure_log(tmp_path / "run.log")
        logging.getLogger("resilient_llm._engine").info("retrying %s", "http://sim/v1")
        logging.getLogger("resilient_llm._engine").debug("not at INFO")
        for handler in library.handlers:
            handler.flush()
        text = (tmp_path / "run.log").read_text()
        assert "INFO resilient_llm._engine: retrying http://sim/v1" in text and "not at INFO" not in text
        assert "retrying" not in capsys.readouterr().err
        bench_faults.configure_log(None)
        assert library.level == logging.ERROR
    finally:
        for handler in library.handlers:
            if handler not in saved[2]:
                library.removeHandler(handler)
                handler.close()
        library.setLevel(saved[0])
        library.propagate = saved[1]
