"""Errors of the HTTP and SSE layer: answers too large, malformed bytes, redirects, TLS.

Each subclasses the ``openai`` class a caller already catches, and carries ``retryable``: whether the
call pipeline may send the request again (before anything reached the caller)::

    openai.APIResponseValidationError
    ├── ResponseTooLarge            retryable=False  an answer past a size limit (Limits)
    │   ├── BodyTooLarge                             a body read whole
    │   └── EventTooLarge                            one server-sent event (or line)
    └── UnsupportedEncoding         retryable=False  a Content-Encoding we did not ask for
    openai.APIConnectionError
    ├── MalformedResponse           retryable=True   undecodable bytes: corrupt or cut compression,
    │                                                an event stream that is not UTF-8
    └── CertificateVerificationError retryable=False TLS certificate verification failed
    openai.APIStatusError
    └── RedirectError               retryable=False  a 3xx that was not followed

``request`` and ``response`` are built by ``_http/_base.py`` (``describe_request`` /
``describe_response``): never with credentials, and URLs masked. Messages never quote header values.
"""

from __future__ import annotations

from typing import Any, ClassVar

import openai

__all__ = [
    "BodyTooLarge",
    "CertificateVerificationError",
    "EventTooLarge",
    "MalformedResponse",
    "RedirectError",
    "ResponseTooLarge",
    "UnsupportedEncoding",
    "is_retryable",
]


def is_retryable(exc: BaseException) -> bool | None:
    """``exc.retryable`` when the class says it, else ``None`` (let the usual classification decide)."""
    value = getattr(type(exc), "retryable", None)
    return value if isinstance(value, bool) else None


class ResponseTooLarge(openai.APIResponseValidationError):
    """The answer is larger than a :class:`~resilient_llm.Limits` setting allows. Not retried.

    ``limit`` is the setting's value, ``setting`` its name, ``size`` the size seen so far (or the size
    the server declared in Content-Length), always more than ``limit``.
    """

    retryable: ClassVar[bool] = False
    what: ClassVar[str] = "answer"

    def __init__(self, response: Any, *, setting: str, limit: int, size: int, declared: bool = False) -> None:
        how = "declared by the server as" if declared else "at least"
        super().__init__(
            response,
            None,
            message=(
                f"The response {self.what} is larger than Limits.{setting}={limit} bytes "
                f"({how} {size} bytes after decompression); not retried"
            ),
        )
        self.setting = setting
        self.limit = limit
        self.size = size


class BodyTooLarge(ResponseTooLarge):
    """A body read whole (a JSON answer) is past ``Limits.max_body_bytes``."""

    what = "body"


class EventTooLarge(ResponseTooLarge):
    """One server-sent event (or one line of the stream) is past ``Limits.max_event_bytes``."""

    what = "event"


class UnsupportedEncoding(openai.APIResponseValidationError):
    """The server compressed the answer with an encoding the client did not offer. Not retried."""

    retryable: ClassVar[bool] = False

    def __init__(self, response: Any, *, encoding: str) -> None:
        super().__init__(
            response,
            None,
            message=(
                f"The response uses Content-Encoding {encoding[:40]!r}; only gzip, deflate and identity "
                "are accepted (the request offered only those)"
            ),
        )
        self.encoding = encoding


class MalformedResponse(openai.APIConnectionError):
    """The answer's bytes cannot be decoded: corrupt or cut compressed data, or an event stream that is
    not UTF-8. Retried like a broken connection while nothing has reached the caller."""

    retryable: ClassVar[bool] = True

    def __init__(self, *, message: str, request: Any) -> None:
        super().__init__(message=message, request=request)


class CertificateVerificationError(openai.APIConnectionError):
    """The server's TLS certificate could not be verified. Raised at once and never retried: a
    certificate does not fix itself within a call's deadline."""

    retryable: ClassVar[bool] = False

    def __init__(self, *, message: str, request: Any) -> None:
        super().__init__(message=message, request=request)


class RedirectError(openai.APIStatusError):
    """A 3xx answer that the client did not follow (another origin, a method change, too many
    redirects, no usable ``Location``). ``location`` is the target with any credentials masked."""

    retryable: ClassVar[bool] = False

    def __init__(self, *, response: Any, reason: str, location: str | None) -> None:
        where = f" to {location}" if location else ""
        super().__init__(
            f"Error code: {response.status_code} - redirect{where} not followed: {reason}",
            response=response,
            body=None,
        )
        self.reason = reason
        self.location = location
