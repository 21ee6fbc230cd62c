"""A global retry budget: the fleet's retries stay within a fraction of the fleet's first attempts.

The semantics of :class:`~resilient_llm._policies._budget.RetryBudget`, kept in Redis: over a sliding
window of ``ttl`` seconds (in ten buckets, on Redis's clock), the fleet may retry ``ratio`` times per
first attempt it made, plus a reserve of ``min_per_second * ttl`` retries. So when a server dies, the
whole fleet adds about ``ratio`` extra load, not each process.

``record_request`` stays synchronous and costs nothing: first attempts are counted locally and sent
with the next withdrawal or by the coordinator's periodic :meth:`GlobalRetryBudget.flush`. A
withdrawal is one atomic script call. While Redis is unreachable a local budget takes over, with the
same ratio and a fair share of the reserve (``min_per_second / fleet``), started afresh per outage.
"""

from __future__ import annotations

from collections.abc import Callable

from .._clock import now
from .._policies._budget import _BUCKETS, RetryBudget
from ._config import CoordinationConfig
from ._errors import CoordinationUnavailable
from ._fleet import LUA_EXTEND, LUA_NOW_MS, Fleet
from ._link import LuaScript, RedisLink

__all__ = ["RETRY_BUDGET", "GlobalRetryBudget"]

# KEYS[1]: hash 'r:<bucket>' first attempts, 'w:<bucket>' retries. ARGV: ratio, reserve, bucket width ms,
# buckets, first attempts to add, '1' to withdraw one retry. Returns {1 if withdrawn else 0, balance}.
RETRY_BUDGET = LuaScript(
    "retry_budget",
    LUA_NOW_MS
    + LUA_EXTEND
    + """
local width, buckets = tonumber(ARGV[3]), tonumber(ARGV[4])
local index = math.floor(now / width)
local add = tonumber(ARGV[5])
if add > 0 then redis.call('HINCRBY', KEYS[1], 'r:' .. index, add) end
local fields = redis.call('HGETALL', KEYS[1])
local requests, withdrawals = 0, 0
for i = 1, #fields, 2 do
  local f = fields[i]
  local b = tonumber(string.sub(f, 3))
  if b == nil or b <= index - buckets then
    redis.call('HDEL', KEYS[1], f)
  elseif string.sub(f, 1, 1) == 'r' then
    requests = requests + tonumber(fields[i + 1])
  else
    withdrawals = withdrawals + tonumber(fields[i + 1])
  end
end
local balance = tonumber(ARGV[1]) * requests + tonumber(ARGV[2]) - withdrawals
local ok = 0
if ARGV[6] == '1' and balance >= 1 - 1e-9 then
  redis.call('HINCRBY', KEYS[1], 'w:' .. index, 1)
  ok = 1
  balance = balance - 1
end
extend(KEYS[1], width * buckets * 2)
return {ok, tostring(balance)}
""",
)


class GlobalRetryBudget:
    """Retries allowed to the fleet in the last ``ttl`` seconds: ``ratio`` × first attempts + a reserve."""

    def __init__(
        self,
        *,
        name: str,
        ratio: float,
        min_per_second: float,
        ttl: float,
        link: RedisLink,
        fleet: Fleet,
        config: CoordinationConfig,
        clock: Callable[[], float] = now,
    ) -> None:
        RetryBudget(ratio=ratio, min_per_second=min_per_second, ttl=ttl, clock=clock)  # validates
        self._name = name
        self._ratio, self._min_per_second, self._ttl = ratio, min_per_second, ttl
        self._link, self._fleet, self._clock = link, fleet, clock
        self._key = config.key("retry_budget", name)
        self._pending = 0
        self._local: RetryBudget | None = None
        self._last_balance: float | None = None

    @property
    def ratio(self) -> float:
        return self._ratio

    @property
    def reserve(self) -> float:
        """Retries allowed per window to the whole fleet with no traffic: ``min_per_second * ttl``."""
        return self._min_per_second * self._ttl

    @property
    def ttl(self) -> float:
        return self._ttl

    def record_request(self) -> None:
        """Count one first attempt (sent to Redis with the next withdrawal or flush)."""
        if self._link.up:
            self._pending += 1
        else:
            self._fallback().record_request()

    async def try_withdraw(self, *, deadline: float | None = None) -> bool:
        """Ask to send one retry: True (one retry spent, fleet-wide) if the budget allows it."""
        balance = await self._exchange(withdraw=True, deadline=deadline)
        if balance is None:
            return self._fallback().try_withdraw()
        return balance[0]

    async def available(self, *, deadline: float | None = None) -> float:
        """How many retries the fleet could withdraw now (fractional; never negative)."""
        balance = await self._exchange(withdraw=False, deadline=deadline)
        if balance is None:
            return self._fallback().available()
        return max(0.0, balance[1])

    def last_available(self) -> float:
        """What :meth:`available` said at the last exchange with Redis, without asking again (for stats):
        the local budget's while Redis is unreachable, the whole reserve before any exchange."""
        if not self._link.up:
            return self._fallback().available()
        return self.reserve if self._last_balance is None else max(0.0, self._last_balance)

    async def flush(self) -> None:
        """Send the first attempts counted since the last exchange (the coordinator calls this)."""
        if self._pending:
            await self._exchange(withdraw=False, deadline=None)

    async def _exchange(self, *, withdraw: bool, deadline: float | None) -> tuple[bool, float] | None:
        if not self._link.up:
            return None
        add, self._pending = self._pending, 0
        width_ms = max(1, round(self._ttl / _BUCKETS * 1000))
        try:
            ok, balance = await self._link.eval(
                RETRY_BUDGET,
                [self._key],
                [self._ratio, self.reserve, width_ms, _BUCKETS, add, 1 if withdraw else 0],
                deadline=deadline,
            )
        except CoordinationUnavailable:
            return None  # ``add`` first attempts are lost to the shared count: a smaller budget, never a larger one
        self._local = None  # Redis answers: the next outage starts a fresh local budget
        self._last_balance = float(balance)
        return bool(int(ok)), float(balance)

    def _fallback(self) -> RetryBudget:
        if self._local is None:
            fleet = self._fleet.size or 1
            self._local = RetryBudget(
                ratio=self._ratio,
                min_per_second=self._min_per_second / fleet,
                ttl=self._ttl,
                clock=self._clock,
            )
        return self._local

    def __repr__(self) -> str:
        return (
            f"GlobalRetryBudget(name={self._name!r}, ratio={self._ratio:g}, reserve={self.reserve:g}, "
            f"ttl={self._ttl:g}, last_balance={self._last_balance!r})"
        )
