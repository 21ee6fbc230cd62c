"""The demo's PNG: calls by outcome, makespan ÷ ideal, wasted tokens, and the server's queue over time."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_chart(report: dict[str, Any], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    runs = report["runs"]
    labels = [r["label"] for r in runs]
    colors = ["#c0392b", "#27ae60"]
    fig, axes = plt.subplots(1, 4, figsize=(17, 4.2))
    ax = axes[0]
    bottom = [0] * len(runs)
    for key, color in (("ok", "#27ae60"), ("failed", "#e67e22"), ("hung", "#c0392b")):
        values = [r[key] + (r["not_run"] if key == "hung" else 0) for r in runs]
        ax.bar(labels, values, bottom=bottom, color=color, label=key)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_title("calls")
    ax.legend()
    ax = axes[1]
    ax.bar(labels, [r["makespan_over_ideal"] for r in runs], color=colors)
    ax.axhline(1.0, color="gray", linestyle="--", linewidth=1)
    ax.set_title("makespan ÷ ideal (lower is better)")
    ax = axes[2]
    ax.bar(labels, [r["wasted_pct"] for r in runs], color=colors)
    ax.set_title("wasted tokens, % of delivered")
    ax = axes[3]
    for (label, samples), color in zip(report["queue_samples"].items(), colors, strict=False):
        if samples:
            ax.plot(
                [s["t"] for s in samples],
                [s["waiting"] for s in samples],
                color=color,
                label=f"{label}: waiting",
            )
            ax.plot(
                [s["t"] for s in samples],
                [s["running"] for s in samples],
                color=color,
                alpha=0.4,
                linestyle=":",
                label=f"{label}: running",
            )
    ax.set_title("server queue (simulated seconds)")
    ax.legend(fontsize=7)
    for a in axes[:3]:
        a.tick_params(axis="x", labelsize=8)
    fig.suptitle(
        f"resilient-llm demo: time scale {report['time_scale']:g}, ideal makespan "
        f"{report['ideal_makespan_simulated_s']:.0f} simulated s"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
