"""The demo's PNG, one message per panel, drawn from the same report as ``demo.json`` and the table.

1. Calls: how many were answered, failed, hung, or never run (held behind a hung call).
2. Time to finish, in simulated seconds, against the ideal and the cut-off; a stopped run is marked.
3. Wasted GPU work: tokens generated that never reached a client, as a share of those delivered.
4. Was the server busy? Sequences running over time, one strip per run, against its capacity.

1200 × 900 pixels with large type, so it stays legible shrunk to a docs column or in a terminal's
image viewer. Needs matplotlib (the ``demo`` extra).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["OUTCOMES", "write_chart"]

RUN_COLORS = ("#b03a2e", "#1e8449")  # incident settings, resilient_llm defaults
#: (key in demo.json, label, colour, hatch): the same names as the table's columns.
OUTCOMES = (
    ("ok", "ok", "#27ae60", ""),
    ("failed", "failed", "#e67e22", ""),
    ("hung", "hung", "#c0392b", ""),
    ("not_run", "not run", "#f5b7b1", "//"),
)
IDEAL_COLOR, CUTOFF_COLOR = "#555555", "#c0392b"


def write_chart(report: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs: list[dict[str, Any]] = report["runs"]
    with plt.rc_context({"font.size": 14, "axes.titlesize": 15, "axes.titleweight": "bold"}):
        fig = plt.figure(figsize=(12, 9), dpi=100, layout="constrained")
        grid = fig.add_gridspec(2, 2)
        _calls(fig.add_subplot(grid[0, 0]), runs)
        _time(fig.add_subplot(grid[0, 1]), runs, report)
        _waste(fig.add_subplot(grid[1, 0]), runs)
        _busy(fig, grid[1, 1], runs, report)
        faults = ", ".join(f"{kind} {p:.0%}" for kind, p in report["faults"].items())
        fig.suptitle(
            f"resilient-llm demo: {runs[0]['calls']} ARC-shaped calls against a simulated vLLM\n"
            f"with the incident's faults ({faults}); times in simulated seconds",
            fontsize=15,
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
        plt.close(fig)
    return path


def _labels(runs: list[dict[str, Any]]) -> list[str]:
    return [r["label"].replace(" ", "\n", 1) for r in runs]


def _calls(ax: Any, runs: list[dict[str, Any]]) -> None:
    calls = runs[0]["calls"]
    ax.set_title(f"Calls answered, of {calls}")
    y = list(range(len(runs)))[::-1]  # the first run on top
    left = [0] * len(runs)
    for key, label, color, hatch in OUTCOMES:
        values = [r[key] for r in runs]
        ax.barh(y, values, left=left, color=color, hatch=hatch, edgecolor="white", label=label, height=0.6)
        for yi, start, value in zip(y, left, values, strict=True):
            if value >= 0.07 * calls:  # room for the number inside the segment
                ax.text(start + value / 2, yi, str(value), ha="center", va="center", fontsize=13)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(y, _labels(runs))
    ax.set_xlim(0, calls)
    ax.set_xlabel("calls")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=4, frameon=False, fontsize=13)
    for yi, r in zip(y, runs, strict=True):
        unanswered = r["hung"] + r["not_run"]
        if unanswered:
            ax.text(
                calls,
                yi + 0.38,
                f"{unanswered} never answered: {r['hung']} hung + {r['not_run']} not run",
                ha="right",
                va="bottom",
                fontsize=13,
                color=CUTOFF_COLOR,
            )
    ax.set_ylim(-0.6, len(runs) - 0.25)


def _time(ax: Any, runs: list[dict[str, Any]], report: dict[str, Any]) -> None:
    ideal = report["ideal_makespan_simulated_s"]
    cutoff = report["cutoff_simulated_s"]
    ax.set_title("Time to finish the workload")
    y = list(range(len(runs)))[::-1]
    spans = [r["makespan_simulated_s"] for r in runs]
    bars = ax.barh(y, spans, color=RUN_COLORS[: len(runs)], height=0.6)
    for bar, r in zip(bars, runs, strict=True):
        if r["limit_hit"]:
            bar.set_hatch("//")
            bar.set_edgecolor("white")
    ax.axvline(ideal, color=IDEAL_COLOR, linestyle="--", linewidth=1.5)
    ax.axvline(cutoff, color=CUTOFF_COLOR, linestyle=":", linewidth=2)
    top = len(runs) + 0.15
    ax.text(ideal, top, f" ideal\n {ideal:.0f} s", color=IDEAL_COLOR, va="top", fontsize=13)
    ax.text(
        cutoff,
        top,
        f"cut-off: {report['limit_factor']:g} × ideal \n= {cutoff:.0f} s ",
        color=CUTOFF_COLOR,
        ha="right",
        va="top",
        fontsize=13,
    )
    for yi, r in zip(y, runs, strict=True):
        span = r["makespan_simulated_s"]
        text = f"{span:.0f}+ s: stopped, still waiting" if r["limit_hit"] else f"{span:.0f} s: done"
        inside = span > 0.55 * cutoff
        ax.text(
            span,
            yi,
            f"{text} " if inside else f" {text}",
            ha="right" if inside else "left",
            va="center",
            fontsize=13,
            color="white" if inside else "black",
            fontweight="bold",
        )
    ax.set_yticks(y, _labels(runs))
    ax.set_xlim(0, cutoff * 1.02)
    ax.set_ylim(-0.6, len(runs) + 0.2)
    ax.set_xlabel("simulated seconds")


def _waste(ax: Any, runs: list[dict[str, Any]]) -> None:
    ax.set_title("GPU work thrown away")
    y = list(range(len(runs)))[::-1]
    pcts = [r["wasted_pct"] for r in runs]
    ax.barh(y, pcts, color=RUN_COLORS[: len(runs)], height=0.6)
    top = max([*pcts, 1.0])
    for yi, r in zip(y, runs, strict=True):
        ax.text(
            r["wasted_pct"] + top * 0.02,
            yi,
            f"{r['wasted_pct']:.1f} % ({r['tokens_wasted']:,} tokens)",
            va="center",
            fontsize=13,
        )
    ax.set_yticks(y, _labels(runs))
    ax.set_xlim(0, top * 1.9)
    ax.set_ylim(-0.6, len(runs) - 0.4)
    ax.set_xlabel("tokens generated but never delivered, % of delivered")


def _busy(fig: Any, cell: Any, runs: list[dict[str, Any]], report: dict[str, Any]) -> None:
    samples: dict[str, list[dict[str, Any]]] = report["queue_samples"]
    capacity = report["capacity"]
    cutoff = report["cutoff_simulated_s"]
    inner = cell.subgridspec(len(runs), 1, hspace=0.15)
    axes = [fig.add_subplot(inner[i, 0]) for i in range(len(runs))]
    axes[0].set_title(f"Server busy? Sequences running, of {capacity}")
    for ax, r, color in zip(axes, runs, RUN_COLORS, strict=False):
        points = samples.get(r["label"], [])
        t = [s["t"] for s in points]
        running = [s["running"] for s in points]
        ax.fill_between(t, running, step="post", color=color, alpha=0.35, linewidth=0)
        ax.step(t, running, where="post", color=color, linewidth=1.2)
        ax.axhline(capacity, color=IDEAL_COLOR, linestyle="--", linewidth=1)
        end = r["makespan_simulated_s"]
        ax.axvline(end, color=CUTOFF_COLOR if r["limit_hit"] else "black", linestyle=":", linewidth=2)
        if r["limit_hit"]:  # at the right edge: the note goes left of the line
            ax.text(end, capacity * 1.33, "stopped ", ha="right", va="top", fontsize=13)
        else:
            ax.text(end, capacity * 0.5, f" done at {end:.0f} s", ha="left", va="center", fontsize=13)
        ax.text(
            0.01,
            0.96,
            r["label"],
            transform=ax.transAxes,
            va="top",
            fontsize=13,
            color=color,
            fontweight="bold",
        )
        busy = [s["t"] for s in points if s["running"] > 0]
        if r["limit_hit"] and busy and end - busy[-1] > 0.3 * cutoff:
            ax.text(
                (busy[-1] + end) / 2,
                capacity * 0.45,
                "server idle,\nclient still waiting",
                ha="center",
                va="center",
                fontsize=13,
                color=color,
            )
        ax.set_xlim(0, cutoff * 1.02)
        ax.set_ylim(0, capacity * 1.35)
        ax.set_yticks([0, capacity])
    for ax in axes[:-1]:
        ax.tick_params(labelbottom=False)
    axes[-1].set_xlabel("simulated seconds since the run started")
