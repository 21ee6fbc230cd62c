"""``AsyncOpenAI``: openai-python's constructor and resources, on the resilient engine."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlencode

import httpx

from ._attempt import Request
from ._config import (
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_RAMP_UP,
    NOT_GIVEN,
    NotGiven,
    RateLimit,
    RetryBudgetConfig,
    Settings,
    _count,
    _positive,
    coerce_timeout,
    is_given,
    read_env,
    resolve_breaker,
    resolve_rate_limit,
)
from ._engine import CallSpec, Engine
from ._events import EventHook
from ._exceptions import ConfigError, OpenAIError
from ._http import default_transport
from ._policies._backoff import Backoff
from ._policies._breaker import BreakerConfig
from ._stats import Stats
from ._version import __version__
from ._vllm._metrics import metrics_url as derive_metrics_url
from .resources import AsyncChat, AsyncCompletions, AsyncEmbeddings, AsyncModels, AsyncResponses

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_INCLUDE_USAGE = {"include_usage": True}  # shared by every request body; only ever read
_USER_AGENT = f"resilient-llm/{__version__}"


class AsyncOpenAI:
    """A drop-in for ``openai.AsyncOpenAI`` whose calls always end, success or a typed error.

    The first arguments are openai-python's and mean the same: ``api_key`` (else ``OPENAI_API_KEY``;
    a local server needs none), ``organization``, ``project``, ``base_url`` (else ``OPENAI_BASE_URL``),
    ``default_headers``, ``default_query``, ``http_client`` (an ``httpx.AsyncClient``; without one,
    asyncio calls go through aiohttp). ``timeout`` is per attempt (default 600 s, 5 s to connect), and
    its read part is the longest silence between two pieces of an answer: a generation that keeps
    producing tokens is never cut. ``max_retries`` (default 4; openai-python's is 2) counts retries per
    call; the deadline and the retry budget bound them too.

    The keyword-only resilience settings (all times in seconds):

    Args:
        deadline: the whole call — every attempt, backoff sleep and wait in the limiter or breaker.
            When it runs out the call raises :class:`DeadlineExceeded`. Default 1800.
        stall_timeout: the longest silence tolerated while an answer is produced, also for
            non-streaming calls (streamed under the hood and reassembled). ``None`` switches it off
            (non-streaming calls are then sent as such). Default 60.
        max_concurrency: calls in flight at once, shared by this client and its ``with_options``
            copies; further calls wait in FIFO order. Default 64.
        rate_limit: requests per second (a number or :class:`RateLimit` with a burst); ``None``
            (default) switches it off.
        ramp_up: seconds over which allowed concurrency rises from 10 % to ``max_concurrency`` when
            the client starts (and after the server recovers); 0 switches it off. Default 10.
        breaker: a :class:`BreakerConfig` for the circuit breaker keyed on the server's ``/metrics``
            queue depth and on failures; ``None`` switches it off. On by default.
        retry_budget: :class:`RetryBudgetConfig`; retries allowed per window, so a dead server does
            not get a retry storm. Default 20 % of requests plus 2 per second.
        backoff: :class:`Backoff` (base, cap, jitter) between attempts. Default full jitter 0.5..8 s.
        hooks: callables receiving event objects (:class:`RetryScheduled`, :class:`BreakerTransition`,
            :class:`OrphansAborted`, :class:`MetricsAvailability`); they run inline and must be quick.

    Settings not passed as arguments are read from ``RESILIENT_LLM_*`` environment variables.
    """

    def __init__(
        self,
        *,
        api_key: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        base_url: str | httpx.URL | None = None,
        websocket_base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        http_client: httpx.AsyncClient | None = None,
        deadline: float | NotGiven = NOT_GIVEN,
        stall_timeout: float | NotGiven | None = NOT_GIVEN,
        max_concurrency: int | NotGiven = NOT_GIVEN,
        rate_limit: float | RateLimit | NotGiven | None = NOT_GIVEN,
        ramp_up: float | NotGiven = NOT_GIVEN,
        breaker: BreakerConfig | NotGiven | None = NOT_GIVEN,
        retry_budget: RetryBudgetConfig | NotGiven = NOT_GIVEN,
        backoff: Backoff | NotGiven = NOT_GIVEN,
        hooks: Iterable[EventHook] = (),
        _strict_response_validation: bool = False,
    ) -> None:
        env = read_env()
        if api_key is None:
            api_key = os.environ.get("OPENAI_API_KEY")
        if base_url is None:
            base_url = os.environ.get("OPENAI_BASE_URL") or _DEFAULT_BASE_URL
        self.api_key = api_key
        self.organization = organization
        self.project = project
        self.base_url = _normalise_base_url(base_url)
        self.default_headers = dict(default_headers or {})
        self.default_query = dict(default_query or {})
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigError(f"http_client must be an httpx.AsyncClient, got {type(http_client).__name__}")
        self.http_client = http_client

        def pick(name: str, value: Any, default: Any) -> Any:
            if is_given(value):
                return value
            return env.get(name, default)

        settings = Settings()
        raw_timeout = pick("timeout", timeout, settings.timeout)
        self._settings = Settings(
            deadline=pick("deadline", deadline, settings.deadline),
            timeout=coerce_timeout(raw_timeout),
            stall_timeout=pick("stall_timeout", stall_timeout, settings.stall_timeout),
            max_retries=pick("max_retries", max_retries, settings.max_retries),
            backoff=backoff if isinstance(backoff, Backoff) else settings.backoff,
        )
        if is_given(backoff) and not isinstance(backoff, Backoff):
            raise ConfigError(f"backoff must be a Backoff, got {backoff!r}")
        concurrency = _count(
            "max_concurrency", pick("max_concurrency", max_concurrency, DEFAULT_MAX_CONCURRENCY), minimum=1
        )
        ramp = _positive("ramp_up", pick("ramp_up", ramp_up, DEFAULT_RAMP_UP), allow_zero=True)
        budget = retry_budget if is_given(retry_budget) else RetryBudgetConfig()
        if not isinstance(budget, RetryBudgetConfig):
            raise ConfigError(f"retry_budget must be a RetryBudgetConfig, got {retry_budget!r}")
        self._engine_args: dict[str, Any] = {
            "max_concurrency": concurrency,
            "ramp_up": ramp,
            "rate_limit": resolve_rate_limit(rate_limit, env),
            "breaker": resolve_breaker(breaker, env),
            "retry_budget": budget,
            "transport_factory": default_transport(http_client),
            "hooks": tuple(hooks),
        }
        self._engine = Engine(metrics_url=derive_metrics_url(self.base_url), **self._engine_args)
        self._init_resources()

    def _init_resources(self) -> None:
        self.chat = AsyncChat(self)
        self.completions = AsyncCompletions(self)
        self.embeddings = AsyncEmbeddings(self)
        self.models = AsyncModels(self)
        self.responses = AsyncResponses(self)
        self._headers = self._build_headers()

    # --- settings ------------------------------------------------------------------------------
    @property
    def timeout(self) -> httpx.Timeout:
        """Per attempt: connect limit, and the read limit on silence between two pieces of an answer."""
        return self._settings.timeout

    @property
    def max_retries(self) -> int:
        """Retries per call after the first attempt (refused connections with the breaker on excepted)."""
        return self._settings.max_retries

    @property
    def deadline(self) -> float:
        """Seconds for a whole call: attempts, backoff sleeps and waits in the limiter and breaker."""
        return self._settings.deadline

    @property
    def stall_timeout(self) -> float | None:
        """The longest silence tolerated while an answer is produced; ``None``: no stall detection."""
        return self._settings.stall_timeout

    def with_options(
        self,
        *,
        api_key: str | None = None,
        organization: str | None = None,
        project: str | None = None,
        base_url: str | httpx.URL | None = None,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | None = None,
        set_default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        set_default_query: Mapping[str, object] | None = None,
        deadline: float | NotGiven = NOT_GIVEN,
        stall_timeout: float | NotGiven | None = NOT_GIVEN,
        backoff: Backoff | NotGiven = NOT_GIVEN,
        **shared: Any,
    ) -> AsyncOpenAI:
        """A copy with other per-call settings that shares this client's connection pool, limiter,
        breaker, retry budget and stats (as openai-python's ``with_options`` shares its pool).

        A copy with another ``base_url`` talks to another server: it gets limits, a breaker and stats
        of its own (the same settings), since the first server's queue says nothing about the second's.
        """
        if shared:
            names = ", ".join(sorted(shared))
            raise ConfigError(
                f"with_options() cannot change {names}: the limiter, breaker and pool are shared by every "
                "copy of a client; set them when creating the client"
            )
        if default_headers is not None and set_default_headers is not None:
            raise ValueError(
                "The `default_headers` and `set_default_headers` arguments are mutually exclusive"
            )
        if default_query is not None and set_default_query is not None:
            raise ValueError("The `default_query` and `set_default_query` arguments are mutually exclusive")
        new = object.__new__(AsyncOpenAI)
        new.__dict__.update(self.__dict__)
        new.api_key = api_key if api_key is not None else self.api_key
        new.organization = organization if organization is not None else self.organization
        new.project = project if project is not None else self.project
        new.base_url = _normalise_base_url(base_url) if base_url is not None else self.base_url
        new.default_headers = (
            dict(set_default_headers)
            if set_default_headers is not None
            else {**self.default_headers, **(default_headers or {})}
        )
        new.default_query = (
            dict(set_default_query)
            if set_default_query is not None
            else {**self.default_query, **(default_query or {})}
        )
        changes: dict[str, Any] = {}
        if is_given(timeout):
            changes["timeout"] = coerce_timeout(timeout)  # type: ignore[arg-type]
        if is_given(max_retries):
            changes["max_retries"] = max_retries
        if is_given(deadline):
            changes["deadline"] = deadline
        if is_given(stall_timeout):
            changes["stall_timeout"] = stall_timeout
        if is_given(backoff):
            changes["backoff"] = backoff
        new._settings = self._settings.evolve(**changes) if changes else self._settings
        if new.base_url != self.base_url:
            new._engine = Engine(metrics_url=derive_metrics_url(new.base_url), **self._engine_args)
        new._init_resources()
        return new

    copy = with_options

    # --- lifecycle -----------------------------------------------------------------------------
    def stats(self) -> Stats:
        """A snapshot: in flight, queued, held by the breaker, ramp level, retries, budget, ...

        Call it from the event loop the client runs on (a task that prints progress, say): reading the
        breaker may apply a due state change, which wakes waiting calls.
        """
        return self._engine.stats()

    def metrics(self) -> bytes:
        """This client's state in Prometheus text format (``resilient_llm_*`` series)."""
        from ._vllm._exposition import render_client_metrics

        s = self.stats()
        data: dict[str, Any] = s.as_dict()
        return render_client_metrics(data)

    async def close(self) -> None:
        """Stop the metrics poller and close the connections (shared with ``with_options`` copies)."""
        await self._engine.aclose()

    async def __aenter__(self) -> AsyncOpenAI:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"<resilient_llm.AsyncOpenAI base_url={self.base_url!r} deadline={s.deadline:g} "
            f"stall_timeout={s.stall_timeout} max_retries={s.max_retries}>"
        )

    # --- requests (used by the resources) ------------------------------------------------------
    def _build_headers(self) -> dict[str, str]:
        headers = {
            "accept": "application/json",
            "content-type": "application/json",
            "user-agent": _USER_AGENT,
        }
        if self.api_key:
            headers["authorization"] = f"Bearer {self.api_key}"
        if self.organization:
            headers["openai-organization"] = self.organization
        if self.project:
            headers["openai-project"] = self.project
        for k, v in self.default_headers.items():
            headers[k.lower()] = v
        return headers

    def _request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None,
        extra_headers: Mapping[str, str | None] | None,
        extra_query: Mapping[str, object] | None,
    ) -> Request:
        url = self.base_url + path
        query = {**self.default_query, **(extra_query or {})} if (self.default_query or extra_query) else None
        if query:
            url += "?" + urlencode({k: v for k, v in query.items() if v is not None}, doseq=True)
        headers = self._headers
        if extra_headers:
            headers = dict(headers)
            for k, v in extra_headers.items():
                if v is None or not is_given(v):
                    headers.pop(k.lower(), None)
                else:
                    headers[k.lower()] = v
        return Request(method, url, headers, body)

    def _settings_for(self, timeout: Any) -> Settings:
        if not is_given(timeout):
            return self._settings
        return self._settings.evolve(timeout=coerce_timeout(timeout))

    async def _create(
        self,
        path: str,
        body: dict[str, Any],
        *,
        stream: bool,
        parse: Callable[[dict[str, Any]], Any],
        chunk: Callable[[dict[str, Any]], Any],
        assembler: Callable[[], Any],
        extra_headers: Mapping[str, str | None] | None,
        extra_query: Mapping[str, object] | None,
        timeout: Any,
        usage_option: bool = True,
    ) -> Any:
        settings = self._settings_for(timeout)
        if stream:
            body["stream"] = True
            spec = CallSpec(self._request("POST", path, body, extra_headers, extra_query), "stream", chunk)
        elif settings.stall_timeout is not None:
            body["stream"] = True
            if usage_option:
                options = body.get("stream_options")
                body["stream_options"] = (
                    {**options, "include_usage": True}
                    if isinstance(options, dict) and options
                    else _INCLUDE_USAGE
                )
            spec = CallSpec(
                self._request("POST", path, body, extra_headers, extra_query), "assemble", parse, assembler
            )
        else:
            body.pop("stream", None)
            spec = CallSpec(self._request("POST", path, body, extra_headers, extra_query), "json", parse)
        return await self._engine.call(settings, spec)

    async def _json(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None,
        *,
        parse: Callable[[dict[str, Any]], Any],
        extra_headers: Mapping[str, str | None] | None,
        extra_query: Mapping[str, object] | None,
        timeout: Any,
    ) -> Any:
        spec = CallSpec(self._request(method, path, body, extra_headers, extra_query), "json", parse)
        return await self._engine.call(self._settings_for(timeout), spec)


def _normalise_base_url(url: str | httpx.URL) -> str:
    text = str(url).rstrip("/")
    if not text.startswith(("http://", "https://")):
        raise ConfigError(f"base_url must start with http:// or https://, got {str(url)!r}")
    return text


__all__ = ["AsyncOpenAI", "OpenAIError"]
