"""Start a benchmark server in a process of its own, wait until it answers, stop it afterwards.

Two kinds: ``stub`` (``benchmarks/_stub_server.py``, aiohttp only, always available) and
``simulator`` (``resilient-llm simulate``, the package's vLLM simulator, once it is installed).
The server can be pinned to chosen CPUs so that client and server do not trade places on a small
machine; on 2 cores the two still share the machine, which the reports say.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ServerKind = Literal["stub", "simulator"]
SERVER_KINDS: tuple[ServerKind, ...] = ("stub", "simulator")
STUB_PATH = Path(__file__).resolve().with_name("_stub_server.py")
HOST = "127.0.0.1"


class ServerUnavailable(RuntimeError):
    """The requested server cannot be started here."""


@dataclass(frozen=True)
class RunningServer:
    kind: ServerKind
    pid: int
    root_url: str

    @property
    def base_url(self) -> str:
        """The OpenAI-style base URL, ``.../v1``."""
        return f"{self.root_url}/v1"

    def get_json(self, path: str, timeout: float = 5.0) -> object:
        with urllib.request.urlopen(f"{self.root_url}{path}", timeout=timeout) as response:
            return json.loads(response.read())

    def get_text(self, path: str, timeout: float = 5.0) -> str:
        with urllib.request.urlopen(f"{self.root_url}{path}", timeout=timeout) as response:
            text: str = response.read().decode("utf-8")
            return text


def simulator_available() -> bool:
    try:
        return importlib.util.find_spec("resilient_llm.cli._simulate") is not None
    except ModuleNotFoundError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def server_command(kind: ServerKind, port: int, extra_args: Sequence[str]) -> list[str]:
    if kind == "stub":
        return [sys.executable, str(STUB_PATH), "--host", HOST, "--port", str(port), *extra_args]
    if not simulator_available():
        raise ServerUnavailable("resilient_llm.testing's simulator is not installed yet; use --server stub")
    return [sys.executable, "-m", "resilient_llm.cli", "simulate", "--port", str(port), *extra_args]


def pin(pid: int, cpus: set[int] | None) -> None:
    """Restrict ``pid`` to ``cpus`` (Linux only; a no-op elsewhere or when ``cpus`` is None)."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, cpus)


def split_cpus() -> tuple[set[int] | None, set[int] | None]:
    """(server CPUs, client CPUs): the last usable CPU for the server, the others for the client."""
    if not hasattr(os, "sched_getaffinity"):
        return None, None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None, None
    return {cpus[-1]}, set(cpus[:-1])


def _wait_healthy(root_url: str, process: subprocess.Popen[str], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServerUnavailable(f"server exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{root_url}/health", timeout=1.0) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise ServerUnavailable(f"server at {root_url} did not answer /health in time")


@contextlib.contextmanager
def running_server(
    kind: ServerKind = "stub",
    *,
    extra_args: Sequence[str] = (),
    cpus: set[int] | None = None,
    ready_timeout: float = 30.0,
    log_path: Path | None = None,
) -> Iterator[RunningServer]:
    """Start a server, yield it once ``/health`` answers, and stop it (SIGTERM, then SIGKILL)."""
    port = free_port()
    command = server_command(kind, port, extra_args)
    log_file = open(log_path, "w", encoding="utf-8") if log_path else None  # noqa: SIM115
    process = subprocess.Popen(
        command,
        stdout=log_file if log_file else subprocess.DEVNULL,
        stderr=subprocess.STDOUT if log_file else subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )
    try:
        pin(process.pid, cpus)
        root_url = f"http://{HOST}:{port}"
        _wait_healthy(root_url, process, time.monotonic() + ready_timeout)
        yield RunningServer(kind=kind, pid=process.pid, root_url=root_url)
    finally:
        stop_process(process)
        if log_file:
            log_file.close()


def stop_process(process: subprocess.Popen[str], grace: float = 5.0) -> None:
    """End a process started with ``start_new_session=True`` and its children."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=grace)
