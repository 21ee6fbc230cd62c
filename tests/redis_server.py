"""A real redis-server for the coordination tests, started by pytest-redis on a free loopback port.

Two session-wide servers: ``redis_server`` for tests that only use Redis, and ``flaky_redis`` for the
tests that stop, freeze (SIGSTOP) and restart it. Tests skip, saying why, only when no ``redis-server``
executable exists on this machine (``.ci/run`` installs Debian's package where it is missing).
"""

from __future__ import annotations

import os
import shutil
import signal
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

_CANDIDATES = ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server")
REDIS_SERVER = shutil.which("redis-server") or next((p for p in _CANDIDATES if os.access(p, os.X_OK)), None)
SKIP_REASON = "no redis-server executable on this machine (apt-get install redis-server; .ci/run does)"


def _factory(name: str) -> Any:
    if REDIS_SERVER is None:

        @pytest.fixture(scope="session", name=name)
        def missing() -> None:
            pytest.skip(SKIP_REASON)

        return missing
    from pytest_redis import factories

    return factories.redis_proc(executable=REDIS_SERVER, host="127.0.0.1", port=None, save="")


redis_server = _factory("redis_server")
flaky_redis = _factory("flaky_redis")


def url_of(proc: Any, *, password: str | None = None) -> str:
    auth = f":{password}@" if password else ""
    return f"redis://{auth}{proc.host}:{proc.port}/0"


def unique_prefix() -> str:
    return "t" + uuid.uuid4().hex[:12]


@contextmanager
def frozen(proc: Any) -> Iterator[None]:
    """The server stops answering (SIGSTOP) but keeps its connections: the slow-Redis case."""
    os.kill(proc.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.process.pid, signal.SIGCONT)


@contextmanager
def inspector(proc: Any) -> Iterator[Any]:
    """A plain synchronous client (redis-py, which pytest-redis brings) to look at the keys."""
    import redis

    with redis.Redis(host=proc.host, port=proc.port, db=0, decode_responses=True) as client:
        yield client
