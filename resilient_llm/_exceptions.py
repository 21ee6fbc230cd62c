"""The exception tree: openai-python's own classes, and the library's errors beneath them.

Every error a call raises is an instance of an ``openai`` exception class, so ``except openai.X``
clauses, and libraries that map errors by openai's classes (pydantic-ai's ``FallbackModel``,
langchain, openai-agents), keep working after the import swap. The library's own errors subclass the
openai class a caller would already catch::

    openai.OpenAIError
    ├── ConfigError (also ValueError)                  bad constructor / option value
    └── openai.APIError                                message, request, body, code, param, type
        ├── openai.APIStatusError                      status_code, response, request_id
        │   └── BadRequestError 400, AuthenticationError 401, PermissionDeniedError 403,
        │       NotFoundError 404, ConflictError 409, UnprocessableEntityError 422,
        │       RateLimitError 429, InternalServerError >= 500   (openai's own)
        ├── openai.APIConnectionError                  no usable response
        │   ├── ServerUnreachable                      refused / unreachable: down or restarting
        │   └── openai.APITimeoutError
        │       ├── DeadlineExceeded                   the call's deadline ran out
        │       │   └── CircuitOpenError               held by the breaker; the deadline cannot be met
        │       ├── StallError                         the server went silent for stall_timeout
        │       └── OrphanedRequestError               the server no longer knows the request
        ├── StreamError                                an ``error`` object inside an SSE stream
        └── openai.APIResponseValidationError          the body is not what the endpoint returns

``request`` and ``response`` attributes are of the httpx flavour openai uses (``httpx2`` on openai 3.x),
built without credentials.
"""

from __future__ import annotations

from typing import Any

from openai import (
    APIConnectionError,
    APIError,
    APIResponseValidationError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConflictError,
    InternalServerError,
    LengthFinishReasonError,
    NotFoundError,
    OpenAIError,
    PermissionDeniedError,
    RateLimitError,
    UnprocessableEntityError,
)

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIResponseValidationError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "CircuitOpenError",
    "ConfigError",
    "ConflictError",
    "DeadlineExceeded",
    "InternalServerError",
    "LengthFinishReasonError",
    "NotFoundError",
    "OpenAIError",
    "OrphanedRequestError",
    "PermissionDeniedError",
    "RateLimitError",
    "ServerUnreachable",
    "StallError",
    "StreamError",
    "UnprocessableEntityError",
]


class ConfigError(OpenAIError, ValueError):
    """An invalid setting; the message names the argument and the value (never a secret)."""


class ServerUnreachable(APIConnectionError):
    """No connection could be opened (refused, unreachable): the server is down or restarting.

    With the circuit breaker on, such a failure against a server that answered this client before
    does not use up ``max_retries`` or the retry budget: the call waits, within its deadline, while
    the breaker's half-open probes find out when the server is back (gRPC's "wait for ready").
    """


class _Timeout(APITimeoutError):
    """openai's ``APITimeoutError`` with a message of our own (openai's says only "timed out")."""

    def __init__(self, request: Any, *, message: str) -> None:
        APIConnectionError.__init__(self, message=message, request=request)


class DeadlineExceeded(_Timeout):
    """The call's ``deadline`` ran out: every attempt, backoff sleep and queue wait counted.

    ``attempts`` is how many requests were sent; ``last_error`` the failure of the last one (also
    ``__cause__``), or ``None`` if the time ran out before or during the first.
    """

    def __init__(
        self,
        request: Any,
        *,
        deadline: float,
        attempts: int,
        last_error: BaseException | None = None,
        waiting_for: str | None = None,
    ) -> None:
        where = f" while {waiting_for}" if waiting_for else ""
        msg = f"Deadline of {deadline:g}s exceeded{where} after {attempts} attempt(s)"
        if last_error is not None:
            msg += f"; last error: {type(last_error).__name__}: {last_error}"
        super().__init__(request, message=msg)
        self.deadline = deadline
        self.attempts = attempts
        self.last_error = last_error
        self.waiting_for = waiting_for


class StallError(_Timeout):
    """The server sent nothing for ``silence`` seconds while an answer was expected."""

    def __init__(self, request: Any, *, silence: float, received_events: int) -> None:
        where = "before the first token" if received_events == 0 else f"after {received_events} event(s)"
        super().__init__(request, message=f"No data from the server for {silence:g}s ({where})")
        self.silence = silence
        self.received_events = received_events


class OrphanedRequestError(_Timeout):
    """The server no longer knows this request; it was dropped (and retried when retries are left).

    Either the server reported fewer live requests than this client was waiting on (``server_active``,
    ``client_waiting``), or ``overtaken_by`` requests sent after it had started answering while it had
    shown nothing for ``waited`` seconds (``server_active`` is then -1: not read).
    """

    def __init__(
        self,
        request: Any,
        *,
        server_active: int,
        client_waiting: int,
        overtaken_by: int = 0,
        waited: float | None = None,
    ) -> None:
        if overtaken_by:
            shown = "" if waited is None else f" for {waited:.2f}s"
            message = (
                f"Orphaned request: {overtaken_by} request(s) sent after it have started answering while it "
                f"has shown nothing{shown} (the server serves in order); aborted to retry"
            )
        else:
            message = (
                f"Orphaned request: the server reports {server_active} running+waiting request(s) while "
                f"this client waits on {client_waiting}; aborted to retry"
            )
        super().__init__(request, message=message)
        self.server_active = server_active
        self.client_waiting = client_waiting
        self.overtaken_by = overtaken_by


class CircuitOpenError(DeadlineExceeded):
    """The circuit breaker held the call, and its deadline cannot be met while the breaker stays shut.

    Raised as soon as that is known (an open breaker whose cooldown ends past the deadline), or when
    the deadline runs out while the call is held. ``state`` and ``reason`` say why the breaker holds.
    """

    def __init__(
        self,
        request: Any,
        *,
        deadline: float,
        attempts: int,
        state: str,
        reason: str,
        retry_in: float | None,
        last_error: BaseException | None = None,
    ) -> None:
        super().__init__(
            request,
            deadline=deadline,
            attempts=attempts,
            last_error=last_error,
            waiting_for=f"held by the circuit breaker ({state}: {reason})",
        )
        self.state = state
        self.reason = reason
        self.retry_in = retry_in


class StreamError(APIError):
    """The server put an ``error`` object inside an event stream (retried if nothing was delivered yet)."""

    def __init__(self, message: str, request: Any, *, body: object | None) -> None:
        super().__init__(message, request, body=body)
