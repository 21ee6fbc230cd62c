"""resilient_llm: a drop-in ``AsyncOpenAI`` for self-hosted LLM servers that never hangs.

Change one import — ``from resilient_llm import AsyncOpenAI`` — and every call gets a deadline, stall
detection, jittered retries under a budget, a fair limiter with a slow-start ramp, and a circuit breaker
keyed on the server's queue depth. The client is an ``openai.AsyncOpenAI``; results are openai's own
types and errors openai's own exception classes (re-exported here, with the library's own beneath them).
"""

from typing import TYPE_CHECKING, Any

from ._client import AsyncOpenAI
from ._config import (
    DEFAULT_DEADLINE,
    DEFAULT_HEDGE_SLOWDOWN,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RAMP_UP,
    DEFAULT_STALL_TIMEOUT,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    NotGiven,
    RateLimit,
    RetryBudgetConfig,
)
from ._errors_io import (
    BodyTooLarge,
    CertificateVerificationError,
    EventTooLarge,
    MalformedResponse,
    RedirectError,
    ResponseTooLarge,
    UnsupportedEncoding,
)
from ._events import BreakerTransition, Event, EventHook, MetricsAvailability, OrphansAborted, RetryScheduled
from ._exceptions import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CircuitOpenError,
    ConfigError,
    ConflictError,
    DeadlineExceeded,
    InternalServerError,
    LengthFinishReasonError,
    NotFoundError,
    OpenAIError,
    OrphanedRequestError,
    PermissionDeniedError,
    RateLimitError,
    ServerUnreachable,
    StallError,
    StreamError,
    UnprocessableEntityError,
)
from ._limits import Limits
from ._policies._backoff import Backoff
from ._policies._breaker import BreakerConfig
from ._stats import ReplicaStats, Stats
from ._version import __version__

if TYPE_CHECKING:
    from ._coord._config import CoordinationConfig

__all__ = [
    "DEFAULT_DEADLINE",
    "DEFAULT_HEDGE_SLOWDOWN",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RAMP_UP",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncOpenAI",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "BodyTooLarge",
    "BreakerConfig",
    "BreakerTransition",
    "CertificateVerificationError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "CoordinationConfig",
    "DeadlineExceeded",
    "Event",
    "EventHook",
    "EventTooLarge",
    "InternalServerError",
    "LengthFinishReasonError",
    "Limits",
    "MalformedResponse",
    "MetricsAvailability",
    "NotFoundError",
    "NotGiven",
    "OpenAIError",
    "OrphanedRequestError",
    "OrphansAborted",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RedirectError",
    "ReplicaStats",
    "ResponseTooLarge",
    "RetryBudgetConfig",
    "RetryScheduled",
    "ServerUnreachable",
    "StallError",
    "Stats",
    "StreamError",
    "UnprocessableEntityError",
    "UnsupportedEncoding",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # Coordination (Redis) is imported only by those who use it: ``import resilient_llm`` stays as light.
    if name == "CoordinationConfig":
        from ._coord._config import CoordinationConfig

        return CoordinationConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
