"""What a benchmark ran on: command line, CPU, Python and the versions of the packages compared."""

from __future__ import annotations

import os
import platform
import shlex
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

PACKAGES = ("resilient-llm", "openai", "httpx", "httpx2", "httpx-aiohttp", "aiohttp", "anyio")
REPO_ROOT = Path(__file__).resolve().parent.parent


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo``, or ``platform.processor()`` elsewhere."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str]:
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def usable_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def load_average() -> list[float] | None:
    """The 1, 5 and 15 minute load averages (what ``uptime`` shows), or None where there are none."""
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info() -> dict[str, object]:
    return {
        "nproc": len(usable_cpus()),
        "load_average": load_average(),
        "cpu_count": os.cpu_count(),
        "cpu_model": cpu_model(),
        "python": sys.version.split()[0],
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "packages": package_versions(),
    }


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as it was typed, relative to the repository root when it can be."""
    args = list(sys.argv if argv is None else argv)
    if args:
        script = Path(args[0]).resolve()
        if script.is_relative_to(REPO_ROOT):
            args[0] = str(script.relative_to(REPO_ROOT))
    return shlex.join(["python", *args])


def describe(info: dict[str, object], command: str) -> str:
    """A few lines for the top of a benchmark's output."""
    packages = info["packages"]
    assert isinstance(packages, dict)
    versions = ", ".join(f"{name} {version}" for name, version in packages.items())
    load = info.get("load_average")
    loaded = f"; load average {', '.join(f'{v:.2f}' for v in load)}" if isinstance(load, list) else ""
    return "\n".join(
        [
            f"command: {command}",
            f"machine: {info['nproc']} CPUs ({info['cpu_model']}), {info['implementation']} {info['python']}"
            + loaded,
            f"packages: {versions}",
        ]
    )


def write_results(path: Path, document: dict[str, object]) -> None:
    """The benchmark's JSON results file (parent folders created)."""
    import json

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
