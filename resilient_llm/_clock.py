"""The one place the library reads the time.

Inside an event loop it is the loop's clock — the clock anyio's cancel scopes use — so trio's
``MockClock`` drives everything in tests. On asyncio that is ``loop.time()``, read directly: this runs
several times per call on the hot path, and going through ``anyio.current_time()`` (backend detection
on every read) cost about a tenth of the library's time per call. Outside a loop (``client.stats()``
after ``asyncio.run()`` returned, say) it falls back to ``time.monotonic()``, which is what asyncio's
loop clock is.
"""

from __future__ import annotations

import asyncio
import time

import anyio

_running_loop = asyncio._get_running_loop  # None outside an asyncio loop; a C function, no exception


def now() -> float:
    loop = _running_loop()
    if loop is not None:
        return loop.time()
    try:
        return anyio.current_time()  # trio (or another anyio backend)
    except RuntimeError:  # anyio.NoEventLoopError (older anyio: sniffio.AsyncLibraryNotFoundError)
        return time.monotonic()
