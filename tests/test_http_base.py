"""The HTTP contract's helpers: request/response descriptions without credentials, request preparation,
and the response that hands our decoded, limited event bytes to openai's own stream parser."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import anyio
import pytest
from openai._streaming import SSEDecoder

from resilient_llm._compat import httpx_flavour
from resilient_llm._exceptions import ConfigError
from resilient_llm._http._base import describe_request, describe_response, prepare, stream_response
from resilient_llm._sse import EventReader

pytestmark = pytest.mark.timeout(10)

KEY = "sk-base-0123456789"


def test_described_requests_carry_no_credentials() -> None:
    headers = {"Authorization": f"Bearer {KEY}", "api-key": KEY, "X-Api-Key": KEY, "content-type": "a/b"}
    request = describe_request("POST", "http://alice:pw1234@h:1/v1/x?key=secret", headers)
    assert str(request.url) == "http://***@h:1/v1/x?***"
    assert dict(request.headers).keys() >= {"content-type"}
    assert KEY not in repr(dict(request.headers))


def test_described_responses_drop_content_encoding_of_decoded_bodies() -> None:
    response = describe_response(
        502, {"content-encoding": "gzip", "x-a": "1"}, describe_request("GET", "http://h/"), b"ok"
    )
    assert response.content == b"ok" and "content-encoding" not in response.headers


def test_prepare_moves_url_credentials_to_basic_auth_and_offers_only_what_we_decode() -> None:
    url, headers = prepare("http://alice:pw1234@h:1/v1", {"Authorization": f"Bearer {KEY}", "X-A": " v "})
    assert url == "http://h:1/v1"
    assert headers["authorization"] == "Basic " + base64.b64encode(b"alice:pw1234").decode()
    assert headers["accept-encoding"] == "gzip, deflate"
    assert headers["x-a"] == "v"
    with pytest.raises(ConfigError, match="x-a"):
        prepare("http://h/", {"X-A": "a\x00b"})


class FakeRaw:
    status = 200
    headers: Mapping[str, str] = {"content-type": "text/event-stream", "content-encoding": "gzip"}

    def __init__(self, body: list[bytes]) -> None:
        self._body = iter(body)
        self.closed = False

    async def read_some(self) -> bytes:
        return next(self._body, b"")

    async def aclose(self) -> None:
        self.closed = True


class EventBytes(httpx_flavour.AsyncByteStream):  # type: ignore[misc,name-defined]
    """``EventReader.read_bytes`` until ``b""``; closing it closes the response."""

    def __init__(self, reader: EventReader, raw: FakeRaw) -> None:
        self._reader, self._raw = reader, raw

    async def __aiter__(self) -> Any:
        while chunk := await self._reader.read_bytes():
            yield chunk

    async def aclose(self) -> None:
        await self._raw.aclose()


def test_stream_response_feeds_openais_decoder_with_our_events() -> None:
    async def main() -> tuple[list[tuple[str | None, str]], bool, str | None]:
        raw = FakeRaw([b"data: 1\r\n\r\nevent: e\ndata: 2\n", b"\ndata: [DONE]\n\n"])
        reader = EventReader(raw.read_some)
        body = EventBytes(reader, raw)
        response = stream_response(raw, describe_request("POST", "http://h/"), body)  # type: ignore[arg-type]
        events = [(e.event, e.data) async for e in SSEDecoder().aiter_bytes(response.aiter_bytes())]
        await response.aclose()
        return events, raw.closed, response.headers.get("content-encoding")

    events, closed, encoding = anyio.run(main)
    assert events == [(None, "1"), ("e", "2"), (None, "[DONE]")]
    assert closed and encoding is None
