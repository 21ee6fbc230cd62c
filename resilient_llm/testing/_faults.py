"""Which fault hits which attempt, and how long each answer is: seeded, in arrival order.

Each attempt takes the same four draws from the seeded generator whether or not a script entry
or the request itself decides its fault, so attempt *n* gets the same length and text under a
given seed however the faults are assigned. Scrapes of ``/metrics`` draw from their own generator,
so scraping more or less often does not shift the faults of requests.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

from resilient_llm.testing._config import (
    FAULT_KINDS,
    NO_FAULT,
    REQUEST_FAULTS,
    SCRAPE_FAULTS,
    LogNormalLength,
    SimulatorConfig,
)

__all__ = ["AttemptPlan", "FaultPlanner", "answer_length", "pick_fault"]

_STANDARD_NORMAL = NormalDist()


@dataclass(frozen=True, slots=True)
class AttemptPlan:
    """What the simulator decided for one attempt, before looking at the request's limits."""

    index: int
    fault: str | None
    output_tokens: int
    text_offset: int
    id_hex: str


def pick_fault(probabilities: Mapping[str, float], u: float, kinds: frozenset[str]) -> str | None:
    """The fault whose slice of [0, 1) holds ``u``, slices laid out in ``FAULT_KINDS`` order."""
    edge = 0.0
    for kind in FAULT_KINDS:
        if kind in kinds and kind in probabilities:
            edge += probabilities[kind]
            if u < edge:
                return kind
    return None


def answer_length(spec: int | LogNormalLength, u: float) -> int:
    """The answer length for uniform draw ``u``: fixed, or the ``u`` quantile of a log-normal."""
    if isinstance(spec, int):
        return spec
    z = _STANDARD_NORMAL.inv_cdf(min(max(u, 1e-12), 1 - 1e-12))
    return max(1, min(spec.maximum, round(spec.median * math.exp(spec.sigma * z))))


class FaultPlanner:
    """Hands out :class:`AttemptPlan` s to attempts and faults to scrapes, deterministically."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._config = config
        self._rng = random.Random(config.seed)
        self._scrape_rng = random.Random(f"{config.seed}/metrics")
        self._attempts = 0

    @property
    def attempts(self) -> int:
        return self._attempts

    def next_attempt(self, requested: str | None = None) -> AttemptPlan:
        """Plan the next attempt; ``requested`` is the request's own ``simulator.fault``."""
        index = self._attempts
        self._attempts += 1
        u_fault, u_length = self._rng.random(), self._rng.random()
        offset, id_bits = self._rng.randrange(1 << 16), self._rng.getrandbits(64)
        script = self._config.fault_script
        if requested is not None:
            fault: str | None = requested
        elif index < len(script):
            fault = script[index]
        else:
            fault = pick_fault(self._config.faults, u_fault, REQUEST_FAULTS)
        if fault in NO_FAULT:
            fault = None
        return AttemptPlan(
            index=index,
            fault=fault,
            output_tokens=answer_length(self._config.output_tokens, u_length),
            text_offset=offset,
            id_hex=f"{id_bits:016x}",
        )

    def next_scrape(self) -> str | None:
        return pick_fault(self._config.faults, self._scrape_rng.random(), SCRAPE_FAULTS)
