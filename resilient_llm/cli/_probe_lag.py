"""``resilient-llm probe URL --measure-lag``: the ``/metrics`` lag this library learns from the server.

The orphan rule's grace is learned from how long the server takes to count a request in ``running +
waiting`` and to drop a finished one (``_vllm/_lag.py``). A plain probe sends no request, so it cannot
see that; ``--measure-lag N`` sends a burst of ``N`` short chat calls (``max_tokens`` tokens each, vLLM's
``ignore_eos`` so they last) through :class:`resilient_llm.AsyncOpenAI` with its defaults, and reports
what the client learned: ``stats().metrics_lag``, ``metrics_leave_lag``, ``orphan_grace`` and
``server_capacity``. It puts load on the server, so it is asked for, never done by default.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["LagReport", "measure_lag"]

DEFAULT_CALLS = 8
MAX_TOKENS = 64


@dataclass(frozen=True, slots=True)
class LagReport:
    """What one burst taught the client about one server; ``error`` when the burst failed."""

    url: str
    calls: int
    ok: int
    metrics_lag: float | None
    metrics_leave_lag: float | None
    orphan_grace: float | None
    server_capacity: int | None
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "calls": self.calls,
            "ok": self.ok,
            "metrics_lag": self.metrics_lag,
            "metrics_leave_lag": self.metrics_leave_lag,
            "orphan_grace": self.orphan_grace,
            "server_capacity": self.server_capacity,
            "error": self.error,
        }

    def line(self) -> str:
        def seconds(value: float | None) -> str:
            return "not learned" if value is None else f"{value:.2f} s"

        if self.error is not None:
            return f"{self.url}: lag not measured: {self.error}"
        return (
            f"{self.url}: {self.ok}/{self.calls} calls ok; counted within {seconds(self.metrics_lag)}, "
            f"dropped within {seconds(self.metrics_leave_lag)} of ending; orphan grace "
            f"{seconds(self.orphan_grace)}; batch capacity "
            f"{'not seen' if self.server_capacity is None else self.server_capacity}"
        )


def measure_lag(url: str, model: str, *, calls: int = DEFAULT_CALLS, deadline: float = 120.0) -> LagReport:
    """Send ``calls`` chat calls to ``url`` at once and report what the client learned (blocking)."""
    return asyncio.run(_measure(url, model, calls=calls, deadline=deadline))


async def _measure(url: str, model: str, *, calls: int, deadline: float) -> LagReport:
    from resilient_llm import AsyncOpenAI

    api_key = os.environ.get("OPENAI_API_KEY") or "EMPTY"
    async with AsyncOpenAI(base_url=url, api_key=api_key, deadline=deadline, max_retries=1) as client:

        async def one(i: int) -> None:
            await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": f"Count from {i} upwards."}],
                max_tokens=MAX_TOKENS,
                extra_body={"ignore_eos": True},
            )

        results: Sequence[BaseException | None] = await asyncio.gather(
            *(one(i) for i in range(calls)), return_exceptions=True
        )
        stats = client.stats()
    failures = [r for r in results if isinstance(r, BaseException)]
    error = None
    if len(failures) == calls:
        error = f"{type(failures[0]).__name__}: {failures[0]}"
    return LagReport(
        url=url,
        calls=calls,
        ok=calls - len(failures),
        metrics_lag=stats.metrics_lag,
        metrics_leave_lag=stats.metrics_leave_lag,
        orphan_grace=stats.orphan_grace,
        server_capacity=stats.server_capacity,
        error=error,
    )
