"""The overhead benchmark's pieces: rotation, rounds, ratios, the server process, one tiny full run."""

from __future__ import annotations

import asyncio
import json
import os
import urllib.request
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from benchmarks import bench_overhead
from benchmarks._clients import CLIENTS, content_of
from benchmarks._machine import command_line, machine_info
from benchmarks._servers import running_server
from benchmarks.bench_overhead import Cell, drive, per_round, ratios, rotation, table


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the benchmarks and their clients are asyncio programs


@pytest.mark.parametrize(
    ("items", "round_index", "expected"),
    [
        (["a", "b", "c"], 0, ["a", "b", "c"]),
        (["a", "b", "c"], 1, ["b", "c", "a"]),
        (["a", "b", "c"], 2, ["c", "a", "b"]),
        (["a", "b", "c"], 3, ["a", "b", "c"]),
        (["a"], 5, ["a"]),
        ([], 2, []),
    ],
)
def test_rotation_table(items: list[str], round_index: int, expected: list[str]) -> None:
    assert rotation(items, round_index) == expected


@given(st.lists(st.text(min_size=1), min_size=1, max_size=8, unique=True))
def test_every_client_leads_exactly_once_per_cycle(items: list[str]) -> None:
    leaders = [rotation(items, index)[0] for index in range(len(items))]
    assert sorted(leaders) == sorted(items)
    assert all(sorted(rotation(items, index)) == sorted(items) for index in range(len(items)))


@pytest.mark.parametrize(("total", "rounds", "expected"), [(3000, 5, 600), (10, 3, 4), (1, 4, 1), (0, 2, 1)])
def test_per_round(total: int, rounds: int, expected: int) -> None:
    assert per_round(total, rounds) == expected


def test_ratios_against_sdk_and_aiohttp() -> None:
    cells = [
        Cell("openai", "SDK", 8, rounds_rps=[100.0, 200.0, 300.0]),
        Cell("aiohttp", "aiohttp", 8, rounds_rps=[1000.0, 1000.0]),
        Cell("resilient_llm", "ours", 8, rounds_rps=[500.0]),
        Cell("httpx", "httpx", 8, status="error: boom", rounds_rps=[50.0]),
        Cell("resilient_llm", "ours", 64, rounds_rps=[400.0]),
    ]
    rows = {(row["client"], row["concurrency"]): row for row in ratios(cells)}
    assert rows[("resilient_llm", 8)]["vs_sdk"] == 2.5
    assert rows[("resilient_llm", 8)]["vs_aiohttp"] == 0.5
    assert rows[("openai", 8)]["vs_sdk"] == 1.0
    assert rows[("httpx", 8)]["median_rps"] is None  # a failed cell has no median
    assert rows[("resilient_llm", 64)]["vs_sdk"] is None  # no SDK measured at that level
    text = table(ratios(cells))
    assert "error: boom" in text
    assert "2.50x" in text


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_drive_makes_exactly_n_calls_at_most_c_at_once() -> None:
    in_flight = peak = calls = 0

    async def call() -> str:
        nonlocal in_flight, peak, calls
        calls += 1
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0)
        in_flight -= 1
        return ""

    result = await drive(call, concurrency=4, requests=37, timeout=5.0)
    assert (calls, peak, result.requests) == (37, 4, 37)
    assert result.seconds > 0


@pytest.mark.anyio
@pytest.mark.timeout(10)
async def test_drive_gives_up_at_its_timeout() -> None:
    async def never() -> str:
        await asyncio.Event().wait()
        return ""

    with pytest.raises(asyncio.TimeoutError):
        await drive(never, concurrency=2, requests=2, timeout=0.05)


def test_content_of_reads_the_message_text() -> None:
    body = json.dumps({"choices": [{"message": {"content": "x"}}]}).encode()
    assert content_of(body) == "x"
    with pytest.raises(ValueError, match="no text content"):
        content_of(json.dumps({"choices": [{"message": {"content": None}}]}).encode())


def test_machine_info_and_command_line() -> None:
    info = machine_info()
    assert isinstance(info["nproc"], int) and info["nproc"] >= 1
    packages = info["packages"]
    assert isinstance(packages, dict) and "openai" in packages
    assert command_line(["benchmarks/bench_overhead.py", "--rounds", "2"]).endswith("--rounds 2")


@pytest.mark.timeout(30)
def test_running_server_starts_answers_and_stops() -> None:
    with running_server("stub") as server:
        with urllib.request.urlopen(f"{server.root_url}/health", timeout=5) as response:
            assert response.status == 200
        pid = server.pid
        assert server.get_json("/stats") == {
            "requests": 0,
            "streamed": 0,
            "running": 0,
            "completed": 0,
            "aborted": 0,
            "generation_tokens": 0,
        }
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


@pytest.mark.timeout(60)
def test_tiny_full_run_writes_json_and_chart(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    output, chart = tmp_path / "overhead.json", tmp_path / "chart.png"
    clients = ["aiohttp", "openai", "resilient_llm"]
    argv = ["--concurrency", "2", "--requests", "12", "--rounds", "2", "--warmup", "2", "--clients", *clients]
    code = bench_overhead.main([*argv, "--pin", "none", "--output", str(output), "--chart", str(chart)])
    assert code == 0
    document = json.loads(output.read_text())
    assert document["settings"]["rounds"] == 2
    rows = {row["client"]: row for row in document["results"]}
    assert set(rows) == set(clients)
    for name in ("aiohttp", "openai"):
        assert rows[name]["status"] == "ok"
        assert len(rows[name]["rounds_rps"]) == 2
        assert rows[name]["requests"] == 12
    assert rows["openai"]["vs_sdk"] == 1.0
    assert chart.read_bytes().startswith(b"\x89PNG")
    printed = capsys.readouterr().out
    assert "command: python" in printed and "machine:" in printed


def test_every_default_client_is_known() -> None:
    assert set(bench_overhead.build_parser().parse_args([]).clients) <= set(CLIENTS)


@pytest.mark.parametrize(
    "argv", [["--requests", "0"], ["--rounds", "0"], ["--warmup", "-1"], ["--concurrency", "0"]]
)
def test_bad_arguments_are_refused(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bench_overhead.main(argv)
    assert exit_info.value.code == 2
