"""What the server says about its own load, as one immutable snapshot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerLoad:
    """One scrape of the server's ``/metrics``, summed over engines.

    ``scraped_at`` is on the client's clock (``anyio.current_time()`` by default) when the scrape
    completed. ``kv_cache_usage`` is 0..1, ``None`` when the server does not export it; likewise
    ``preemptions``, the server's running total of requests it preempted back to its queue.
    """

    running: int
    waiting: int
    kv_cache_usage: float | None
    engines: int
    scraped_at: float
    preemptions: int | None = None

    @property
    def active(self) -> int:
        """Requests the server knows about: running plus waiting."""
        return self.running + self.waiting
