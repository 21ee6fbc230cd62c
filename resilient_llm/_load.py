"""What the server says about its own load, as one immutable snapshot."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ServerLoad:
    """One scrape of the server's ``/metrics``, summed over engines.

    ``scraped_at`` is on the client's clock (``anyio.current_time()`` by default) when the scrape
    completed; ``requested_at`` when it was sent (``None``: not known). The server took its counts
    somewhere in between: a request sent after ``requested_at`` may be missing from them, and one that
    ended before ``scraped_at`` may already have left them. ``kv_cache_usage`` is 0..1, ``None`` when
    the server does not export it; likewise ``preemptions``, the server's running total of requests it
    preempted back to its queue.
    """

    running: int
    waiting: int
    kv_cache_usage: float | None
    engines: int
    scraped_at: float
    preemptions: int | None = None
    requested_at: float | None = None

    @property
    def active(self) -> int:
        """Requests the server knows about: running plus waiting."""
        return self.running + self.waiting

    @property
    def earliest_at(self) -> float:
        """The earliest time its counts may describe: ``requested_at``, else ``scraped_at``. Only
        requests sent before it are sure to have reached the server before the counts were taken."""
        return self.scraped_at if self.requested_at is None else self.requested_at
