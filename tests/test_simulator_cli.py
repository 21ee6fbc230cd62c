"""``resilient-llm simulate``: argument parsing, errors, and a real process that starts and stops."""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import subprocess
import sys

import httpx
import pytest

from resilient_llm._exceptions import ConfigError
from resilient_llm.cli import _simulate
from resilient_llm.testing import LogNormalLength, ReplicaFaults


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="resilient-llm")
    _simulate.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["simulate", *argv])


def test_defaults() -> None:
    config = _simulate.config_from_args(parse())
    assert (config.host, config.port, config.capacity, config.time_scale) == ("127.0.0.1", 8000, 16, 1.0)
    assert dict(config.faults) == {} and config.token_time == 0.02


def test_options_reach_the_config() -> None:
    args = parse(
        "--port", "9001", "--capacity", "4", "--faults", "ghost=0.02,drop=0.01", "--time-scale", "0.1",
        "--seed", "5", "--token-time", "0.05", "--model", "m", "--engines", "2", "--max-queued", "3",
        "--metrics-lag", "2", "--fault-script", "lost,none,503", "--output-tokens", "lognormal:300:0.5",
    )  # fmt: skip
    config = _simulate.config_from_args(args)
    assert dict(config.faults) == {"ghost": 0.02, "drop": 0.01}
    assert config.fault_script == ("lost", "none", "503")
    assert config.output_tokens == LogNormalLength(median=300, sigma=0.5, maximum=32768)
    assert (config.port, config.capacity, config.seed, config.model, config.engines) == (9001, 4, 5, "m", 2)
    assert (config.time_scale, config.token_time, config.max_queued, config.metrics_lag) == (
        0.1,
        0.05,
        3,
        2.0,
    )


def test_instant_means_no_delays_and_short_answers() -> None:
    config = _simulate.config_from_args(parse("--instant"))
    assert config.token_time == config.prefill_time_per_token == 0.0
    assert config.output_tokens == _simulate.INSTANT_OUTPUT_TOKENS and config.reasoning_ratio == 0.0


@pytest.mark.parametrize(
    ("argv", "complaint"),
    [
        (["--faults", "ghost=0.02,dorp=0.01"], "unknown fault 'dorp' in 'dorp=0.01'"),
        (["--faults", "ghost"], "'ghost' is not NAME=PROBABILITY"),
        (["--faults", "ghost=often"], "'often' in 'ghost=often' is not a number"),
        (["--output-tokens", "lots"], "'lots' is not N or lognormal"),
    ],
)
def test_bad_arguments_name_the_bad_part(
    argv: list[str], complaint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parse(*argv)
    assert info.value.code == 2
    assert complaint in capsys.readouterr().err


def test_invalid_config_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate.run(parse("--capacity", "0")) == 2
    assert "SimulatorConfig: capacity must be an integer >= 1, got 0" in capsys.readouterr().err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def spawn(*argv: str) -> subprocess.Popen[str]:
    code = "import sys; from resilient_llm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, "simulate", "--instant", *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def start(*argv: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    return spawn("--port", str(port), *argv), port


def stop(process: subprocess.Popen[str]) -> tuple[str, str]:
    try:
        process.send_signal(signal.SIGTERM)
        return process.communicate(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


@pytest.mark.timeout(30)
def test_serves_until_sigterm_with_one_startup_line() -> None:
    process, port = start("--faults", "ghost=0.01")
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()  # printed once the socket is bound
        assert banner == (
            f"Simulated vLLM at http://127.0.0.1:{port}/v1 (Ctrl-C to stop): capacity 16, faults ghost=0.01\n"
        )
        response = httpx.post(
            f"http://127.0.0.1:{port}/v1/chat/completions",
            json={"messages": [{"role": "user", "content": "hi"}], "simulator": {"fault": "none"}},
        )
        assert response.json()["usage"]["completion_tokens"] == _simulate.INSTANT_OUTPUT_TOKENS
    finally:
        out, err = stop(process)
    assert process.returncode == 0, err
    assert "Stopped. requests=1 completed=1" in out
    assert "serving" not in err  # the start-up line is printed once, not logged again
    assert "POST" not in err  # no request log unless asked


@pytest.mark.timeout(30)
def test_log_requests_logs_each_request_and_its_fault() -> None:
    process, port = start("--log-requests", "--log-level", "WARNING")
    try:
        assert process.stdout is not None
        process.stdout.readline()
        body = {"messages": [{"role": "user", "content": "hi"}]}
        assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body).status_code == 200
        faulty = {**body, "simulator": {"fault": "503"}}
        assert httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=faulty).status_code == 503
        assert httpx.get(f"http://127.0.0.1:{port}/nowhere").status_code == 404
    finally:
        _, err = stop(process)
    lines = err.splitlines()
    requests = [line for line in lines if re.match(r"\d\d:\d\d:\d\d INFO 127\.0\.0\.1:\d+ ", line)]
    assert len(requests) == 3, err
    assert " POST /v1/chat/completions 200 " in requests[0]
    assert " POST /v1/chat/completions 503 " in requests[1]
    assert " GET /nowhere 404 " in requests[2]
    assert any("fault 503" in line for line in lines), err
    assert "serving" not in err  # still one start-up line, on stdout


def test_replica_options_become_replica_faults() -> None:
    plan = _simulate.replica_faults(["1:die_at=60", "2:slowdown=2,drain_at=120"], 3)
    assert plan == {
        1: ReplicaFaults(die_at=60.0),
        2: ReplicaFaults(slowdown=2.0, drain_at=120.0),
    }
    assert _simulate.replica_faults([], 3) == {}


@pytest.mark.parametrize(
    ("specs", "complaint"),
    [
        (
            ["3:die_at=1"],
            "--replica must be I:KEY=VALUE,... with I a replica index in 0..2, got '3:die_at=1'",
        ),
        (["x:die_at=1"], "with I a replica index in 0..2, got 'x:die_at=1'"),
        (["1"], "got '1'"),
        (["1:explode=1"], "--replica 1: each setting must be KEY=VALUE with KEY one of slowdown, die_at"),
        (["1:die_at=soon"], "--replica 1: die_at must be a number, got 'soon'"),
        (["1:die_at=-1"], "ReplicaFaults: die_at must be a finite number >= 0, got -1.0"),
        (["1:die_at=1", "1:slowdown=2"], "--replica 1 is given twice"),
    ],
)
def test_bad_replica_options_name_the_bad_part(specs: list[str], complaint: str) -> None:
    with pytest.raises(ConfigError) as info:
        _simulate.replica_faults(specs, 3)
    assert complaint in str(info.value)


def test_a_bad_replica_option_is_an_error_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    assert _simulate.run(parse("--replicas", "2", "--replica", "5:die_at=1")) == 2
    assert "resilient-llm simulate: error: --replica must be" in capsys.readouterr().err


@pytest.mark.timeout(30)
def test_replicas_one_that_dies_and_one_that_drains() -> None:
    # --port 0: the simulator finds a free run of three consecutive ports itself (a port picked here
    # and its two neighbours could be taken by another test's connections before it binds them).
    process = spawn("--port", "0", "--replicas", "3", "--replica", "1:die_at=0", "--replica", "2:drain_at=0")
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        found = re.findall(r"http://127\.0\.0\.1:(\d+)/v1", banner)
        assert len(found) == 3, (banner, process.stderr.read() if not banner else "")
        port = int(found[0])
        assert found == [str(port), str(port + 1), str(port + 2)]
        body = {"messages": [{"role": "user", "content": "hi"}], "simulator": {"fault": "none"}}
        ok = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=body)
        assert ok.status_code == 200
        with pytest.raises(httpx.ConnectError):
            httpx.post(f"http://127.0.0.1:{port + 1}/v1/chat/completions", json=body)
        drained = httpx.post(f"http://127.0.0.1:{port + 2}/v1/chat/completions", json=body)
        assert drained.status_code == 503
    finally:
        out, err = stop(process)
    assert process.returncode == 0, err
    assert "Stopped. peak_in_flight=" in out
