"""How ``resilient-llm probe`` shows a :class:`~resilient_llm.cli._probe.ProbeReport`: rich renderables.

The only module of ``probe`` that imports ``rich`` (the ``cli`` extra), and only when a probe is printed.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from resilient_llm._load import ServerLoad
from resilient_llm._vllm._metrics import NO_ENGINE_LABEL

from ._probe import ProbeReport

__all__ = ["render"]

_STYLE = {"healthy": "bold green", "down": "bold red", "saturated": "bold yellow"}


def render(reports: ProbeReport | Sequence[ProbeReport], *, every: float | None = None) -> RenderableType:
    """One report as a summary grid and, when there is load data, a table per engine; several (the
    replicas of a client) as one table with a row each. ``every`` (the ``--watch`` interval) adds when
    the probe ran and how to stop.
    """
    if isinstance(reports, ProbeReport):
        return _one(reports, every)
    if len(reports) == 1:
        return _one(reports[0], every)
    return _several(reports, every)


def _several(reports: Sequence[ProbeReport], every: float | None) -> RenderableType:
    table = Table(title=f"{len(reports)} servers", title_justify="left")
    table.add_column("server", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("running", justify="right")
    table.add_column("waiting", justify="right")
    table.add_column("KV cache", justify="right")
    table.add_column("models")
    table.add_column("why / errors")
    for report in reports:
        cells = _load_cells(report.total) if report.total is not None else ("-", "-", "-")
        notes = "; ".join([*report.reasons, *(e for e in report.errors.values() if e not in report.reasons)])
        table.add_row(
            report.url,
            Text(report.status.upper(), style=_STYLE[report.status]),
            *cells,
            ", ".join(report.models) or "-",
            Text(notes, style="red") if notes else "",
        )
    if every is None:
        return table
    at = reports[0].at
    return Group(table, Text(f"probed at {at:%Y-%m-%d %H:%M:%S}, again every {every:g} s (Ctrl-C to stop)"))


def _one(report: ProbeReport, every: float | None) -> RenderableType:
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    verdict = Text(f"{report.status.upper()} (exit {report.exit_code})", style=_STYLE[report.status])
    if report.reasons:
        verdict.append(": " + "; ".join(report.reasons), style="")
    head.add_row("server", report.url)
    head.add_row("status", verdict)
    head.add_row("health", "-" if report.health is None else str(report.health))
    head.add_row("version", report.version or "-")
    head.add_row("models", ", ".join(report.models) or "-")
    for what, error in report.errors.items():
        if error not in report.reasons:
            head.add_row(f"{what} error", Text(error, style="red"))
    head.add_row("probe took", f"{report.elapsed * 1000:.0f} ms")
    if every is not None:
        head.add_row(
            "probed at",
            f"{report.at:%Y-%m-%d %H:%M:%S}, again every {every:g} s (Ctrl-C to stop)",
        )
    if report.engines is None or report.total is None:
        return head
    table = Table(title="load (from /metrics)", title_justify="left")
    table.add_column("engine")
    table.add_column("running", justify="right")
    table.add_column("waiting", justify="right")
    table.add_column("KV cache", justify="right")
    for engine, load in report.engines.items():
        table.add_row(engine if engine != NO_ENGINE_LABEL else "-", *_load_cells(load))
    table.add_row(Text(f"total ({report.total.engines})", style="bold"), *_load_cells(report.total))
    return Group(head, table)


def _load_cells(load: ServerLoad) -> tuple[str, str, str]:
    kv = "-" if load.kv_cache_usage is None else f"{load.kv_cache_usage:.1%}"
    return str(load.running), str(load.waiting), kv
