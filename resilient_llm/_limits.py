"""Limits: how much a server's answer may make one call hold in memory or follow.

All sizes are in bytes and counted *after* decompression, so a small compressed answer cannot expand
past them. Beyond a size limit a call fails at once with a :class:`~resilient_llm._errors_io.ResponseTooLarge`
(not retried: the server would send the same oversized answer again); beyond ``max_redirects`` with
a :class:`~resilient_llm._errors_io.RedirectError`.

* ``max_body_bytes`` — a body read whole (JSON answers: models, embeddings, a server that ignores
  ``stream: true``). Event streams are bounded per event instead: a long generation may stream more
  than this in total without holding it all at once.
* ``max_event_bytes`` — one server-sent event, and so any single line of an event stream.
* ``max_error_body_bytes`` — how much of a 4xx/5xx body is kept in the exception (and its message):
  the rest is not read, and the kept part ends with a note saying it was cut and how large the body
  was when the server said so.
* ``max_redirects`` — same-origin redirects followed for one request (see ``_http/_redirects.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ._policies._validate import check_int

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_ERROR_BODY_BYTES",
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_MAX_REDIRECTS",
    "Limits",
]

DEFAULT_MAX_BODY_BYTES: Final = 64 * 1024 * 1024
DEFAULT_MAX_EVENT_BYTES: Final = 8 * 1024 * 1024
DEFAULT_MAX_ERROR_BODY_BYTES: Final = 8 * 1024
DEFAULT_MAX_REDIRECTS: Final = 5


@dataclass(frozen=True, kw_only=True, slots=True)
class Limits:
    """Size and redirect limits for every response a client reads. Immutable; validated when made."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    max_error_body_bytes: int = DEFAULT_MAX_ERROR_BODY_BYTES
    max_redirects: int = DEFAULT_MAX_REDIRECTS

    def __post_init__(self) -> None:
        check_int("Limits", "max_body_bytes", self.max_body_bytes, at_least=1)
        check_int("Limits", "max_event_bytes", self.max_event_bytes, at_least=1)
        check_int("Limits", "max_error_body_bytes", self.max_error_body_bytes, at_least=0)
        check_int("Limits", "max_redirects", self.max_redirects, at_least=0)


DEFAULT_LIMITS: Final = Limits()
