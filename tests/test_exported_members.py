"""The public surface, pinned: a change here is a change users see."""

from __future__ import annotations

import openai

import resilient_llm

EXPECTED = {
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncOpenAI",
    "AsyncStream",
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "BreakerConfig",
    "BreakerTransition",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_RAMP_UP",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DeadlineExceeded",
    "Event",
    "EventHook",
    "InternalServerError",
    "LengthFinishReasonError",
    "MetricsAvailability",
    "NOT_GIVEN",
    "NotFoundError",
    "NotGiven",
    "OpenAIError",
    "OrphanedRequestError",
    "OrphansAborted",
    "PermissionDeniedError",
    "RateLimit",
    "RateLimitError",
    "RetryBudgetConfig",
    "RetryScheduled",
    "ServerUnreachable",
    "StallError",
    "Stats",
    "StreamError",
    "UnprocessableEntityError",
    "__version__",
    "types",
}


def test_all_is_pinned_and_sorted() -> None:
    assert set(resilient_llm.__all__) == EXPECTED
    assert resilient_llm.__all__ == sorted(resilient_llm.__all__, key=lambda n: (not n.isupper(), n))
    for name in resilient_llm.__all__:
        assert hasattr(resilient_llm, name)


def test_every_openai_exception_name_exists_with_the_same_shape() -> None:
    for name in [
        "APIError",
        "APIStatusError",
        "APIConnectionError",
        "APITimeoutError",
        "BadRequestError",
        "AuthenticationError",
        "PermissionDeniedError",
        "NotFoundError",
        "ConflictError",
        "UnprocessableEntityError",
        "RateLimitError",
        "InternalServerError",
        "APIResponseValidationError",
        "LengthFinishReasonError",
        "OpenAIError",
    ]:
        ours, theirs = getattr(resilient_llm, name), getattr(openai, name)
        our_bases = {b.__name__ for b in ours.__mro__}
        their_bases = {b.__name__ for b in theirs.__mro__} - {"object", "BaseException", "Exception"}
        assert their_bases <= our_bases, name


def test_own_errors_subclass_what_callers_already_catch() -> None:
    assert issubclass(resilient_llm.DeadlineExceeded, resilient_llm.APITimeoutError)
    assert issubclass(resilient_llm.StallError, resilient_llm.APITimeoutError)
    assert issubclass(resilient_llm.OrphanedRequestError, resilient_llm.APITimeoutError)
    assert issubclass(resilient_llm.CircuitOpenError, resilient_llm.APIConnectionError)
    assert issubclass(resilient_llm.ConfigError, ValueError)
