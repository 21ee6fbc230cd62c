"""Opt-in checks against a real vLLM server: set RESILIENT_LLM_REAL_VLLM_URL (e.g. http://127.0.0.1:8041/v1).

``scripts/setup-real-vllm.sh`` installs and serves one on a CPU (see docs/real-vllm.md). Other clients may
share the server, so load assertions are "at least", never "exactly".
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from rich.console import Console

from resilient_llm._load import ServerLoad
from resilient_llm._vllm._metrics import metrics_url, parse_metrics, parse_metrics_by_engine, server_root_url
from resilient_llm.cli import _probe

URL = os.environ.get("RESILIENT_LLM_REAL_VLLM_URL", "")

pytestmark = [
    pytest.mark.realvllm,
    pytest.mark.skipif(not URL, reason="set RESILIENT_LLM_REAL_VLLM_URL to run against a real vLLM server"),
]


@pytest.fixture(scope="module")
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(30.0, connect=5.0)) as client:
        yield client


@pytest.fixture(scope="module")
def model(http: httpx.Client) -> str:
    data = http.get(f"{server_root_url(URL)}/v1/models").json()["data"]
    name: str = data[0]["id"]
    return name


def scrape(http: httpx.Client) -> ServerLoad:
    response = http.get(metrics_url(URL))
    assert response.status_code == 200
    load = parse_metrics(response.text, scraped_at=time.monotonic())
    assert load is not None, "the server's /metrics has no vLLM request gauges"
    return load


def wait_for(http: httpx.Client, predicate: Any, *, within: float, every: float = 0.25) -> ServerLoad:
    deadline = time.monotonic() + within
    while True:
        load = scrape(http)
        if predicate(load) or time.monotonic() > deadline:
            return load
        time.sleep(every)


def chat(model: str, *, max_tokens: int, stream: bool, **extra: Any) -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Tell me about the sea."}],
        "max_tokens": max_tokens,
        "stream": stream,
        **extra,
    }


# --- metrics ------------------------------------------------------------------------------------------


def test_metrics_parse(http: httpx.Client) -> None:
    text = http.get(metrics_url(URL)).text
    load = parse_metrics(text, scraped_at=1.0)
    assert load is not None
    assert load.engines >= 1
    assert load.kv_cache_usage is not None
    assert 0.0 <= load.kv_cache_usage <= 1.0
    engines = parse_metrics_by_engine(text, scraped_at=1.0)
    assert engines is not None
    assert len(engines) == load.engines


def test_metrics_parse_is_cheap_on_a_real_scrape(http: httpx.Client) -> None:
    text = http.get(metrics_url(URL)).text
    start = time.perf_counter()
    for _ in range(20):
        parse_metrics(text, scraped_at=0.0)
    assert (time.perf_counter() - start) / 20 < 0.005


@pytest.mark.timeout(180)
def test_metrics_count_a_burst_eventually(http: httpx.Client, model: str) -> None:
    # Requests become visible in /metrics only when the engine step that schedules them ends: on a CPU
    # that took seconds for a burst. Eventually every request of ours is counted.
    n = 8
    before = scrape(http).active

    def one(_: int) -> int:
        with httpx.Client(timeout=120) as client:
            return client.post(
                f"{server_root_url(URL)}/v1/chat/completions", json=chat(model, max_tokens=64, stream=False)
            ).status_code

    with ThreadPoolExecutor(n) as pool:
        futures = [pool.submit(one, i) for i in range(n)]
        peak = wait_for(http, lambda load: load.active >= n, within=60)
        statuses = [f.result() for f in futures]
    assert statuses == [200] * n
    assert peak.active >= n, f"the server never counted our {n} requests (saw {peak}, {before} before)"


# --- probe --------------------------------------------------------------------------------------------


def test_probe(model: str) -> None:
    report = _probe.probe(URL, timeout=5.0, max_waiting=10_000, max_kv=1.0)
    assert report.status == "healthy", report
    assert report.health == 200
    assert report.version
    assert any(name.startswith(model) for name in report.models)
    assert report.total is not None
    assert report.engines is not None


def test_probe_cli_json() -> None:
    parser = argparse.ArgumentParser()
    _probe.add_parser(parser.add_subparsers(dest="command"))
    out = io.StringIO()
    code = _probe.run(
        parser.parse_args(["probe", URL, "--json", "--timeout", "5"]), console=Console(file=out)
    )
    doc = json.loads(out.getvalue())
    assert code in (0, 2)
    assert doc["health"] == 200
    assert doc["total"]["engines"] >= 1


# --- what the client library relies on ---------------------------------------------------------------


def test_error_bodies(http: httpx.Client, model: str) -> None:
    root = server_root_url(URL)
    unknown = http.post(f"{root}/v1/chat/completions", json=chat("no-such-model", max_tokens=4, stream=False))
    assert unknown.status_code == 404
    assert set(unknown.json()["error"]) == {"message", "type", "param", "code"}
    too_long = http.post(f"{root}/v1/chat/completions", json=chat(model, max_tokens=10_000_000, stream=True))
    assert too_long.status_code == 400
    assert too_long.headers["content-type"].startswith("application/json")
    assert too_long.json()["error"]["param"] == "max_tokens"


def test_stream_shape(http: httpx.Client, model: str) -> None:
    body = chat(model, max_tokens=4, stream=True, stream_options={"include_usage": True})
    with http.stream("POST", f"{server_root_url(URL)}/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [line[len("data: ") :] for line in response.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == 4
    assert chunks[-2]["choices"][0]["finish_reason"] == "length"


@pytest.mark.timeout(120)
def test_client_disconnect_aborts_the_request(http: httpx.Client, model: str) -> None:
    baseline = scrape(http).active
    body = chat(model, max_tokens=4000, stream=True, ignore_eos=True)
    with httpx.Client(timeout=60) as client:
        with client.stream("POST", f"{server_root_url(URL)}/v1/chat/completions", json=body) as response:
            for line in response.iter_lines():
                if line.startswith("data: "):
                    break  # first chunk: the request is running
            during = wait_for(http, lambda load: load.active > baseline, within=20)
    assert during.active > baseline
    after = wait_for(http, lambda load: load.active <= baseline, within=20)
    assert after.active <= baseline, "the server kept generating for a client that went away"


# --- the client -----------------------------------------------------------------------------------------

import anyio  # noqa: E402

import resilient_llm  # noqa: E402
from resilient_llm import AsyncOpenAI  # noqa: E402


def run(coro_fn: Any) -> Any:
    return anyio.run(coro_fn, backend="asyncio")


def test_client_plain_streamed_and_json_object(model: str) -> None:
    async def main() -> None:
        async with AsyncOpenAI(base_url=URL, api_key="EMPTY") as client:
            r = await client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": "Say hi."}], max_tokens=16, temperature=0
            )
            assert r.choices[0].message.content
            assert r.usage is not None and r.usage.completion_tokens <= 16
            assert r.choices[0].finish_reason in ("stop", "length")
            stream = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Say hi."}],
                max_tokens=16,
                stream=True,
                stream_options={"include_usage": True},
            )
            async with stream:
                chunks = [c async for c in stream]
            assert chunks[0].choices[0].delta.role == "assistant"
            assert chunks[-1].usage is not None
            j = await client.chat.completions.create(
                model=model,
                messages=[{"role": "user", "content": "Reply with a JSON object."}],
                max_tokens=32,
                response_format={"type": "json_object"},
                extra_body={"skip_special_tokens": True},
            )
            assert j.choices[0].message.content is not None
            page = await client.models.list()
            assert [m.id for m in page.data] == [model]

    run(main)


def test_client_errors_are_typed_and_not_retried(model: str) -> None:
    async def main() -> None:
        async with AsyncOpenAI(base_url=URL, api_key="EMPTY") as client:
            with pytest.raises(resilient_llm.BadRequestError) as info:
                await client.chat.completions.create(
                    model=model, messages=[{"role": "user", "content": "x"}], max_tokens=10**6
                )
            assert info.value.status_code == 400
            with pytest.raises(resilient_llm.NotFoundError):
                await client.chat.completions.create(
                    model="no-such-model", messages=[{"role": "user", "content": "x"}]
                )
            assert client.stats().retries == 0

    run(main)


def test_client_burst_reads_metrics_and_aborts_no_healthy_request(model: str) -> None:
    """32 calls at once: every one completes, the breaker reads /metrics, and the orphan rule — facing the
    real server's lagging counts — aborts nothing."""

    async def main() -> None:
        async with AsyncOpenAI(base_url=URL, api_key="EMPTY") as client:
            results: list[Any] = []

            async def one() -> None:
                r = await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "Tell me about the sea."}],
                    max_tokens=48,
                )
                results.append(r)

            async with anyio.create_task_group() as tg:
                for _ in range(32):
                    tg.start_soon(one)
            stats = client.stats()
            assert len(results) == 32
            assert stats.metrics_available
            assert stats.orphans == 0 and stats.stalls == 0 and stats.calls_failed == 0

    run(main)


def test_client_deadline_ends_a_long_generation_and_the_server_aborts_it(
    http: httpx.Client, model: str
) -> None:
    async def main() -> float:
        async with AsyncOpenAI(base_url=URL, api_key="EMPTY", deadline=2) as client:
            start = time.monotonic()
            with pytest.raises(resilient_llm.DeadlineExceeded):
                await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "user", "content": "Write a long story."}],
                    max_tokens=2000,
                    extra_body={"ignore_eos": True},
                )
            return time.monotonic() - start

    took = run(main)
    assert 1.7 <= took <= 2.5
    load = wait_for(http, lambda ld: ld.running == 0, within=5)
    assert load.running == 0  # the disconnect aborted the generation
