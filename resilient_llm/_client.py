"""``AsyncOpenAI``: openai-python's own client, with every request on the resilient call pipeline.

It subclasses ``openai.AsyncOpenAI``: its constructor, resources, helpers (``with_raw_response``,
``with_streaming_response``, ``beta``, the ``.stream()`` helpers, files, batches, ...), result types and
exceptions are openai's. Two seams add the resilience:

* :meth:`AsyncOpenAI.request` — the method every openai resource sends through. Each call becomes one
  run of the engine (deadline, limiter, breaker, retries under the budget); the endpoints that produce
  answers go through the library's own I/O (stall detection, reassembly), everything else through
  openai's own request path one attempt at a time (``_calls.py``).
* ``chat.completions.create``, ``completions.create``, ``embeddings.create`` and ``responses.create``
  (``resources/``) take a shorter road to the same engine when nothing openai-specific is asked of
  them (no raw-response wrapper): openai's request building and parsing cost several times the
  library's own work per call.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Iterable, Mapping
from functools import cached_property
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, cast

import openai

from ._attempt import Request
from ._calls import FastPlan, Mode, ModelResult, SdkPlan, SdkResult
from ._compat import RAW_RESPONSE_HEADER, FinalRequestOptions, timeout_parts
from ._config import (
    CLIENT,
    DEFAULT_DEADLINE,
    DEFAULT_HEDGE_SLOWDOWN,
    DEFAULT_MAX_CONCURRENCY,
    DEFAULT_MAX_RETRIES,
    DEFAULT_RAMP_UP,
    DEFAULT_STALL_TIMEOUT,
    NOT_GIVEN,
    CallSettings,
    NotGiven,
    RateLimit,
    RetryBudgetConfig,
    Settings,
    check_setting,
    check_timeout,
    is_given,
    read_env,
    resolve_breaker,
    resolve_coordination,
    resolve_rate_limit,
    resolve_replicas,
)
from ._engine import Engine
from ._events import EventHook
from ._exceptions import ConfigError
from ._http import default_transport
from ._limits import DEFAULT_LIMITS, Limits
from ._policies._backoff import DEFAULT_BACKOFF, Backoff
from ._policies._breaker import BreakerConfig
from ._policies._validate import reject
from ._secrets import check_api_key, check_headers, mask_url
from ._stats import Stats

if TYPE_CHECKING:
    from ._coord import CoordinationConfig
    from .resources import AsyncChat, AsyncCompletions, AsyncResponses

#: The per-client settings ``with_options`` may change; everything else is shared by the copies.
_PER_COPY = ("deadline", "stall_timeout", "backoff")
#: Settings of the shared engine: fixed when the client is created.
_SHARED = (
    "max_concurrency",
    "rate_limit",
    "ramp_up",
    "breaker",
    "retry_budget",
    "limits",
    "hooks",
    "replicas",
    "coordination",
)


class _Route:
    """An endpoint the library's own I/O serves, and how a non-streaming call is sent there."""

    __slots__ = ("assembler", "usage_option")

    def __init__(self, assembler: Any, usage_option: bool) -> None:
        self.assembler = assembler  # None: never streamed under the hood
        self.usage_option = usage_option  # ask for the usage chunk when streaming under the hood


def _routes() -> dict[str, _Route]:
    from ._assemble import ChatAssembler, CompletionAssembler, ResponseAssembler

    return {
        "/chat/completions": _Route(ChatAssembler, True),
        "/completions": _Route(CompletionAssembler, True),
        "/responses": _Route(ResponseAssembler, False),
        "/embeddings": _Route(None, False),
    }


_INCLUDE_USAGE = {"include_usage": True}  # shared by request bodies; only ever read


class AsyncOpenAI(openai.AsyncOpenAI):
    """``openai.AsyncOpenAI`` whose calls always end, with the answer or one of openai's exceptions.

    Every argument of openai's constructor means what it means there (``api_key``, ``base_url``,
    ``timeout``, ``max_retries``, ``default_headers``, ``http_client``...), with two differences:
    ``timeout`` is per attempt and its read part is the longest *silence* between two pieces of an
    answer (a generation that keeps producing tokens is never cut), and ``max_retries`` defaults to 4
    (openai-python's is 2): the deadline and the retry budget bound them. Without an ``http_client``,
    asyncio calls to the answer endpoints go through aiohttp.

    The keyword-only resilience settings (all times in seconds):

    Args:
        deadline: the whole call — every attempt, backoff sleep and wait in the limiter or breaker.
            When it runs out the call raises :class:`DeadlineExceeded`. Default 1800.
        stall_timeout: the longest silence tolerated while an answer is produced, also for
            non-streaming calls (streamed under the hood and reassembled). ``None`` switches it off
            (non-streaming calls are then sent as such). Default 60.
        max_concurrency: calls in flight at once, shared by this client and its ``with_options``
            copies; further calls wait in FIFO order. A hard cap when given. Default ``None``: the
            server's batch capacity, read from its ``/metrics``, plus the waiting queue the breaker
            allows (64 while the server shows no metrics).
        rate_limit: requests per second (a number or :class:`RateLimit` with a burst); ``None``
            (default) switches it off.
        ramp_up: seconds over which allowed concurrency rises from 10 % to ``max_concurrency`` when
            the client starts (and after the server recovers), until the server's ``/metrics`` are
            read (then its queue depth paces the calls); 0 switches it off. Default 10.
        breaker: a :class:`BreakerConfig` for the circuit breaker keyed on the server's ``/metrics``
            queue depth and on failures; ``None`` switches it off. On by default.
        retry_budget: :class:`RetryBudgetConfig`; retries allowed per window, so a dead server does
            not get a retry storm. Default 20 % of requests plus 2 per second.
        backoff: :class:`Backoff` (base, cap, jitter) between attempts, or a tenacity wait strategy
            (``tenacity.wait_random_exponential(...)``). Default full jitter 0.5..8 s.
        limits: :class:`Limits` on what an answer may make a call hold: the largest body, the largest
            stream event, how much of an error body is kept, redirects followed. Default 64 MiB, 8 MiB,
            8 KiB, 5.
        hooks: callables receiving event objects (:class:`RetryScheduled`, :class:`BreakerTransition`,
            :class:`OrphansAborted`, :class:`MetricsAvailability`); they run inline and must be quick.
        replicas: base URLs of several servers that serve the same API (``["http://gpu-1:8000/v1",
            "http://gpu-2:8000/v1"]``). Each gets its own limits (``max_concurrency`` is per replica),
            breaker, ramp and monitor; each attempt goes to the least loaded one that lets calls in and
            serves the model, a retry preferably to another. ``base_url``, when given too, must be one of
            them; otherwise it is the first. Default ``None``: ``base_url`` alone.
        coordination: a Redis URL (``"redis://host:6379/0"``) or a :class:`CoordinationConfig`: every
            process that gives the same one shares, per server, ``max_concurrency`` (leases that a
            crashed process gives back within ``lease_ttl``), ``rate_limit``, the retry budget and the
            ``/metrics`` scrapes. When Redis is unreachable each process falls back to its fair share.
            Needs the ``redis`` extra. Default ``None``: limits are this client's own.
        hedge_slowdown: a non-streaming call whose answer arrives this many times slower than the
            server's other answers (token by token, measured as it streams) gets a hedged copy, sent
            to another replica when there is one; the first answer to complete is used and the other
            cancelled. Each copy takes a retry from the retry budget. ``None`` switches hedging off.
            Default 4.

    Settings not passed as arguments are read from ``RESILIENT_LLM_*`` environment variables.
    """

    _settings: Settings
    _engine_args: dict[str, Any]
    _user_http_client: bool
    _engine: Engine

    def __init__(
        self,
        *,
        api_key: Any = None,
        organization: str | None = None,
        project: str | None = None,
        base_url: Any = None,
        websocket_base_url: Any = None,
        timeout: Any = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        default_headers: Mapping[str, str] | None = None,
        default_query: Mapping[str, object] | None = None,
        http_client: Any = None,
        deadline: float | NotGiven = NOT_GIVEN,
        stall_timeout: float | NotGiven | None = NOT_GIVEN,
        max_concurrency: int | NotGiven | None = NOT_GIVEN,
        rate_limit: float | RateLimit | NotGiven | None = NOT_GIVEN,
        ramp_up: float | NotGiven = NOT_GIVEN,
        breaker: BreakerConfig | NotGiven | None = NOT_GIVEN,
        retry_budget: RetryBudgetConfig | NotGiven = NOT_GIVEN,
        backoff: Backoff | Any = NOT_GIVEN,  # or a tenacity wait strategy
        limits: Limits | NotGiven = NOT_GIVEN,
        hooks: Iterable[EventHook] = (),
        replicas: Iterable[str] | NotGiven | None = NOT_GIVEN,
        coordination: str | CoordinationConfig | NotGiven | None = NOT_GIVEN,
        hedge_slowdown: float | NotGiven | None = NOT_GIVEN,
        _strict_response_validation: bool = False,
        _resilient_parent: AsyncOpenAI | None = None,
        _resilient_changes: Mapping[str, Any] | None = None,
        **openai_options: Any,
    ) -> None:
        env = read_env()
        if not is_given(timeout) and "timeout" in env:
            timeout = env["timeout"]
        if not is_given(max_retries):
            max_retries = env.get("max_retries", DEFAULT_MAX_RETRIES)
        check_setting("max_retries", max_retries)
        parent = _resilient_parent
        if parent is not None:  # a copy (openai's copy() calls the class with our markers)
            settings = parent._settings.evolve(**(_resilient_changes or {}))
            engine_args = parent._engine_args
            user_http_client = parent._user_http_client
            servers = parent._replicas
            if base_url is not None and str(base_url).rstrip("/") != parent._server_url:
                servers = None  # a copy to another server: that server alone
        else:
            settings, engine_args = _resilience_settings(
                env,
                deadline=deadline,
                stall_timeout=stall_timeout,
                max_concurrency=max_concurrency,
                rate_limit=rate_limit,
                ramp_up=ramp_up,
                breaker=breaker,
                retry_budget=retry_budget,
                backoff=backoff,
                limits=limits,
                hooks=hooks,
                coordination=coordination,
                hedge_slowdown=hedge_slowdown,
            )
            if _iterable(replicas):
                replicas = list(cast(Iterable[str], replicas))
            servers = resolve_replicas(replicas, env)
            if servers is not None:
                base_url = _base_url_of(base_url, servers)
                if engine_args["breaker"] is not None and engine_args["breaker"].metrics_url is not None:
                    raise ConfigError(
                        "breaker.metrics_url names one server's /metrics: with replicas, each replica's "
                        "is found from its own URL"
                    )
            user_http_client = http_client is not None
        if isinstance(api_key, str):  # a key read from a file keeps its newline: never sent as is
            api_key = check_api_key(api_key)
        if default_headers is not None:
            default_headers = check_headers(default_headers)

        options: dict[str, Any] = {
            "api_key": api_key,
            "organization": organization,
            "project": project,
            "websocket_base_url": websocket_base_url,
            "max_retries": max_retries,
            "default_headers": default_headers,
            "default_query": default_query,
            "http_client": http_client,
            "_strict_response_validation": _strict_response_validation,
            **openai_options,
        }
        if base_url is not None:
            options["base_url"] = base_url
        if is_given(timeout):
            options["timeout"] = check_timeout(timeout)
        super().__init__(**options)
        for name in ("chat", "completions", "responses"):  # openai < 1.8x sets its resources in __init__,
            vars(self).pop(name, None)  # which would hide this class's (cached properties, made on first use)
        if isinstance(self.api_key, str) and api_key is None:  # from OPENAI_API_KEY
            self.api_key = check_api_key(self.api_key, name="OPENAI_API_KEY") or ""

        self._settings = settings
        self._engine_args = engine_args
        self._user_http_client = user_http_client
        self._replicas: tuple[str, ...] | None = servers
        self._hot_headers_key: tuple[Any, ...] | None = None
        self._hot_headers: Mapping[str, str] = MappingProxyType({})
        self._call_settings_key: tuple[Any, ...] | None = None
        self._call_settings: CallSettings | None = None
        self._plain_auth: bool | None = None  # no custom auth (see _hot_path_ok), once known
        if parent is not None and parent._server_url == self._server_url and parent._client is self._client:
            self._engine = parent._engine
        else:
            self._engine = self._new_engine()

    def _new_engine(self) -> Engine:
        return Engine(
            servers=self._replicas or (self._server_url,),
            headers=lambda: self._headers_for(None, NOT_GIVEN),
            transport_factory=default_transport(
                lambda: self._client, user_given=self._user_http_client, limits=self._engine_args["limits"]
            ),
            status_error=self._make_status_error_from_response,
            **self._engine_args,
        )

    @property
    def _server_url(self) -> str:
        """``base_url`` as a string without its trailing slash (made again only when it was changed)."""
        base = self._base_url
        cached = self.__dict__.get("_server_url_of")
        if cached is None or cached[0] is not base:
            cached = self.__dict__["_server_url_of"] = (base, str(base).rstrip("/"))
        url: str = cached[1]
        return url

    # --- resources with a fast path ------------------------------------------------------------
    @cached_property
    def chat(self) -> AsyncChat:
        from .resources import AsyncChat

        return AsyncChat(self)

    @cached_property
    def completions(self) -> AsyncCompletions:
        from .resources import AsyncCompletions

        return AsyncCompletions(self)

    @cached_property
    def responses(self) -> AsyncResponses:
        from .resources import AsyncResponses

        return AsyncResponses(self)

    # --- settings ------------------------------------------------------------------------------
    @property
    def deadline(self) -> float:
        """Seconds for a whole call: attempts, backoff sleeps and waits in the limiter and breaker."""
        return self._settings.deadline

    @property
    def stall_timeout(self) -> float | None:
        """The longest silence tolerated while an answer is produced; ``None``: no stall detection."""
        return self._settings.stall_timeout

    def copy(
        self,
        *,
        deadline: float | NotGiven = NOT_GIVEN,
        stall_timeout: float | NotGiven | None = NOT_GIVEN,
        backoff: Backoff | Any = NOT_GIVEN,  # or a tenacity wait strategy
        _extra_kwargs: Mapping[str, Any] = {},
        **options: Any,
    ) -> AsyncOpenAI:
        """openai's ``copy``/``with_options``, plus this library's per-call settings.

        The copy shares this client's connection pool, limiter, breaker, retry budget, monitor and
        stats. A copy with another ``base_url`` (or ``http_client``) talks to another server: it gets
        limits, a breaker and stats of its own (the same settings), since the first server's queue
        says nothing about the second's.
        """
        shared = sorted(name for name in options if name in _SHARED)
        if shared:
            raise ConfigError(
                f"with_options() cannot change {', '.join(shared)}: the limiter, breaker and pool are "
                "shared by every copy of a client; set them when creating the client"
            )
        changes = {
            name: value
            for name, value in (
                ("deadline", deadline),
                ("stall_timeout", stall_timeout),
                ("backoff", backoff),
            )
            if is_given(value)
        }
        extra = {**_extra_kwargs, "_resilient_parent": self, "_resilient_changes": changes}
        return super().copy(**options, _extra_kwargs=extra)

    with_options = copy

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

        return render_client_metrics(self.stats().as_dict())

    async def close(self) -> None:
        """Stop the metrics poller and close the connections (shared with ``with_options`` copies)."""
        await self._engine.aclose()
        await super().close()

    def __repr__(self) -> str:
        s = self._settings
        replicas = "" if self._replicas is None else f" replicas={[mask_url(u) for u in self._replicas]!r}"
        return (
            f"<resilient_llm.AsyncOpenAI base_url={mask_url(self._server_url)!r}{replicas} "
            f"deadline={s.deadline:g} stall_timeout={s.stall_timeout} max_retries={self.max_retries}>"
        )

    @property
    def replicas(self) -> tuple[str, ...]:
        """The base URLs this client sends to: its ``replicas``, else ``(base_url,)``."""
        return self._replicas or (self._server_url,)

    # --- the request path ----------------------------------------------------------------------
    def _settings_for(self, timeout: Any = NOT_GIVEN, max_retries: Any = NOT_GIVEN) -> CallSettings:
        """This call's settings: the client's, or the request's own ``timeout``/``max_retries``."""
        if is_given(timeout) or is_given(max_retries):
            return self._settings.for_call(
                timeout if is_given(timeout) else self.timeout,
                max_retries if is_given(max_retries) else self.max_retries,
            )
        key = (self._settings, self.timeout, self.max_retries)
        if key != self._call_settings_key or self._call_settings is None:
            self._call_settings = self._settings.for_call(self.timeout, self.max_retries)
            self._call_settings_key = key
        return self._call_settings

    def _mode(self, route: _Route, stream: bool, settings: CallSettings) -> Mode:
        if stream:
            return "stream"
        return "assemble" if route.assembler is not None and settings.stall_timeout is not None else "json"

    async def request(
        self,
        cast_to: Any,
        options: FinalRequestOptions,
        *,
        stream: bool = False,
        stream_cls: Any = None,
        **_ignored: Any,  # openai 1.x's remaining_retries: the engine counts retries
    ) -> Any:
        """Every request of every openai resource and helper: one run of the resilient pipeline."""
        settings = self._settings_for(options.timeout, options.max_retries)
        route = self._route_for(options)
        if route is None:
            plan: Any = SdkPlan(self, cast_to, options, stream, stream_cls)
        else:
            plan = await self._options_plan(route, cast_to, options, stream, stream_cls, settings)
        return await self._engine.call(settings, plan)

    def _route_for(self, options: FinalRequestOptions) -> _Route | None:
        if options.method.lower() != "post" or options.files is not None:
            return None
        if not isinstance(options.json_data, Mapping) or getattr(options, "content", None) is not None:
            return None
        route = _ROUTES.get(options.url)
        if route is None or self.custom_auth is not None:
            return None
        return route

    async def _options_plan(
        self,
        route: _Route,
        cast_to: Any,
        options: FinalRequestOptions,
        stream: bool,
        stream_cls: Any,
        settings: CallSettings,
    ) -> FastPlan:
        """The library's own I/O for a request openai built (raw responses, ``parse``, helpers...)."""
        opts = options.model_copy()
        if opts.idempotency_key is None:
            opts.idempotency_key = self._idempotency_key()
        opts = await self._prepare_options(opts)
        body = dict(cast(Mapping[str, Any], opts.json_data))
        if opts.extra_json:
            body.update(opts.extra_json)
            opts.extra_json = None
        mode = self._mode(route, stream, settings)
        if mode == "assemble":
            _stream_under_the_hood(body, route)
        opts.json_data = body
        http_request = self._build_request(opts, retries_taken=0)
        await self._prepare_request(http_request)
        request = Request(
            http_request.method,
            str(http_request.url),
            dict(http_request.headers),
            content=http_request.content,
        )
        result = SdkResult(self, cast_to, opts, stream_cls, http_request)
        model = body.get("model")
        return FastPlan(
            request,
            mode,
            result,
            deadline=settings.deadline,
            assembler=route.assembler,
            home=self._server_url,
            model=model if isinstance(model, str) else None,
        )

    # --- the resource fast path (used by resources/) -------------------------------------------
    def _hot_path_ok(self, extra_headers: Any) -> bool:
        """Whether a ``create`` may skip openai's request building (nothing openai-specific asked)."""
        if extra_headers and any(k.lower() == RAW_RESPONSE_HEADER.lower() for k in extra_headers):
            return False
        plain = self._plain_auth
        if plain is None:
            plain = self.custom_auth is None and getattr(self, "_api_key_provider", None) is None
            if type(self).custom_auth is _OPENAI_CUSTOM_AUTH:  # openai's own: fixed by the constructor
                self._plain_auth = plain
        return plain

    def _hot_create(
        self,
        path: str,
        params: dict[str, Any],
        cast_to: type[Any],
        stream_cls: type[Any] | None,
    ) -> Awaitable[Any]:
        """``create`` on the resource fast path: the same request and the same result as openai's.

        The engine's call, for the resource's ``create`` to await (no coroutine of its own here: one
        fewer frame held by every call in flight).
        """
        extra_headers = params.pop("extra_headers", None)
        extra_query = params.pop("extra_query", None)
        extra_body = params.pop("extra_body", None)
        timeout = params.pop("timeout", NOT_GIVEN)
        body = {k: _plain(v) for k, v in params.items() if is_given(v)}
        if extra_body:
            body.update(extra_body)
        settings = self._settings_for(timeout)
        route = _ROUTES[path]
        mode = self._mode(route, body.get("stream") is True, settings)
        if mode == "assemble":
            _stream_under_the_hood(body, route)
        home = self._server_url
        url = home + path
        query: Mapping[str, Any] = (
            {**self._custom_query, **extra_query} if extra_query else self._custom_query
        )
        if query:
            url += "?" + self.qs.stringify(query)
        headers = self._headers_for(extra_headers, timeout)
        request = Request("POST", url, headers, body)
        plan = FastPlan(
            request,
            mode,
            ModelResult(self, cast_to, stream_cls),
            deadline=settings.deadline,
            assembler=route.assembler,
            home=home,
            model=body.get("model"),
        )
        return self._engine.call(settings, plan)

    def _headers_for(self, extra_headers: Mapping[str, Any] | None, timeout: Any) -> Mapping[str, str]:
        """openai's headers for a request (auth, defaults, platform), built once per client."""
        key = (self.api_key, self.organization, self.project, id(self._custom_headers), self.timeout)
        if key != self._hot_headers_key:
            if self._platform is None:
                self._platform = _platform()
            built = self._build_headers(FinalRequestOptions.construct(method="post", url="/"))
            # Read-only, the same object on every call: the transport prepares it once per URL.
            self._hot_headers = MappingProxyType({k: v for k, v in built.items() if isinstance(v, str)})
            self._hot_headers_key = key
        if not extra_headers and not is_given(timeout):
            return self._hot_headers
        headers = dict(self._hot_headers)
        if is_given(timeout):  # openai states the request's own read timeout
            headers.pop("x-stainless-read-timeout", None)
            read = timeout_parts(timeout)[1]
            if read is not None:
                headers["x-stainless-read-timeout"] = str(
                    timeout if isinstance(timeout, (int, float)) else read
                )
        for name, value in (extra_headers or {}).items():
            lower = name.lower()
            for existing in [k for k in headers if k.lower() == lower]:
                del headers[existing]
            if isinstance(value, str):
                headers[name] = value
        return headers


#: openai's ``custom_auth`` property: what it answers depends only on how the client was built.
_OPENAI_CUSTOM_AUTH = openai.AsyncOpenAI.custom_auth


@functools.cache
def _platform() -> Any:
    """openai's platform description (for its X-Stainless-* headers), read once per process.

    openai reads it in a worker thread on a client's first request; reading it here once, without a
    thread, keeps the first calls of a client in the order they were made.
    """
    from openai._base_client import get_platform

    return get_platform()


def _resilience_settings(
    env: Mapping[str, Any],
    *,
    deadline: Any,
    stall_timeout: Any,
    max_concurrency: Any,
    rate_limit: Any,
    ramp_up: Any,
    breaker: Any,
    retry_budget: Any,
    backoff: Any,
    limits: Any,
    hooks: Iterable[EventHook],
    coordination: Any,
    hedge_slowdown: Any,
) -> tuple[Settings, dict[str, Any]]:
    """The constructor's own settings, validated (argument, else environment variable, else default)."""

    def pick(name: str, value: Any, default: Any) -> Any:
        return value if is_given(value) else env.get(name, default)

    settings = Settings(
        deadline=pick("deadline", deadline, DEFAULT_DEADLINE),
        stall_timeout=pick("stall_timeout", stall_timeout, DEFAULT_STALL_TIMEOUT),
        backoff=backoff if is_given(backoff) else DEFAULT_BACKOFF,
    )
    budget = retry_budget if is_given(retry_budget) else RetryBudgetConfig()
    if not isinstance(budget, RetryBudgetConfig):
        reject(CLIENT, "retry_budget", retry_budget, "a RetryBudgetConfig")
    if is_given(limits) and not isinstance(limits, Limits):
        reject(CLIENT, "limits", limits, "a Limits")
    concurrency = pick("max_concurrency", max_concurrency, DEFAULT_MAX_CONCURRENCY)
    engine_args: dict[str, Any] = {
        "max_concurrency": None if concurrency is None else check_setting("max_concurrency", concurrency),
        "ramp_up": check_setting("ramp_up", pick("ramp_up", ramp_up, DEFAULT_RAMP_UP)),
        "rate_limit": resolve_rate_limit(rate_limit, env),
        "breaker": resolve_breaker(breaker, env),
        "retry_budget": budget,
        "limits": limits if isinstance(limits, Limits) else DEFAULT_LIMITS,
        "hooks": tuple(hooks),
        "coordination": resolve_coordination(coordination, env),
        "hedge_slowdown": _optional(
            "hedge_slowdown", pick("hedge_slowdown", hedge_slowdown, DEFAULT_HEDGE_SLOWDOWN)
        ),
    }
    return settings, engine_args


def _optional(name: str, value: Any) -> Any:
    """A setting that ``None`` switches off, else checked."""
    return None if value is None else check_setting(name, value)


def _iterable(value: object) -> bool:
    return is_given(value) and value is not None and not isinstance(value, (str, bytes, list, tuple))


def _base_url_of(base_url: Any, replicas: tuple[str, ...]) -> str:
    """``base_url`` when it is one of ``replicas`` (else a :class:`ConfigError`), or the first replica."""
    if base_url is None:
        return replicas[0]
    if str(base_url).strip().rstrip("/") not in replicas:
        raise ConfigError(
            f"base_url {mask_url(str(base_url))!r} is not one of the replicas "
            f"({', '.join(repr(mask_url(u)) for u in replicas)}): give it among them, or leave it out"
        )
    return str(base_url)


def _stream_under_the_hood(body: dict[str, Any], route: _Route) -> None:
    body["stream"] = True
    if route.usage_option:
        options = body.get("stream_options")
        body["stream_options"] = (
            {**options, "include_usage": True} if isinstance(options, dict) and options else _INCLUDE_USAGE
        )


def _plain(value: Any) -> Any:
    """What openai's request transform does to a value the fast path sends as JSON.

    Iterables that are not sequences (generators, ``dict_values``...) become lists; everything else is
    left to the JSON encoder (which also serialises pydantic models, as openai's transform does).
    """
    if isinstance(value, (str, bytes, list, tuple, dict, int, float, bool)) or value is None:
        return value
    if isinstance(value, Iterable) and not isinstance(value, Mapping) and not hasattr(value, "model_dump"):
        return [_plain(v) for v in value]
    return value


_ROUTES = _routes()

__all__ = ["AsyncOpenAI"]
