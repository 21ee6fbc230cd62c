"""The two ways an attempt reaches the server, and how its answer becomes openai's result.

* :class:`FastPlan` — the library's own I/O, for the endpoints that produce answers (chat
  completions, completions, responses, embeddings): aiohttp on asyncio, the silence limit on every
  read, non-streaming answers streamed under the hood and reassembled. Its result is exactly what
  openai's path returns, built by openai's own machinery:

  - :class:`ModelResult` (the resource fast path, ``create`` without raw-response wrappers): the
    body validated into openai's type (openai's lenient ``construct_type`` when the server sent
    something the type does not declare), ``_request_id`` set; streams are openai's ``AsyncStream``;
  - :class:`SdkResult` (everything that reaches ``AsyncOpenAI.request``: ``with_raw_response``,
    ``parse``, the ``.stream()`` helpers...): a response of openai's httpx flavour handed to openai's
    ``_process_response``, so raw responses, post-parsers and stream classes are openai's own.

* :class:`SdkPlan` — every other request (files, batches, audio, models, ``client.get``...) goes
  through openai-python's own request path, one attempt at a time with openai's retries off: the
  engine owns the retry loop, the deadline and the limits.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

import anyio
import anyio.lowlevel
import openai
import pydantic

from ._attempt import (
    OFF_LOOP_DECODE_BYTES,
    Assembler,
    Attempt,
    OpenedStream,
    Request,
    open_stream,
    read_assembled,
    read_json,
)
from ._compat import (
    OVERRIDE_CAST_TO_HEADER,
    RAW_RESPONSE_HEADER,
    add_request_id,
    construct_type,
    httpx_flavour,
)
from ._config import is_given
from ._exceptions import APIResponseValidationError, ServerUnreachable
from ._http._base import RawResponse, describe_request, stream_response
from ._json import dumps
from ._secrets import mask_url
from ._streaming import SilenceByteStream, resilient_stream_cls

if TYPE_CHECKING:
    from ._compat import FinalRequestOptions

Mode = Literal["json", "assemble", "stream"]


class FastPlan:
    """An attempt through the library's own transport (see the module docstring).

    ``home`` is the base URL ``request`` was built on (the client's); an attempt whose ``target`` is
    another replica's base URL is sent there with the same path and query. ``model``: the model asked for.
    """

    __slots__ = ("_path", "assembler", "deadline", "home", "mode", "model", "request", "result", "url")

    def __init__(
        self,
        request: Request,
        mode: Mode,
        result: ModelResult | SdkResult,
        *,
        deadline: float,
        assembler: Callable[[], Assembler] | None = None,
        home: str = "",
        model: str | None = None,
    ) -> None:
        self.request = request
        self.url = mask_url(request.url)
        self.mode = mode
        self.result = result
        self.deadline = deadline
        self.assembler = assembler
        self.home = home
        self.model = model if isinstance(model, str) else None
        self._path: str | None = None

    def _retarget(self, target: str) -> None:
        path = self._path
        if path is None:
            path = self._path = path_after(self.request.url, self.home)
        self.request.url = target + path

    def describe(self) -> Any:
        return describe_request(self.request.method, self.request.url)

    async def _copy(self, att: Attempt) -> tuple[RawResponse, dict[str, Any]]:
        """A hedged copy of an assembled call's request, on its own attempt (``_hedge.py``)."""
        req = self.request
        url = req.url
        if att.target is not None:
            path = self._path
            if path is None:
                path = self._path = path_after(req.url, self.home)
            url = att.target + path
        att.request = Request(req.method, url, req.headers, content=req.content)
        assert self.assembler is not None
        return await read_assembled(att, self.assembler())

    async def run(self, att: Attempt) -> Any:
        if att.target is not None:
            self._retarget(att.target)
        att.request = self.request
        if self.mode == "stream":
            opened = await open_stream(att)
            body = SilenceByteStream(
                opened, attempt=att, on_close=att.keep_slot(), deadline=self.deadline, attempts=att.number
            )
            try:
                return await self.result.stream(att, opened, body)
            except BaseException:
                await body.aclose()
                raise
        if self.mode == "assemble":
            assert self.assembler is not None
            copy = self._copy if att.hedger is not None else None
            raw, data = await read_assembled(att, self.assembler(), copy)
        else:
            raw, data = await read_json(att)
        return await self.result.body(att, raw, data)


def _response_headers(raw: RawResponse, content_type: str | None = None) -> list[tuple[str, str]]:
    """The server's headers, less those that described the body on the wire (it was decoded)."""
    headers = [(k, v) for k, v in raw.headers.items() if k.lower() not in _WIRE_ONLY]
    if content_type is not None:
        headers.append(("content-type", content_type))
    return headers


_WIRE_ONLY = frozenset({"content-encoding", "content-length", "transfer-encoding", "content-type"})


async def build_model(
    cast_to: type[Any], data: dict[str, Any], *, strict: bool, att: Attempt, raw: RawResponse
) -> Any:
    """openai's result type for ``data``, as openai builds it: validated into ``cast_to`` (openai's
    lenient ``construct_type`` where the server sent what the type does not declare, unless the client
    asked for strict validation). A large body is built in a worker thread, off the event loop."""

    def build() -> Any:
        try:
            return cast_to.model_validate(data)
        except pydantic.ValidationError as exc:
            if strict:
                response = httpx_flavour.Response(
                    raw.status, headers=_response_headers(raw), content=dumps(data), request=att.describe()
                )
                raise APIResponseValidationError(response, data) from exc
            return construct_type(type_=cast_to, value=data)

    if att.body_size > OFF_LOOP_DECODE_BYTES and not strict:
        return await _build_in_slices(cast_to, data, build)
    return build()


#: Items of a long list validated between two turns of the event loop (a few milliseconds' work).
_SLICE = 16


async def _build_in_slices(cast_to: type[Any], data: dict[str, Any], build: Callable[[], Any]) -> Any:
    """A large body built without holding the event loop: its long lists (embeddings, logprobs...) are
    validated a slice at a time, yielding in between (validation holds the GIL, so a thread would not
    help). Anything that does not fit the type falls back to openai's lenient build, as a whole."""
    fields = cast_to.model_fields
    long = {k: v for k, v in data.items() if isinstance(v, list) and len(v) > _SLICE and k in fields}
    if not long:
        return build()
    built: dict[str, list[Any]] = {}
    try:
        for name, items in long.items():
            adapter = _list_adapter(fields[name].annotation)
            out: list[Any] = []
            for start in range(0, len(items), _SLICE):
                out.extend(adapter.validate_python(items[start : start + _SLICE]))
                await anyio.lowlevel.checkpoint()
            built[name] = out
        result = cast_to.model_validate({**data, **{name: [] for name in long}})
    except pydantic.ValidationError:
        return construct_type(type_=cast_to, value=data)
    for name, items in built.items():
        setattr(result, name, items)
    return result


def _list_adapter(annotation: Any) -> pydantic.TypeAdapter[Any]:
    return pydantic.TypeAdapter(annotation)


class ModelResult:
    """openai's result type built straight from the decoded body (the resource fast path)."""

    __slots__ = ("cast_to", "client", "stream_cls", "strict")

    def __init__(self, client: Any, cast_to: type[Any], stream_cls: type[Any] | None) -> None:
        self.client = client
        self.cast_to = cast_to
        self.stream_cls = resilient_stream_cls(stream_cls)
        self.strict: bool = client._strict_response_validation

    async def body(self, att: Attempt, raw: RawResponse, data: dict[str, Any]) -> Any:
        result = await build_model(self.cast_to, data, strict=self.strict, att=att, raw=raw)
        add_request_id(result, raw.headers.get("x-request-id"))
        return result

    async def stream(self, att: Attempt, opened: OpenedStream, body: SilenceByteStream) -> Any:
        assert self.stream_cls is not None
        client = self.client
        response = stream_response(opened.raw, att.describe(), body)
        options = _stream_options(att)
        return await client._process_response(
            cast_to=self.cast_to,
            options=options,
            response=response,
            stream=True,
            stream_cls=self.stream_cls,
            retries_taken=att.number - 1,
        )


def _stream_options(att: Attempt) -> FinalRequestOptions:
    from ._compat import FinalRequestOptions

    req = att.request
    assert req is not None
    return FinalRequestOptions.construct(method=req.method.lower(), url=req.url)


class SdkResult:
    """openai's ``_process_response`` over a response of openai's httpx flavour (the options path)."""

    __slots__ = ("cast_to", "client", "http_request", "options", "stream_cls")

    def __init__(
        self,
        client: Any,
        cast_to: Any,
        options: FinalRequestOptions,
        stream_cls: type[Any] | None,
        http_request: Any,
    ) -> None:
        self.client = client
        self.cast_to = cast_to
        self.options = options
        self.stream_cls = resilient_stream_cls(stream_cls)
        self.http_request = http_request  # openai's own, with its headers (raw-response markers)

    async def body(self, att: Attempt, raw: RawResponse, data: dict[str, Any]) -> Any:
        if self._plain_model():  # what openai's parse would do, without re-encoding the body
            result = await build_model(
                self.cast_to, data, strict=self.client._strict_response_validation, att=att, raw=raw
            )
            post_parser = self.options.post_parser
            if is_given(post_parser):
                result = cast(Callable[[Any], Any], post_parser)(result)
            add_request_id(result, raw.headers.get("x-request-id"))
            return result
        response = httpx_flavour.Response(
            raw.status,
            headers=_response_headers(raw, "application/json"),
            content=dumps(data),
            request=self.http_request,
        )
        return await self.client._process_response(
            cast_to=self.cast_to,
            options=self.options,
            response=response,
            stream=False,
            stream_cls=None,
            retries_taken=att.number - 1,
        )

    def _plain_model(self) -> bool:
        """A parsed openai model is asked for (not a raw or streaming-response wrapper, nor another type)."""
        headers = self.http_request.headers
        if RAW_RESPONSE_HEADER in headers or OVERRIDE_CAST_TO_HEADER in headers:
            return False
        cast_to = self.cast_to
        return (
            inspect.isclass(cast_to)
            and issubclass(cast_to, pydantic.BaseModel)
            and not hasattr(cast_to, "build")  # openai's ModelBuilderProtocol types build themselves
        )

    async def stream(self, att: Attempt, opened: OpenedStream, body: SilenceByteStream) -> Any:
        response = stream_response(opened.raw, self.http_request, body)
        return await self.client._process_response(
            cast_to=self.cast_to,
            options=self.options,
            response=response,
            stream=True,
            stream_cls=self.stream_cls,
            retries_taken=att.number - 1,
        )


class SdkPlan:
    """An attempt through openai-python's own request path, its retries off."""

    __slots__ = ("_full_url", "cast_to", "client", "model", "options", "stream", "stream_cls", "url")

    def __init__(
        self,
        client: Any,
        cast_to: Any,
        options: FinalRequestOptions,
        stream: bool,
        stream_cls: type[Any] | None,
    ) -> None:
        self.client = client
        self.cast_to = cast_to
        self.options = options
        self.stream = stream
        self.stream_cls = resilient_stream_cls(stream_cls)
        url = options.url
        self._full_url = url if "://" in url else str(client.base_url).rstrip("/") + "/" + url.lstrip("/")
        self.url = mask_url(self._full_url)
        body = options.json_data
        model = body.get("model") if isinstance(body, Mapping) else None
        self.model = model if isinstance(model, str) else None

    def describe(self) -> Any:
        return describe_request(self.options.method.upper(), self._full_url)

    async def run(self, att: Attempt) -> Any:
        options = self.options.model_copy()
        options.max_retries = 0
        if att.target is not None and "://" not in options.url:  # to the replica the limiter chose
            options.url = att.target + "/" + options.url.lstrip("/")
        headers: Mapping[str, Any] = options.headers if isinstance(options.headers, Mapping) else {}
        if not any(k.lower() == "x-stainless-retry-count" for k in headers):
            options.headers = {**headers, "X-Stainless-Retry-Count": str(att.number - 1)}
        try:
            result = await openai.AsyncOpenAI.request(
                self.client, self.cast_to, options, stream=self.stream, stream_cls=self.stream_cls
            )
        except openai.APIStatusError:
            att.responded()
            raise
        except openai.APIConnectionError as exc:
            if type(exc) is openai.APIConnectionError and _refused(exc.__cause__):
                raise ServerUnreachable(
                    message=f"Cannot connect to {self.url}", request=self.describe()
                ) from None
            raise
        att.responded()
        return result


def path_after(url: str, home: str) -> str:
    """The path and query of ``url`` below the base URL ``home`` (``/chat/completions?x=1``)."""
    if url.startswith(home):
        return url[len(home) :]
    parts, base = urlsplit(url), urlsplit(home).path.rstrip("/")
    path = parts.path[len(base) :] if parts.path.startswith(base) else parts.path
    return path + (f"?{parts.query}" if parts.query else "")


def _refused(cause: BaseException | None) -> bool:
    """Whether openai's connection error came from a connection that could not be opened."""
    return cause is not None and type(cause).__name__ == "ConnectError"


__all__ = ["FastPlan", "Mode", "ModelResult", "SdkPlan", "SdkResult"]
