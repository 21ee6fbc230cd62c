"""The exception tree.

Names and attributes match openai-python, so ``except openai_style.Error`` clauses written for
``openai.AsyncOpenAI`` keep working after the import swap. The library's own errors subclass the
openai-style class a caller would already catch::

    OpenAIError
    ├── ConfigError (also ValueError)            bad constructor / option value
    ├── APIError                                 message, request, body, code, param, type
    │   ├── APIStatusError                       status_code, response, request_id
    │   │   ├── BadRequestError                  400
    │   │   ├── AuthenticationError              401
    │   │   ├── PermissionDeniedError            403
    │   │   ├── NotFoundError                    404
    │   │   ├── ConflictError                    409
    │   │   ├── UnprocessableEntityError         422
    │   │   ├── RateLimitError                   429
    │   │   └── InternalServerError              >= 500
    │   ├── APIConnectionError                   no usable response
    │   │   ├── ServerUnreachable                refused / unreachable: down or restarting
    │   │   ├── APITimeoutError
    │   │   │   ├── DeadlineExceeded             the call's deadline ran out
    │   │   │   │   └── CircuitOpenError         held by the breaker; the deadline cannot be met
    │   │   │   ├── StallError                   the server went silent for stall_timeout
    │   │   │   └── OrphanedRequestError         the server no longer knows the request
    │   ├── StreamError                          an ``error`` object inside an SSE stream
    │   └── APIResponseValidationError           the body is not what the endpoint returns
    └── LengthFinishReasonError                  ``parse`` hit max_tokens
"""

from __future__ import annotations

from typing import Any, Literal

import httpx

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


class OpenAIError(Exception):
    """Base of every error this library raises."""


class ConfigError(OpenAIError, ValueError):
    """An invalid setting; the message names the argument and the value."""


class APIError(OpenAIError):
    """An error talking to the server.

    ``request`` is an :class:`httpx.Request` describing what was sent (built lazily for the aiohttp
    transport), ``body`` the decoded error body when there is one.
    """

    message: str
    request: httpx.Request
    body: object | None
    code: str | None
    param: str | None
    type: str | None

    def __init__(self, message: str, request: httpx.Request, *, body: object | None) -> None:
        super().__init__(message)
        self.message = message
        self.request = request
        self.body = body
        self.code = self.param = self.type = None
        if isinstance(body, dict):
            code, param, type_ = body.get("code"), body.get("param"), body.get("type")
            self.code = None if code is None else str(code)
            self.param = None if param is None else str(param)
            self.type = None if type_ is None else str(type_)


class APIResponseValidationError(APIError):
    """The server answered 2xx with a body that does not fit the endpoint's schema."""

    response: httpx.Response
    status_code: int

    def __init__(self, response: httpx.Response, body: object | None, *, message: str | None = None) -> None:
        super().__init__(
            message or "Data returned by API invalid for expected schema.", response.request, body=body
        )
        self.response = response
        self.status_code = response.status_code


class APIStatusError(APIError):
    """The server answered with a 4xx or 5xx status."""

    response: httpx.Response
    status_code: int
    request_id: str | None

    def __init__(self, message: str, *, response: httpx.Response, body: object | None) -> None:
        super().__init__(message, response.request, body=body)
        self.response = response
        self.status_code = response.status_code
        self.request_id = response.headers.get("x-request-id")


class BadRequestError(APIStatusError):
    status_code: Literal[400] = 400


class AuthenticationError(APIStatusError):
    status_code: Literal[401] = 401


class PermissionDeniedError(APIStatusError):
    status_code: Literal[403] = 403


class NotFoundError(APIStatusError):
    status_code: Literal[404] = 404


class ConflictError(APIStatusError):
    status_code: Literal[409] = 409


class UnprocessableEntityError(APIStatusError):
    status_code: Literal[422] = 422


class RateLimitError(APIStatusError):
    status_code: Literal[429] = 429


class InternalServerError(APIStatusError):
    pass


class APIConnectionError(APIError):
    """No usable response: refused, reset or dropped connection, broken body."""

    def __init__(self, *, message: str = "Connection error.", request: httpx.Request) -> None:
        super().__init__(message, request, body=None)


class ServerUnreachable(APIConnectionError):
    """No connection could be opened (refused, unreachable): the server is down or restarting.

    With the circuit breaker on, such a failure does not use up ``max_retries`` or the retry budget:
    the call waits, within its deadline, while the breaker's half-open probes find out when the server
    is back (gRPC's "wait for ready").
    """


class APITimeoutError(APIConnectionError):
    """An attempt or the whole call ran out of time."""

    def __init__(self, request: httpx.Request, *, message: str = "Request timed out.") -> None:
        super().__init__(message=message, request=request)


class DeadlineExceeded(APITimeoutError):
    """The call's ``deadline`` ran out: every attempt, backoff sleep and queue wait counted.

    ``attempts`` is how many requests were sent; ``last_error`` the failure of the last one (also
    ``__cause__``), or ``None`` if the time ran out before or during the first.
    """

    def __init__(
        self,
        request: httpx.Request,
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


class StallError(APITimeoutError):
    """The server sent nothing for ``silence`` seconds while an answer was expected."""

    def __init__(self, request: httpx.Request, *, silence: float, received_events: int) -> None:
        where = "before the first token" if received_events == 0 else f"after {received_events} event(s)"
        super().__init__(request, message=f"No data from the server for {silence:g}s ({where})")
        self.silence = silence
        self.received_events = received_events


class OrphanedRequestError(APITimeoutError):
    """The server reported fewer live requests than this client was waiting on; this one was dropped."""

    def __init__(self, request: httpx.Request, *, server_active: int, client_waiting: int) -> None:
        super().__init__(
            request,
            message=(
                f"Orphaned request: the server reports {server_active} running+waiting request(s) while "
                f"this client waits on {client_waiting}; aborted to retry"
            ),
        )
        self.server_active = server_active
        self.client_waiting = client_waiting


class CircuitOpenError(DeadlineExceeded):
    """The circuit breaker held the call, and its deadline cannot be met while the breaker stays shut.

    Raised as soon as that is known (an open breaker whose cooldown ends past the deadline), or when
    the deadline runs out while the call is held. ``state`` and ``reason`` say why the breaker holds.
    """

    def __init__(
        self,
        request: httpx.Request,
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
    """The server put an ``error`` object inside an event stream after it had started."""


class LengthFinishReasonError(OpenAIError):
    """``parse`` could not parse the answer because generation stopped at ``max_tokens``."""

    def __init__(self, *, completion: Any) -> None:
        usage = getattr(completion, "usage", None)
        super().__init__(f"Could not parse response content as the length limit was reached - {usage}")
        self.completion = completion


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error(response: httpx.Response, body: object | None) -> APIStatusError:
    """The openai-style exception for an error status, with the server's message when it sent one."""
    err = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(err, dict) and err.get("message"):
        message = f"Error code: {response.status_code} - {err['message']}"
    elif body:
        message = f"Error code: {response.status_code} - {body}"
    else:
        message = f"Error code: {response.status_code}"
    cls = _STATUS_ERRORS.get(response.status_code)
    if cls is None:
        cls = InternalServerError if response.status_code >= 500 else APIStatusError
    return cls(message, response=response, body=err)
