"""Simulator settings: one frozen, keyword-only, validated dataclass, and the fault vocabulary.

Every duration is in *simulated* seconds and is multiplied by ``time_scale`` before the server
waits for it (``time_scale=0.01`` runs a 400 s generation in 4 s). The exception is ``tick``, the
shortest real interval between two engine steps, which bounds CPU use whatever the scale.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal, get_args

from resilient_llm._exceptions import ConfigError
from resilient_llm._policies._validate import check_int, check_number, reject

if TYPE_CHECKING:
    from resilient_llm.testing._stats import QueueSample

__all__ = [
    "FAULT_KINDS",
    "REQUEST_FAULTS",
    "SCRAPE_FAULTS",
    "FaultKind",
    "LogNormalLength",
    "MetricsLagMode",
    "ReasoningField",
    "SimulatorConfig",
    "parse_faults",
]

FaultKind = Literal[
    "lost",
    "ghost",
    "drop",
    "503",
    "429",
    "500",
    "truncated",
    "error_chunk",
    "slow",
    "restart",
    "metrics_missing",
    "metrics_frozen",
]
FAULT_KINDS: tuple[FaultKind, ...] = get_args(FaultKind)
#: Faults drawn once per completion / embedding attempt (in arrival order).
REQUEST_FAULTS: frozenset[str] = frozenset(FAULT_KINDS) - {"metrics_missing", "metrics_frozen"}
#: Faults drawn once per ``GET /metrics`` scrape.
SCRAPE_FAULTS: frozenset[str] = frozenset({"metrics_missing", "metrics_frozen"})
_OWNER = "SimulatorConfig"
#: Script entries that mean "no fault for this attempt".
NO_FAULT = frozenset({"none", "ok", "-", ""})

ReasoningField = Literal["reasoning_content", "reasoning", "both"]
MetricsLagMode = Literal["snapshot", "arrivals", "steps"]


@dataclass(frozen=True, kw_only=True, slots=True)
class LogNormalLength:
    """A long-tailed answer length: ``median · exp(sigma · z)`` (z standard normal), within [1, maximum]."""

    median: int = 400
    sigma: float = 1.0
    maximum: int = 32768

    def __post_init__(self) -> None:
        owner = "LogNormalLength"
        check_int(owner, "median", self.median, at_least=1)
        check_number(owner, "sigma", self.sigma, at_least=0)
        check_int(owner, "maximum", self.maximum, at_least=self.median)


@dataclass(frozen=True, kw_only=True)
class SimulatorConfig:
    """How the simulated vLLM server behaves. Durations are simulated seconds (see ``time_scale``).

    Engine: ``capacity`` sequences run at once per engine, the rest wait FIFO. A sequence first
    spends ``prefill_time_per_token`` per prompt token, then emits one token every
    ``token_time · (1 + batch_slowdown · (running - 1))``. ``kv_cache_tokens`` is the KV budget per
    engine (prompt + generated tokens of running sequences); a request is admitted only when its
    prompt fits, and the newest running sequence is preempted back to the queue when the budget
    overflows. ``engines`` runs that many independent engines (data parallel, each with its own
    ``capacity``); a request goes to the one with the fewest running + waiting.

    Answers: ``output_tokens`` (a number or a :class:`LogNormalLength`) unless the request's
    ``simulator.output_tokens`` says otherwise; ``reasoning_ratio`` of them come first as reasoning
    text, reported under ``reasoning_field``.

    ``/metrics`` can trail the engine by ``metrics_lag``: in ``"snapshot"`` mode it reports the whole
    state as it was that long ago; in ``"arrivals"`` mode, as a real vLLM 0.32 does under a burst,
    requests appear in the gauges only ``metrics_lag`` after they arrive but leave them at once; in
    ``"steps"`` mode the arrival lag grows with the burst, as vLLM's engine steps make it: a request is
    counted from the end of the first metrics step that sees it, a step lasting ``metrics_lag`` per new
    request it sees (a burst of 64 on an idle engine: the first after one ``metrics_lag``, the other 63
    after 63 more); its first token comes no sooner (in vLLM both come out of that step), and it leaves
    the gauges at once.
    ``max_queued`` mimics ``--max-num-queued-reqs``: past that many requests in the engine (running
    plus waiting, as observed on vLLM 0.32) new ones are refused with 503.

    Faults: ``faults`` maps a fault kind to its probability per attempt (request kinds) or per
    scrape (``metrics_*``); ``fault_script`` assigns faults to the first attempts in arrival order
    (``None`` or ``"none"`` for a clean attempt). A request's own ``simulator.fault`` wins over both.

    ``log_requests`` logs one line per HTTP request to the ``resilient_llm.testing.requests`` logger.
    """

    model: str = "openai/gpt-oss-20b"
    host: str = "127.0.0.1"
    port: int = 0
    capacity: int = 16
    engines: int = 1
    token_time: float = 0.02
    batch_slowdown: float = 0.01
    prefill_time_per_token: float = 0.0001
    time_scale: float = 1.0
    tick: float = 0.005
    seed: int = 0
    output_tokens: int | LogNormalLength = 256
    reasoning_ratio: float = 0.25
    reasoning_field: ReasoningField = "both"
    max_model_len: int = 131072
    kv_cache_tokens: int = 262144
    max_queued: int | None = None
    faults: Mapping[str, float] = field(default_factory=dict)
    fault_script: Sequence[str | None] = ()
    retry_after: float = 1.0
    slow_factor: float = 10.0
    slow_max_gap: float = 1.0
    restart_down_for: float = 5.0
    metrics_lag: float = 0.0
    metrics_lag_mode: MetricsLagMode = "snapshot"
    sample_interval: float = 0.5
    embedding_dim: int = 64
    server_version: str = "0.32.0"
    on_sample: Callable[[QueueSample], None] | None = field(default=None, compare=False)
    log_requests: bool = False

    def __post_init__(self) -> None:
        owner = _OWNER
        if not isinstance(self.model, str) or not self.model:
            reject(owner, "model", self.model, "a non-empty string")
        check_int(owner, "port", self.port, at_least=0)
        if self.port > 65535:
            reject(owner, "port", self.port, "a port number in 0..65535")
        for name in ("capacity", "engines", "max_model_len", "kv_cache_tokens", "embedding_dim"):
            check_int(owner, name, getattr(self, name), at_least=1)
        for name in ("token_time", "batch_slowdown", "prefill_time_per_token", "retry_after", "metrics_lag"):
            check_number(owner, name, getattr(self, name), at_least=0)
        for name in ("time_scale", "tick", "slow_max_gap", "restart_down_for", "sample_interval"):
            check_number(owner, name, getattr(self, name), above=0)
        check_number(owner, "slow_factor", self.slow_factor, at_least=1)
        ratio = self.reasoning_ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
            reject(owner, "reasoning_ratio", ratio, "a number >= 0 and < 1")
        if self.reasoning_field not in get_args(ReasoningField):
            reject(owner, "reasoning_field", self.reasoning_field, _one_of(get_args(ReasoningField)))
        if self.metrics_lag_mode not in get_args(MetricsLagMode):
            reject(owner, "metrics_lag_mode", self.metrics_lag_mode, _one_of(get_args(MetricsLagMode)))
        if not isinstance(self.output_tokens, LogNormalLength):
            if not isinstance(self.output_tokens, int) or isinstance(self.output_tokens, bool):
                reject(owner, "output_tokens", self.output_tokens, "an integer >= 1 or a LogNormalLength")
            check_int(owner, "output_tokens", self.output_tokens, at_least=1)
        if self.max_queued is not None:
            check_int(owner, "max_queued", self.max_queued, at_least=1)
        object.__setattr__(self, "faults", MappingProxyType(_checked_faults(self.faults)))
        script = tuple(self.fault_script)
        for index, entry in enumerate(script):
            if not (entry is None or entry in NO_FAULT or entry in REQUEST_FAULTS):
                reject(
                    owner,
                    f"fault_script[{index}]",
                    entry,
                    "None, 'none' or " + _one_of(sorted(REQUEST_FAULTS)),
                )
        object.__setattr__(self, "fault_script", script)

    def scaled(self, simulated_seconds: float) -> float:
        """Real seconds for a simulated duration."""
        return simulated_seconds * self.time_scale


def parse_faults(text: str) -> dict[str, float]:
    """Parse ``"ghost=0.02,drop=0.01"`` into a validated mapping; errors name the bad part."""
    faults: dict[str, float] = {}
    for raw in text.split(","):
        part = raw.strip()
        if not part:
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep:
            raise ConfigError(f"faults: {part!r} is not NAME=PROBABILITY (e.g. ghost=0.02)")
        if name not in FAULT_KINDS:
            raise ConfigError(f"faults: unknown fault {name!r} in {part!r}; known: {', '.join(FAULT_KINDS)}")
        try:
            probability = float(value)
        except ValueError:
            raise ConfigError(f"faults: {value.strip()!r} in {part!r} is not a number") from None
        if name in faults:
            raise ConfigError(f"faults: {name!r} given twice")
        faults[name] = probability
    return _checked_faults(faults)


def _checked_faults(faults: Mapping[str, float]) -> dict[str, float]:
    checked: dict[str, float] = {}
    for name, probability in faults.items():
        if name not in FAULT_KINDS:
            reject(_OWNER, "faults key", name, _one_of(FAULT_KINDS))
        checked[name] = check_number(_OWNER, f"faults[{name!r}]", probability, at_least=0, at_most=1)
    for group, label in ((REQUEST_FAULTS, "per-request"), (SCRAPE_FAULTS, "per-scrape")):
        total = sum(p for name, p in checked.items() if name in group)
        if total > 1 + 1e-9:
            reject(_OWNER, "faults", dict(faults), f"{label} probabilities that sum to <= 1 (here {total:g})")
    return checked


def _one_of(choices: Sequence[str]) -> str:
    return "one of " + ", ".join(map(repr, choices))
