"""The own-cost benchmark: its instant transport gives the stub's answer, and a short run reports."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from benchmarks import bench_own_cost
from resilient_llm._assemble import ChatAssembler
from resilient_llm._json import loads
from resilient_llm._sse import parse_event


def test_the_instant_answer_reassembles_to_the_benchmarks_text() -> None:
    assembler = ChatAssembler()
    for block in bench_own_cost.answer_body().split(b"\n\n"):
        event = parse_event(block) if block else None
        if event is not None and event[1] != b"[DONE]":
            assembler.feed(loads(event[1]))
    body = assembler.result()
    assert body["choices"][0]["message"]["content"] == bench_own_cost.ANSWER
    assert body["usage"]["completion_tokens"] == 4


@pytest.mark.timeout(60)
def test_the_instant_response_gives_its_body_once() -> None:
    async def main() -> list[bytes]:
        response = bench_own_cost.InstantResponse(b"abc")
        return [await response.read_some(), await response.read_some()]

    assert asyncio.run(main()) == [b"abc", b""]


@pytest.mark.timeout(120)
def test_a_short_run_reports_every_gc_mode(tmp_path: Path) -> None:
    output = tmp_path / "own-cost.json"
    code = bench_own_cost.main(
        ["--concurrency", "8", "--calls", "64", "--rounds", "2", "--output", str(output)]
    )
    assert code == 0
    document = json.loads(output.read_text())
    assert set(document["results"]) == set(bench_own_cost.GC_MODES)
    for entry in document["results"].values():
        assert len(entry["rounds_us"]) == 2 and entry["median_us"] > 0


@pytest.mark.parametrize("flag", ["--concurrency", "--calls", "--rounds"])
def test_counts_below_one_are_refused(flag: str) -> None:
    with pytest.raises(SystemExit):
        bench_own_cost.main([flag, "0"])
