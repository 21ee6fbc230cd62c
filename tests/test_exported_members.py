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
    "AuthenticationError",
    "Backoff",
    "BadRequestError",
    "BodyTooLarge",
    "BreakerConfig",
    "BreakerTransition",
    "CertificateVerificationError",
    "CircuitOpenError",
    "ConfigError",
    "CoordinationConfig",
    "ConflictError",
    "DEFAULT_DEADLINE",
    "DEFAULT_MAX_CONCURRENCY",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_HEDGE_SLOWDOWN",
    "DEFAULT_RAMP_UP",
    "DEFAULT_STALL_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "DeadlineExceeded",
    "Event",
    "EventHook",
    "EventTooLarge",
    "InternalServerError",
    "LengthFinishReasonError",
    "Limits",
    "MalformedResponse",
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
    "RedirectError",
    "ResponseTooLarge",
    "RetryBudgetConfig",
    "RetryScheduled",
    "ServerUnreachable",
    "StallError",
    "ReplicaStats",
    "Stats",
    "StreamError",
    "UnprocessableEntityError",
    "UnsupportedEncoding",
    "__version__",
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
        # Not look-alikes: openai's own classes, so `except openai.X` and `except resilient_llm.X` are one.
        assert getattr(resilient_llm, name) is getattr(openai, name), name


def test_own_errors_subclass_what_callers_already_catch() -> None:
    assert issubclass(resilient_llm.DeadlineExceeded, openai.APITimeoutError)
    assert issubclass(resilient_llm.StallError, openai.APITimeoutError)
    assert issubclass(resilient_llm.OrphanedRequestError, openai.APITimeoutError)
    assert issubclass(resilient_llm.CircuitOpenError, openai.APIConnectionError)
    assert issubclass(resilient_llm.ServerUnreachable, openai.APIConnectionError)
    assert issubclass(resilient_llm.StreamError, openai.APIError)
    assert issubclass(resilient_llm.ConfigError, openai.OpenAIError)
    assert issubclass(resilient_llm.ConfigError, ValueError)
    assert issubclass(resilient_llm.ResponseTooLarge, openai.APIResponseValidationError)
    assert issubclass(resilient_llm.MalformedResponse, openai.APIConnectionError)
    assert issubclass(resilient_llm.CertificateVerificationError, openai.APIConnectionError)
    assert issubclass(resilient_llm.RedirectError, openai.APIStatusError)


def test_the_client_is_openais_client() -> None:
    client = resilient_llm.AsyncOpenAI(api_key="EMPTY", base_url="http://127.0.0.1:9/v1")
    assert isinstance(client, openai.AsyncOpenAI)
    for copy in (client.copy(), client.with_options(deadline=5)):
        assert type(copy) is resilient_llm.AsyncOpenAI
        assert copy._engine is client._engine
