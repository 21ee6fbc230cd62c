"""``GET /metrics``: engine snapshots rendered in vLLM 0.33's Prometheus exposition, and the lag.

Every series carries ``engine`` and ``model_name`` labels (one series per engine, so readers sum
over engines); counters come with their ``_created`` gauges as prometheus_client renders them. The
histograms, ``python_*`` and ``process_*`` families of a real scrape are left out.

Real vLLM's ``/metrics`` trails reality by seconds under a burst; :class:`MetricsHistory` keeps
recent snapshots so a scrape can report the state as it was ``lag`` seconds ago.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from resilient_llm.testing._engine import EngineSnapshot

__all__ = ["MetricsHistory", "render_metrics"]

_QUEUE_LIMIT_REASONS = ("max_num_queued_reqs", "max_num_queued_tokens")


def _num(value: float) -> str:
    return repr(float(value))


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    return ",".join(f'{k}="{v}"' for k, v in sorted(pairs))


class _Writer:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def family(self, name: str, kind: str, help_: str, rows: Iterable[tuple[str, float]]) -> None:
        self.lines.append(f"# HELP {name} {help_}")
        self.lines.append(f"# TYPE {name} {kind}")
        self.lines.extend(f"{name}{{{labels}}} {_num(value)}" for labels, value in rows)

    def counter(self, base: str, help_: str, rows: list[tuple[str, float]], created: float) -> None:
        self.family(f"{base}_total", "counter", help_, rows)
        self.family(f"{base}_created", "gauge", help_, [(labels, created) for labels, _ in rows])


def render_metrics(model: str, snapshots: Iterable[EngineSnapshot], created: float) -> str:
    """The exposition text for ``snapshots`` (one per engine); ``created`` is a Unix time."""
    snaps = list(snapshots)
    quoted = model.replace("\\", "\\\\").replace('"', '\\"')

    def per_engine(snap: EngineSnapshot, **extra: str) -> str:
        return _labels([("engine", str(snap.engine)), ("model_name", quoted), *extra.items()])

    out = _Writer()
    out.family(
        "vllm:num_requests_running",
        "gauge",
        "Number of requests in model execution batches.",
        [(per_engine(s), s.running) for s in snaps],
    )
    out.family(
        "vllm:num_requests_waiting",
        "gauge",
        "Number of requests waiting to be processed.",
        [(per_engine(s), s.waiting) for s in snaps],
    )
    out.family(
        "vllm:num_requests_waiting_by_reason",
        "gauge",
        "Number of waiting requests by reason. Reason labels: 'capacity' = waiting for scheduling capacity; "
        "'deferred' = deferred by transient constraints (LoRA budget, KV transfer, blocked status). "
        "Sum of all reasons equals vllm:num_requests_waiting.",
        [
            (per_engine(s, reason=r), s.waiting if r == "capacity" else 0)
            for s in snaps
            for r in ("capacity", "deferred")
        ],
    )
    out.family(
        "vllm:kv_cache_usage_perc",
        "gauge",
        "KV-cache usage. 1 means 100 percent usage.",
        [(per_engine(s), s.kv_cache_usage) for s in snaps],
    )
    out.counter(
        "vllm:num_preemptions",
        "Cumulative number of preemption from the engine.",
        [(per_engine(s), s.preemptions) for s in snaps],
        created,
    )
    out.counter(
        "vllm:prompt_tokens",
        "Number of prefill tokens processed.",
        [(per_engine(s), s.prompt_tokens) for s in snaps],
        created,
    )
    out.counter(
        "vllm:generation_tokens",
        "Number of generation tokens processed.",
        [(per_engine(s), s.generation_tokens) for s in snaps],
        created,
    )
    out.counter(
        "vllm:request_success",
        "Count of successfully processed requests.",
        [(per_engine(s, finished_reason=reason), n) for s in snaps for reason, n in s.success],
        created,
    )
    model_only = _labels([("model_name", quoted)])
    rejected = sum(s.rejections for s in snaps)
    out.counter(
        "vllm:admission_rejections",
        "Number of admission attempts rejected by a queue limit, by reason.",
        [
            (f'{model_only},reason="{reason}"', rejected if reason == "max_num_queued_reqs" else 0)
            for reason in _QUEUE_LIMIT_REASONS
        ],
        created,
    )
    out.lines.append("")
    return "\n".join(out.lines)


class MetricsHistory:
    """Recent engine snapshots by time, to answer "what did the engines look like at ``t``?"."""

    def __init__(self, horizon: float) -> None:
        self._horizon = horizon
        self._entries: deque[tuple[float, tuple[EngineSnapshot, ...]]] = deque()

    def record(self, t: float, snapshots: tuple[EngineSnapshot, ...]) -> None:
        self._entries.append((t, snapshots))
        # Keep one entry at or before the horizon so ``at(now - horizon)`` always has an answer.
        while len(self._entries) > 1 and self._entries[1][0] <= t - self._horizon:
            self._entries.popleft()

    def at(self, t: float) -> tuple[EngineSnapshot, ...] | None:
        """The latest snapshots recorded at or before ``t`` (the oldest kept if ``t`` is older)."""
        if not self._entries:
            return None
        found = self._entries[0][1]
        for when, snapshots in self._entries:
            if when > t:
                break
            found = snapshots
        return found

    def clear(self) -> None:
        self._entries.clear()
