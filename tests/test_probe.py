from __future__ import annotations

import argparse
import contextlib
import io
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from rich.console import Console

from resilient_llm._load import ServerLoad
from resilient_llm.cli import _probe
from resilient_llm.cli._probe import probe

FIXTURES = Path(__file__).parent / "fixtures"
LOADED = (FIXTURES / "metrics_real_v032_loaded.txt").read_text()  # running 52, waiting 12, KV 0.143
IDLE = (FIXTURES / "metrics_real_v032_idle.txt").read_text()
TWO_ENGINES = (FIXTURES / "metrics_two_engines.txt").read_text()  # 30+18 running, 5+0 waiting, KV .75/.25
MODELS: dict[str, object] = {
    "object": "list",
    "data": [{"id": "openai/gpt-oss-20b", "object": "model", "max_model_len": 8192}],
}

Route = tuple[int, str | bytes | dict[str, object]]


def routes(**overrides: Route | None) -> dict[str, Route]:
    """A healthy idle vLLM 0.32; ``overrides`` replace (or with None remove) paths, '/' spelled '_'."""
    table: dict[str, Route] = {
        "/health": (200, b""),
        "/version": (200, {"version": "0.32.0"}),
        "/v1/models": (200, MODELS),
        "/metrics": (200, IDLE),
    }
    for key, route in overrides.items():
        path = "/" + key.replace("__", "/")
        if route is None:
            table.pop(path, None)
        else:
            table[path] = route
    return table


def mock_client(table: dict[str, Route], seen: list[str] | None = None) -> httpx.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(str(request.url))
        route = table.get(request.url.path)
        if route is None:
            return httpx.Response(404, json={"detail": "Not Found"})
        status, body = route
        if isinstance(body, dict):
            return httpx.Response(status, json=body)
        return httpx.Response(status, content=body.encode() if isinstance(body, str) else body)

    return httpx.Client(transport=httpx.MockTransport(handler))


@pytest.mark.parametrize(
    ("table", "status", "reasons"),
    [
        (routes(), "healthy", ()),
        (routes(metrics=(200, LOADED)), "saturated", ("waiting 12 >= 5",)),
        (routes(metrics=(200, TWO_ENGINES)), "saturated", ("waiting 5 >= 5",)),  # summed over engines
        (routes(health=(503, b"")), "down", ("/health answered 503",)),
        (routes(health=None), "down", ("/health answered 404",)),
        (routes(metrics=None), "healthy", ()),  # no /metrics: nothing says saturated
        (routes(metrics=(200, "# not vllm\nup 1\n")), "healthy", ()),
        (routes(version=None, v1__models=(500, b"boom")), "healthy", ()),
    ],
)
def test_status(table: dict[str, Route], status: str, reasons: tuple[str, ...]) -> None:
    report = probe("http://vllm:8000/v1", client=mock_client(table))
    assert report.status == status
    assert report.reasons == reasons
    assert report.exit_code == {"healthy": 0, "down": 1, "saturated": 2}[status]


@pytest.mark.parametrize(
    ("max_waiting", "max_kv", "reasons"),
    [
        (12, 0.8, ("waiting 12 >= 12",)),
        (13, 0.8, ()),
        (100, 0.14, ("KV cache 14.3% >= 14%",)),
        (100, 0.15, ()),
        (1, 0.1, ("waiting 12 >= 1", "KV cache 14.3% >= 10%")),
    ],
)
def test_thresholds(max_waiting: int, max_kv: float, reasons: tuple[str, ...]) -> None:
    report = probe(
        "http://vllm:8000",
        max_waiting=max_waiting,
        max_kv=max_kv,
        client=mock_client(routes(metrics=(200, LOADED))),
    )
    assert report.reasons == reasons
    assert report.status == ("saturated" if reasons else "healthy")


def test_report_contents() -> None:
    report = probe(
        "http://vllm:8000/v1", max_waiting=100, client=mock_client(routes(metrics=(200, TWO_ENGINES)))
    )
    assert report.health == 200
    assert report.version == "0.32.0"
    assert report.models == ("openai/gpt-oss-20b (max_model_len 8192)",)
    assert report.engines is not None
    assert report.engines["0"] == ServerLoad(30, 5, 0.75, 1, 0.0, preemptions=3)
    assert report.engines["1"] == ServerLoad(18, 0, 0.25, 1, 0.0, preemptions=0)
    assert report.total == ServerLoad(48, 5, 0.5, 2, 0.0, preemptions=3)
    assert report.errors == {}


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("http://h:8000/v1", "http://h:8000"),
        ("http://h:8000", "http://h:8000"),
        ("http://h/proxy/v1/", "http://h/proxy"),
    ],
)
def test_paths_asked(base_url: str, expected: str) -> None:
    seen: list[str] = []
    probe(base_url, client=mock_client(routes(), seen))
    assert seen == [
        f"{expected}/health",
        f"{expected}/version",
        f"{expected}/v1/models",
        f"{expected}/metrics",
    ]


def test_errors_are_reported_not_raised() -> None:
    report = probe(
        "http://vllm:8000",
        client=mock_client(
            routes(version=(200, b"not json"), v1__models=(401, {"error": "no key"}), metrics=(500, b""))
        ),
    )
    assert report.status == "healthy"
    assert report.version is None
    assert report.models == ()
    assert report.errors == {
        "version": "HTTP 200, no version",
        "models": "HTTP 401, no model list",
        "metrics": "HTTP 500",
    }


def test_non_vllm_metrics_is_an_error_entry() -> None:
    report = probe("http://vllm:8000", client=mock_client(routes(metrics=(200, "up 1\n"))))
    assert report.errors == {"metrics": "no vLLM request gauges in /metrics"}
    assert report.engines is None
    assert report.total is None


def test_stops_after_health_fails_to_connect() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        raise httpx.ConnectError("Connection refused", request=request)

    report = probe("http://vllm:8000", client=httpx.Client(transport=httpx.MockTransport(handler)))
    assert seen == ["/health"]
    assert report.status == "down"
    assert report.reasons == ("cannot connect: Connection refused",)


def test_json_shape() -> None:
    report = probe("http://vllm:8000/v1", client=mock_client(routes(metrics=(200, TWO_ENGINES))))
    doc = json.loads(json.dumps(report.as_json()))
    assert doc["status"] == "saturated"  # waiting 5 >= default 5
    assert doc["exit_code"] == 2
    assert doc["engines"] == {
        "0": {"running": 30, "waiting": 5, "kv_cache_usage": 0.75},
        "1": {"running": 18, "waiting": 0, "kv_cache_usage": 0.25},
    }
    assert doc["total"] == {"running": 48, "waiting": 5, "kv_cache_usage": 0.5, "engines": 2}
    assert doc["models"] == ["openai/gpt-oss-20b (max_model_len 8192)"]


# --- against real sockets on loopback -----------------------------------------------------------------


@contextlib.contextmanager
def serve(table: dict[str, Route]) -> Iterator[str]:
    """A tiny threaded HTTP server on 127.0.0.1 answering from ``table``; yields its base URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = table.get(self.path, (404, {"detail": "Not Found"}))
            payload = json.dumps(body).encode() if isinstance(body, dict) else body
            data = payload.encode() if isinstance(payload, str) else payload
            self.send_response(status)
            self.send_header("content-type", "application/json" if isinstance(body, dict) else "text/plain")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="resilient-llm")
    _probe.add_parser(root.add_subparsers(dest="command", required=True))
    return root


def run_cli(parser: argparse.ArgumentParser, *argv: str) -> tuple[int, str]:
    out = io.StringIO()
    code = _probe.run(parser.parse_args(["probe", *argv]), console=Console(file=out, width=120))
    return code, out.getvalue()


@pytest.mark.timeout(10)
def test_cli_healthy(parser: argparse.ArgumentParser) -> None:
    with serve(routes(metrics=(200, TWO_ENGINES))) as url:
        code, out = run_cli(parser, url, "--max-waiting", "10")
    assert code == 0
    for text in (
        "HEALTHY",
        "0.32.0",
        "openai/gpt-oss-20b",
        "max_model_len 8192",
        "75.0%",
        "25.0%",
        "total (2)",
    ):
        assert text in out
    assert "48" in out.split("total (2)")[1]


@pytest.mark.timeout(10)
def test_cli_saturated_json(parser: argparse.ArgumentParser) -> None:
    with serve(routes(metrics=(200, LOADED))) as url:
        code, out = run_cli(parser, url, "--json")
    assert code == 2
    doc = json.loads(out)
    assert doc["status"] == "saturated"
    assert doc["total"]["running"] == 52
    assert doc["version"] == "0.32.0"


@pytest.mark.timeout(10)
def test_cli_health_503(parser: argparse.ArgumentParser) -> None:
    with serve(routes(health=(503, b""))) as url:
        code, out = run_cli(parser, url)
    assert code == 1
    assert "DOWN" in out
    assert "/health answered 503" in out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


@pytest.mark.timeout(10)
def test_cli_refused(parser: argparse.ArgumentParser) -> None:
    started = time.monotonic()
    code, out = run_cli(parser, f"http://127.0.0.1:{free_port()}/v1", "--timeout", "1")
    assert code == 1
    assert "DOWN" in out
    assert time.monotonic() - started < 5


@pytest.mark.timeout(10)
def test_cli_does_not_hang_on_a_silent_server(parser: argparse.ArgumentParser) -> None:
    # Accepts connections (the kernel's backlog does) but never answers.
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        url = f"http://127.0.0.1:{listener.getsockname()[1]}/v1"
        started = time.monotonic()
        code, out = run_cli(parser, url, "--timeout", "0.3", "--json")
        elapsed = time.monotonic() - started
    assert code == 1
    assert json.loads(out)["reasons"][0].startswith("timed out")
    assert elapsed < 3


def interrupt_after(calls: int) -> Callable[[float], None]:
    seen: list[float] = []

    def fake_sleep(seconds: float) -> None:
        seen.append(seconds)
        if len(seen) >= calls:
            raise KeyboardInterrupt

    return fake_sleep


@pytest.mark.timeout(10)
def test_cli_watch_json_until_ctrl_c(
    parser: argparse.ArgumentParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_probe, "_sleep", interrupt_after(3))
    with serve(routes(metrics=(200, LOADED))) as url:
        code, out = run_cli(parser, url, "--watch", "0.5", "--json")
    lines = out.splitlines()
    assert len(lines) == 3
    assert all(json.loads(line)["status"] == "saturated" for line in lines)
    assert all(
        re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", json.loads(line)["time"])
        for line in lines
    )
    assert code == 2


@pytest.mark.timeout(10)
def test_cli_watch_live_until_ctrl_c(
    parser: argparse.ArgumentParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_probe, "_sleep", interrupt_after(2))
    table = routes()
    with serve(table) as url:
        code, out = run_cli(parser, url, "--watch")
    assert code == 0
    assert "HEALTHY" in out
    assert "Traceback" not in out
    # When it probed, and how to stop.
    assert re.search(r"probed at +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d, again every 2 s \(Ctrl-C to stop\)", out), (
        out
    )


@pytest.mark.timeout(10)
def test_cli_watch_reports_the_last_status(
    parser: argparse.ArgumentParser, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = routes()
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if len(sleeps) == 1:
            table["/health"] = (503, b"")  # the server goes down between probes
        else:
            raise KeyboardInterrupt

    monkeypatch.setattr(_probe, "_sleep", sleep)
    with serve(table) as url:
        code, _ = run_cli(parser, url, "--watch", "0.25", "--json")
    assert sleeps == [0.25, 0.25]
    assert code == 1


@pytest.mark.parametrize(
    "argv",
    [
        ["not-a-url"],
        ["ftp://h/v1"],
        ["http://h/v1", "--timeout", "0"],
        ["http://h/v1", "--timeout", "nan"],
        ["http://h/v1", "--watch", "-1"],
        ["http://h/v1", "--max-waiting", "0"],
        ["http://h/v1", "--max-waiting", "1.5"],
        ["http://h/v1", "--max-kv", "0"],
        ["http://h/v1", "--max-kv", "1.5"],
    ],
)
def test_cli_rejects_bad_arguments(
    parser: argparse.ArgumentParser, argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        parser.parse_args(["probe", *argv])
    assert "probe" in capsys.readouterr().err


def test_cli_defaults(parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args(["probe", "http://h:8000/v1"])
    assert (args.watch, args.timeout, args.max_waiting, args.max_kv, args.json) == (None, 2.0, 5, 0.8, False)
    assert parser.parse_args(["probe", "http://h/v1", "--watch"]).watch == 2.0


def test_help_documents_exit_status(
    parser: argparse.ArgumentParser, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        parser.parse_args(["probe", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for text in ("exit status", "0  healthy", "1  down", "2  saturated", "--watch [SECONDS]", "--max-kv F"):
        assert text in out


@pytest.mark.timeout(10)
def test_cli_several_replicas_one_row_each_and_the_worst_status(parser: argparse.ArgumentParser) -> None:
    with (
        serve(routes(metrics=(200, TWO_ENGINES))) as healthy,
        serve(routes(metrics=(200, LOADED))) as saturated,
    ):
        down = f"http://127.0.0.1:{free_port()}/v1"
        code, out = run_cli(parser, healthy, saturated, down, "--timeout", "1", "--max-waiting", "10")
        assert code == 1  # one is down
        for text in ("3 servers", healthy, saturated, down, "HEALTHY", "SATURATED", "DOWN", "cannot connect"):
            assert text in out, text
        code, out = run_cli(parser, healthy, saturated, "--json", "--max-waiting", "10")
    assert code == 2  # none down, one saturated
    docs = [json.loads(line) for line in out.splitlines()]
    assert [d["url"] for d in docs] == [healthy, saturated]
    assert [d["status"] for d in docs] == ["healthy", "saturated"]


def test_cli_takes_several_urls(parser: argparse.ArgumentParser) -> None:
    args = parser.parse_args(["probe", "http://a:8000/v1", "http://b:8000/v1"])
    assert args.urls == ["http://a:8000/v1", "http://b:8000/v1"]
    with pytest.raises(SystemExit):
        parser.parse_args(["probe"])


@pytest.mark.timeout(60)
def test_cli_measure_lag_reports_what_the_client_learned(parser: argparse.ArgumentParser) -> None:
    from resilient_llm.testing import SimulatorConfig, SimulatorThread

    # 64 tokens of 0.02 s: each call lasts over a second, several scrapes of the monitor's 0.5 s.
    config = SimulatorConfig(capacity=16, token_time=0.02, metrics_lag=0.05, metrics_lag_mode="steps")
    with SimulatorThread(config) as sim:
        code, out = run_cli(parser, sim.base_url, "--measure-lag", "4", "--json")
        assert sim.stats().requests_received == 4
    assert code == 0
    lag = json.loads(out.strip().splitlines()[-1])["lag"]
    assert lag["calls"] == 4 and lag["ok"] == 4 and lag["error"] is None
    assert lag["metrics_lag"] is not None and 0 < lag["metrics_lag"] < 1.0
    assert lag["orphan_grace"] is not None and 0 < lag["orphan_grace"] <= 10


@pytest.mark.timeout(10)
def test_cli_measure_lag_skips_a_server_without_metrics(parser: argparse.ArgumentParser) -> None:
    with serve(routes(metrics=(404, "no"))) as url:
        code, out = run_cli(parser, url, "--measure-lag")
    assert code == 0
    assert "lag not measured: it lists no model or shows no vLLM /metrics" in out


def test_cli_measure_lag_is_a_one_off(parser: argparse.ArgumentParser) -> None:
    code, out = run_cli(parser, "http://127.0.0.1:9/v1", "--measure-lag", "--watch")
    assert code == 2 and "--measure-lag is a one-off" in out
