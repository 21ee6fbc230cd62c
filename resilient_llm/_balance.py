"""Choosing a replica: the power of two choices on a load score from each replica's ``/metrics``.

The limiter asks for a choice only among lanes that have room (the breaker, ramp and caps already
took out a replica that failed, drains or is gone). Two of them are drawn at random and the one with
the lower score gets the call; drawing two rather than taking the least loaded of all keeps many
clients that read the same metrics from all rushing to the same replica (Mitzenmacher's "power of
two choices"), and still puts most calls where the load is lowest.

The score is the share of a replica's capacity in use, as well as it is known:

* with a fresh load from its ``/metrics``: ``(running + waiting + fresh) / capacity + kv_cache_usage``,
  where ``fresh`` is the calls this client sent there since that scrape (load the scrape cannot show
  yet) and ``capacity`` the batch size the server showed (the largest ``running`` seen while requests
  waited, else the largest ``running`` seen, else the lane's own limit);
* without one: this client's calls in flight there over the lane's limit.

Which replicas a call may use at all (its model, a retry's last replica) the limiter decides first.
Pure functions of their inputs, with the randomness injected, so the choice is tested with tables.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

from ._limiter import Lane

__all__ = ["PowerOfTwo", "lane_score", "load_score"]


def load_score(
    *, running: int, waiting: int, fresh: int, capacity: int, kv_cache_usage: float | None
) -> float:
    """The share of a server's capacity in use: requests it runs and queues plus those on their way,
    over its batch capacity, plus its KV cache usage (0..1; ``None``: not reported)."""
    return (running + waiting + fresh) / max(1, capacity) + (kv_cache_usage or 0.0)


def lane_score(lane: Lane) -> float:
    """:func:`load_score` from the lane's server's fresh load, else its own share in flight."""
    breaker = lane.breaker
    load = breaker.load if breaker is not None else None
    if load is None:
        return lane.in_flight / max(1, lane.ceiling())
    assert breaker is not None
    capacity = breaker.saturated_capacity or breaker.capacity or lane.ceiling()
    fresh = min(lane.fresh, lane.in_flight)  # sent since the scrape and still there
    return load_score(
        running=load.running,
        waiting=load.waiting,
        fresh=fresh,
        capacity=capacity,
        kv_cache_usage=load.kv_cache_usage,
    )


class PowerOfTwo:
    """The limiter's ``choose``: the lower-scored of two lanes drawn at random from ``candidates``."""

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng if rng is not None else random.Random()

    def __call__(self, candidates: Sequence[Lane]) -> Lane:
        if len(candidates) == 1:
            return candidates[0]
        a, b = self._rng.sample(candidates, 2)  # in random order: a tie goes either way
        return b if lane_score(b) < lane_score(a) else a
