"""The real-vLLM burst benchmark: its pieces, and a short run against the simulator standing in."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import bench_real_vllm as bench
from benchmarks._servers import free_port, running_server, simulator_available

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.mark.parametrize(
    ("fixture", "depth"),
    [("metrics_real_v032_idle.txt", 0), ("metrics_real_v032_loaded.txt", 64)],
)
def test_queue_depth_is_running_plus_waiting_of_a_real_servers_metrics(fixture: str, depth: int) -> None:
    assert bench.queue_depth_of((FIXTURES / fixture).read_text()) == depth


def test_queue_depth_sums_engines_and_ignores_waiting_by_reason() -> None:
    text = "\n".join(
        [
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            'vllm:num_requests_running{engine="0",model_name="m"} 3.0',
            'vllm:num_requests_running{engine="1",model_name="m"} 4.0',
            'vllm:num_requests_waiting{engine="0",model_name="m"} 2.0',
            'vllm:num_requests_waiting_by_reason{engine="0",model_name="m",reason="capacity"} 2.0',
            "vllm:num_requests_waiting 1",
        ]
    )
    assert bench.queue_depth_of(text) == 10
    assert bench.queue_depth_of("not_vllm 1\n") is None
    assert bench.queue_depth_of("") is None


def test_server_root_drops_the_v1_suffix() -> None:
    assert bench.server_root("http://127.0.0.1:8041/v1") == "http://127.0.0.1:8041"
    assert bench.server_root("http://127.0.0.1:8041/v1/") == "http://127.0.0.1:8041"


def test_runs_alternate_starting_with_the_official_sdk() -> None:
    pair, swapped = ["openai", "resilient_llm"], ["resilient_llm", "openai"]
    assert bench.burst_order(3) == pair + swapped + pair
    assert bench.burst_order(4).count("openai") == 4


def test_every_call_asks_for_the_same_work_with_its_own_grid() -> None:
    args = bench.build_parser().parse_args(["http://x/v1"])
    first, second = bench.request_args("m", 0, args), bench.request_args("m", 1, args)
    assert first["max_tokens"] == second["max_tokens"] == args.max_tokens
    assert first["temperature"] == 0.0 and first["extra_body"] == {"ignore_eos": True}
    assert first["messages"][1]["content"] != second["messages"][1]["content"]
    assert first["messages"][0] == second["messages"][0]
    plain = bench.request_args("m", 0, bench.build_parser().parse_args(["http://x/v1", "--no-ignore-eos"]))
    assert "extra_body" not in plain


def test_a_request_that_cannot_fit_the_context_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        bench.main(["http://127.0.0.1:9/v1", "--max-tokens", "8190"])
    assert "may not fit --max-model-len 8192" in capsys.readouterr().err


def _run(client: str, seconds: float, ok: int = 96, calls: int = 96) -> dict[str, Any]:
    return {"client": client, "calls": calls, "ok": ok, "seconds": seconds}


def test_medians_and_ratio_over_alternating_runs() -> None:
    rows = [
        _run("openai", 44.0),
        _run("resilient_llm", 43.0),
        _run("openai", 42.0),
        _run("resilient_llm", 46.0),
        _run("openai", 43.0),
        _run("resilient_llm", 42.5),
    ]
    summary = bench.summarize_bursts(rows)
    assert summary["openai"] == {"runs": 3, "clean_runs": 3, "seconds": [44.0, 42.0, 43.0], "median_s": 43.0}
    assert summary["resilient_llm"]["median_s"] == 43.0
    assert (summary["ratio"], summary["met"], summary["every_call_ok"]) == (1.0, True, True)
    line = bench.burst_line(summary, 96)
    assert line == (
        "96 calls, median of 3 runs: resilient_llm 43.00 s / openai 43.00 s = 1.00x (target <= 1.00x): MET"
    )
    rows[3] = _run("resilient_llm", 30.0, ok=95)  # a failed call: not a clean run, and not met
    summary = bench.summarize_bursts(rows)
    assert summary["resilient_llm"]["clean_runs"] == 2 and summary["resilient_llm"]["median_s"] == 42.75
    assert summary["met"] is False
    assert "median of 2 and 3 runs" in bench.burst_line(summary, 96)
    assert bench.burst_line(summary, 96).endswith("(calls failed): NOT MET")
    slower = bench.summarize_bursts([_run("openai", 40.0), _run("resilient_llm", 45.0)])
    assert (slower["ratio"], slower["met"]) == (1.125, False)
    none = bench.summarize_bursts([_run("openai", 40.0, ok=0)])
    assert none["ratio"] is None and "no ratio" in bench.burst_line(none, 96)


@pytest.mark.parametrize(
    ("ok", "stats", "met"),
    [
        (32, {"orphans": 0, "stalls": 0, "metrics_available": True}, True),
        (32, {"orphans": 1, "stalls": 0, "metrics_available": True}, False),
        (32, {"orphans": 0, "stalls": 2, "metrics_available": True}, False),
        (31, {"orphans": 0, "stalls": 0, "metrics_available": True}, False),
        (32, None, False),  # no stats: nothing shown, nothing met
    ],
)
def test_orphan_verdict_needs_every_call_ok_and_no_orphan_or_stall(
    ok: int, stats: dict[str, Any] | None, met: bool
) -> None:
    row = {"calls": 32, "ok": ok, "seconds": 12.0, "stats": stats}
    verdict = bench.orphan_verdict(row)
    assert verdict["met"] is met
    assert ("NOT MET" not in bench.orphan_line(verdict, row)) is met


@pytest.mark.timeout(30)
def test_a_url_where_nothing_listens_is_a_setup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = bench.main([f"http://127.0.0.1:{free_port()}/v1", "--output", str(tmp_path / "r.json")])
    assert code == 2
    assert "start the server first" in capsys.readouterr().err
    assert not (tmp_path / "r.json").exists()


@pytest.mark.timeout(90)
def test_short_run_against_the_simulator_reports_both_parts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not simulator_available():
        pytest.skip("the simulator's command line is not installed")
    output = tmp_path / "real.json"
    with running_server("simulator", extra_args=["--log-level", "WARNING"]) as server:
        argv = [server.base_url, "--calls", "6", "--runs", "2", "--orphan-calls", "4", "--max-tokens", "8"]
        argv += ["--warmup", "1", "--settle", "0", "--output", str(output)]
        assert bench.main(argv) == 0
    printed = capsys.readouterr().out
    document = json.loads(output.read_text())
    runs = document["burst"]["runs"]
    assert [r["client"] for r in runs] == ["openai", "resilient_llm", "resilient_llm", "openai"]
    for run in runs:
        assert (run["ok"], run["failed"], run["hung"]) == (6, 0, 0)
        assert run["completion_tokens"] == 6 * 8  # ignore_eos: every answer max_tokens long
    assert runs[1]["stats"]["calls_ok"] == 6 and runs[0]["stats"] is None
    summary = document["burst"]["summary"]
    assert summary["ratio"] == pytest.approx(
        summary["resilient_llm"]["median_s"] / summary["openai"]["median_s"], abs=0.01
    )
    orphans = document["orphans"]
    assert orphans["run"]["calls"] == 4 and orphans["verdict"]["met"] is True
    assert orphans["verdict"]["metrics_available"] is True
    assert "6 calls, median of 2 runs: resilient_llm" in printed
    assert "4 calls through resilient_llm: 4/4 ok, orphans 0, stalls 0, /metrics read" in printed
    assert document["machine"]["load_average"] is not None
