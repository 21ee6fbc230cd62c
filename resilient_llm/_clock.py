"""The one place the library reads the time.

Inside an event loop it is the loop's clock (``anyio.current_time()``), the same clock cancel scopes
use, so trio's ``MockClock`` drives everything in tests. Outside a loop (``client.stats()`` after
``asyncio.run()`` returned, say) it falls back to ``time.monotonic()``, which is what asyncio's loop
clock is.
"""

from __future__ import annotations

import time

import anyio


def now() -> float:
    try:
        return anyio.current_time()
    except RuntimeError:  # anyio.NoEventLoopError (older anyio: sniffio.AsyncLibraryNotFoundError)
        return time.monotonic()
