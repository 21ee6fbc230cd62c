"""The examples run: each as a subprocess against its in-process simulator, bounded by a timeout.

Each test checks the exit status and the lines that show the example did what it says (a streamed call,
a parsed structure, every rung of the ``max_tokens`` ladder, the counters of ``client.stats()``).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resilient_llm.testing import SimulatorConfig, SimulatorThread

from ._fixtures import OPENAI_SETS_RESOURCES_IN_INIT, RESOURCES_HIDDEN

pytestmark = [pytest.mark.integration]

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Real seconds an example may take; each finishes in a few seconds on a laptop.
RUN_TIMEOUT = 60.0


def run_example(name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RESILIENT_LLM_", "LOCAL_VLLM_URL"))}
    clean.pop("OPENAI_BASE_URL", None)
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        env={**clean, **(env or {})},
        cwd=EXAMPLES.parent,
        check=False,
    )


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@pytest.mark.timeout(RUN_TIMEOUT + 10)
@pytest.mark.xfail(
    OPENAI_SETS_RESOURCES_IN_INIT, reason=RESOURCES_HIDDEN, strict=True
)  # chat.completions.parse
def test_quickstart_makes_a_call_a_streamed_call_and_a_parsed_call() -> None:
    result = run_example("quickstart.py")
    out = result.stdout
    assert result.returncode == 0, output_of(result)
    assert re.search(r"^\[create\] finish_reason=stop usage=\d+$", out, re.M), out
    assert re.search(r"^\[stream\] (\d+) chunks: '.+'$", out, re.M), out
    assert int(re.search(r"^\[stream\] (\d+) chunks", out, re.M).group(1)) > 1  # type: ignore[union-attr]
    # the simulator answers a json_schema format with an instance of the schema
    assert re.search(
        r"^\[parse\] instructions='.+' grid=\[\[\d+(, \d+)*\](, \[\d+(, \d+)*\])*\]$", out, re.M
    ), out
    assert "[stats] calls=3 ok=3 attempts=3 breaker=closed" in out


@pytest.mark.timeout(RUN_TIMEOUT + 10)
def test_stats_and_metrics_shows_retries_the_orphan_and_the_counters() -> None:
    result = run_example("stats_and_metrics.py")
    out = result.stdout
    assert result.returncode == 0, output_of(result)
    assert "24 of 24 calls answered; 0 failed" in out
    # The scripted faults: a 503 and a dropped connection are retried, the ghost is aborted and retried.
    assert len(re.findall(r"^  RetryScheduled\(retry=\d", out, re.M)) >= 3, out
    assert "reason='APIConnectionError'" in out
    ghost_caught = "resilient_llm_orphans_total 1.0" in out or "resilient_llm_stalls_total 1.0" in out
    assert ghost_caught, out
    # The stats lines while the calls run: the ramp starts at one call in flight and reaches eight.
    capacities = [int(c) for c in re.findall(r"^t=.* capacity=(\d+) ", out, re.M)]
    assert capacities[0] == 1 and max(capacities) == 8, capacities
    assert re.search(r"^  calls_ok\s+24$", out, re.M), out
    assert 'resilient_llm_calls_total{outcome="ok"} 24.0' in out
    assert 'resilient_llm_breaker_state{state="closed"} 1.0' in out
    # The logger's lines go to stdout in this example.
    assert "resilient_llm INFO retrying " in out


@pytest.mark.timeout(RUN_TIMEOUT + 10)
def test_arc_structured_climbs_the_max_tokens_ladder() -> None:
    result = run_example("arc_structured.py")
    out = result.stdout
    assert result.returncode == 0, output_of(result)
    calls = re.findall(r"^call (\d) (\w+)\s+max_tokens ([\d >-]+?)\s+\d+\.\d\ds  (.*)$", out, re.M)
    assert len(calls) == 6, out
    ladders = {int(i): rungs.split(" -> ") for i, _, rungs, _ in calls}
    assert ladders[0] == ["8000"] and ladders[1] == ["8000"]
    assert ladders[2] == ["8000", "12000"]
    assert ladders[3] == ["8000", "12000", "16000"]
    assert ladders[4] == ladders[5] == ["8000", "12000", "16000", "20000"]
    outcomes = {int(i): outcome for i, _, _, outcome in calls}
    assert outcomes[1] == "grid=[[0, 1, 2], [2, 1, 0], [1, 1, 1]]"
    assert outcomes[4] == "grid=[[0, 1, 2], [2, 1, 0], [1, 1, 1]]"
    # The last call fails on purpose, and the output says so before and after.
    assert (
        "call 5 asks for a 25000-token answer, longer than the last rung (20000): it is meant to fail" in out
    )
    assert outcomes[5].startswith(
        "EXPECTED FAILURE StructureError: RevisedInstructions: the answer reached max_tokens=20000"
    )
    assert all("FAILED" not in outcomes[i] for i in range(5))
    assert "client: 15 calls, 15 answered, 0 retried, 0 failed; breaker closed" in out
    assert out.rstrip().endswith("OK: 5 of 6 structures parsed; 1 failed as intended")


def test_every_example_has_a_test() -> None:
    tested = {"quickstart.py", "stats_and_metrics.py", "arc_structured.py"}
    assert {path.name for path in EXAMPLES.glob("*.py")} == tested, "run the new example in a test here"


@pytest.mark.timeout(RUN_TIMEOUT + 20)
@pytest.mark.parametrize("how", ["--base-url", "LOCAL_VLLM_URL"])
def test_arc_structured_uses_the_server_it_is_given(how: str) -> None:
    with SimulatorThread(SimulatorConfig(time_scale=0.01, output_tokens=300)) as sim:
        if how == "--base-url":
            result = run_example("arc_structured.py", "--base-url", sim.base_url)
        else:
            result = run_example("arc_structured.py", env={"LOCAL_VLLM_URL": sim.base_url})
        received = sim.stats().requests_received
    out = result.stdout
    assert result.returncode == 0, output_of(result)
    assert "serving a simulated vLLM" not in out
    assert "meant to fail" not in out and "FAILED" not in out  # nothing fails on purpose here
    # Answers of 300 tokens: every call is done at the first rung, and every call reached this server.
    assert len(re.findall(r"^call \d \w+\s+max_tokens 8000\s", out, re.M)) == 6, out
    assert received == 6
