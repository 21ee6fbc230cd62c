"""Pacing: a reader that may run long without waiting gives the event loop a turn every few ms.

A read that finds its bytes already buffered (a fast server, a gzip bomb expanding in steps, many
events in one read) returns without suspending, so a loop over such reads would hold the event loop
for as long as the input lasts: other calls would look stalled, and cancel scopes (the deadline, the
silence limit) could not act. Each read calls :meth:`Pacer.tick` first; at most every
:data:`SLICE` seconds it awaits a checkpoint, where pending cancellations are delivered.
"""

from __future__ import annotations

from time import perf_counter
from typing import Final

from anyio.lowlevel import checkpoint

__all__ = ["SLICE", "Pacer"]

#: The longest run of work between two turns of the event loop, in seconds.
SLICE: Final = 0.002


class Pacer:
    __slots__ = ("_last",)

    def __init__(self) -> None:
        self._last = perf_counter()

    def waited(self, since: float) -> None:
        """A read begun at ``since`` (``perf_counter()``) just returned: if it took a slice or more, it
        waited for input and the loop had its turns meanwhile, so the slice starts again now (a
        stream read token by token would otherwise add a turn of the loop to every read)."""
        now = perf_counter()
        if now - since >= SLICE:
            self._last = now

    def due(self) -> bool:
        """Whether the next :meth:`tick` would await a checkpoint."""
        return perf_counter() - self._last >= SLICE

    async def tick(self) -> None:
        """Await a checkpoint if :data:`SLICE` seconds passed since the last one."""
        if perf_counter() - self._last >= SLICE:
            await checkpoint()
            self._last = perf_counter()
