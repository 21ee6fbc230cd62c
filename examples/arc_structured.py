"""The ARC pipeline's structured-output call, on resilient_llm.

    python examples/arc_structured.py                                      # simulated vLLM, in-process
    python examples/arc_structured.py --base-url http://127.0.0.1:8000/v1  # a real vLLM
    LOCAL_VLLM_URL=http://gpu-1:8000/v1 python examples/arc_structured.py  # as the pipeline does

The pattern of an ARC pipeline's ``structured.py`` against a local vLLM:

* one client per process, created at import time from ``LOCAL_VLLM_URL``;
* a pydantic structure requested with ``response_format={"type": "json_object"}``;
* ``max_tokens`` raised 8000 → 12000 → 16000 → 20000 while the answer stops at ``finish_reason ==
  "length"`` (a cut answer is never valid JSON);
* the answer read from ``message.content``, or from vLLM's ``reasoning_content`` when ``content`` is
  empty (a reasoning model may put everything there);
* the JSON validated into the structure.

What resilient_llm changes is only the import. There is no process-wide semaphore (the client's
limiter replaces it), no hand-made stagger (the slow-start ramp replaces it) and no retry loop for
transport errors (the client retries them under its deadline and retry budget). The ``max_tokens``
ladder stays: it is the pipeline's decision, not a transport failure.

Without ``--base-url`` or ``LOCAL_VLLM_URL``, the script serves the library's simulated vLLM on a
free loopback port, 500 times faster than real time, and asks it for answers of chosen lengths so
that each rung of the ladder is used. The last call asks for an answer longer than the last rung *on
purpose*: the ladder must give up with ``StructureError`` instead of looping. The script says so, marks
that call ``EXPECTED FAILURE``, and exits 0 only when exactly the intended calls failed (1 otherwise).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, TypeVar

from openai import OpenAIError
from openai.types.chat import ChatCompletionMessage
from pydantic import BaseModel, ValidationError

from resilient_llm import AsyncOpenAI
from resilient_llm.testing import SimulatorConfig, VLLMSimulator

MODEL = "openai/gpt-oss-20b"
MAX_TOKENS_LADDER = (8000, 12000, 16000, 20000)

StructureT = TypeVar("StructureT", bound=BaseModel)


# --- the structures the pipeline asks for ---------------------------------------------------------


class Instructions(BaseModel):
    """Step one: describe the transformation."""

    instructions: str


class Grid(BaseModel):
    """Step two: apply it to the test input."""

    grid: list[list[int]]


class RevisedInstructions(BaseModel):
    """Step three: fix instructions that failed on an example."""

    reasoning_for_why_old_instructions_are_wrong: str
    revised_instructions: str


# --- the client: created once, at import time --------------------------------------------------------


def make_client(base_url: str) -> AsyncOpenAI:
    # No timeout= and no max_retries=: the defaults bound every call by a deadline (1800 s) and cut a
    # server that goes silent for 60 s, never a generation that keeps producing tokens. Settings can be
    # tuned without code changes through RESILIENT_LLM_* environment variables.
    return AsyncOpenAI(api_key="EMPTY", base_url=base_url)


LOCAL_VLLM_URL = os.environ.get("LOCAL_VLLM_URL", "http://127.0.0.1:8000/v1")
# Nothing connects here: the connection pool and the metrics poller start with the first call, so a
# client made at import time, before any event loop exists, is fine.
local_vllm_client = make_client(LOCAL_VLLM_URL)


# --- one structured call, with the max_tokens ladder ------------------------------------------------


@dataclass
class CallReport:
    structure: str
    rungs: list[int]  # the max_tokens values tried
    seconds: float
    result: BaseModel | None = None
    error: str | None = None


class StructureError(ValueError):
    """Every rung of the ladder ended at ``max_tokens`` or with JSON that does not fit the structure."""


def answer_text(message: ChatCompletionMessage) -> str:
    """The answer: ``content``, or vLLM's ``reasoning_content`` when the model left ``content`` empty."""
    reasoning: str | None = getattr(message, "reasoning_content", None)  # vLLM's extra field
    return message.content or reasoning or ""


async def get_next_structure(
    structure: type[StructureT],
    messages: list[dict[str, Any]],
    *,
    extra_body: dict[str, Any] | None = None,
    rungs: list[int] | None = None,
) -> StructureT:
    """Ask for ``structure`` as a JSON object, raising ``max_tokens`` while the answer is cut off.

    Transport failures (timeouts, stalls, dropped connections, 5xx) are the client's to retry; they
    reach here only once its deadline, retries or retry budget ran out, and are not retried again.
    ``rungs``, when given, records the ``max_tokens`` values tried.
    """
    tried = rungs if rungs is not None else []
    problem = "no attempt made"
    for max_tokens in MAX_TOKENS_LADDER:
        tried.append(max_tokens)
        completion = await local_vllm_client.chat.completions.create(
            model=MODEL,
            messages=messages,
            response_format={"type": "json_object"},
            max_tokens=max_tokens,
            temperature=0.3,
            extra_body={"skip_special_tokens": True, **(extra_body or {})},
        )
        choice = completion.choices[0]
        if choice.finish_reason == "length":
            problem = f"the answer reached max_tokens={max_tokens}"
            continue
        try:
            return structure.model_validate_json(answer_text(choice.message))
        except ValidationError as exc:
            problem = f"the answer is not a valid {structure.__name__}: {exc.error_count()} error(s)"
    ladder = ", ".join(map(str, tried))
    raise StructureError(f"{structure.__name__}: {problem} (tried max_tokens {ladder})")


# --- the run: a few calls in parallel ----------------------------------------------------------------

#: (structure, answer length the simulator should produce): one call per rung of the ladder, and more.
SIMULATED_CALLS: list[tuple[type[BaseModel], int]] = [
    (Instructions, 900),
    (Grid, 2500),
    (RevisedInstructions, 9000),  # cut at 8000, done at 12000
    (Instructions, 13000),  # 8000, 12000, then 16000
    (Grid, 18000),  # every rung up to 20000
    (RevisedInstructions, 25000),  # longer than the last rung: the ladder gives up, on purpose
]


def prompt(structure: type[BaseModel], i: int) -> list[dict[str, Any]]:
    fields = ", ".join(structure.model_fields)
    return [
        {"role": "system", "content": "You solve ARC puzzles. Answer with one JSON object."},
        {"role": "user", "content": f"Puzzle {i}: return a JSON object with the keys {fields}."},
    ]


async def one_call(i: int, structure: type[BaseModel], simulated_tokens: int | None) -> CallReport:
    report = CallReport(structure=structure.__name__, rungs=[], seconds=0.0)
    extra = {"simulator": {"output_tokens": simulated_tokens}} if simulated_tokens is not None else None
    started = time.monotonic()
    try:
        report.result = await get_next_structure(
            structure, prompt(structure, i), extra_body=extra, rungs=report.rungs
        )
    except (StructureError, OpenAIError) as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    report.seconds = time.monotonic() - started
    return report


def describe(result: BaseModel) -> str:
    parts = []
    for name, value in result.model_dump().items():
        text = repr(value)
        parts.append(f"{name}={text[:40] + '...' if len(text) > 40 else text}")
    return " ".join(parts)


async def run(simulated: bool) -> int:
    calls = [(structure, tokens if simulated else None) for structure, tokens in SIMULATED_CALLS]
    meant_to_fail = {i for i, (_, n) in enumerate(calls) if n is not None and n > MAX_TOKENS_LADDER[-1]}
    for i in sorted(meant_to_fail):
        print(
            f"call {i} asks for a {calls[i][1]}-token answer, longer than the last rung "
            f"({MAX_TOKENS_LADDER[-1]}): it is meant to fail with StructureError"
        )
    async with local_vllm_client:
        reports = await asyncio.gather(*(one_call(i, s, n) for i, (s, n) in enumerate(calls)))
        stats = local_vllm_client.stats()
    for i, r in enumerate(reports):
        ladder = " -> ".join(map(str, r.rungs))
        if r.result is not None:
            outcome = describe(r.result)
        else:
            outcome = f"{'EXPECTED FAILURE' if i in meant_to_fail else 'FAILED'} {r.error}"
        print(f"call {i} {r.structure:<19} max_tokens {ladder:<34} {r.seconds:5.2f}s  {outcome}")
    print(
        f"client: {stats.calls} calls, {stats.calls_ok} answered, {stats.retries} retried, "
        f"{stats.calls_failed} failed; breaker {stats.breaker_state}"
    )
    failed = {i for i, r in enumerate(reports) if r.result is None}
    parsed = len(reports) - len(failed)
    if failed == meant_to_fail:
        print(f"OK: {parsed} of {len(reports)} structures parsed; {len(failed)} failed as intended")
        return 0
    print(
        f"UNEXPECTED: {parsed} of {len(reports)} structures parsed; failed {sorted(failed)}, "
        f"meant to fail {sorted(meant_to_fail)}"
    )
    return 1


async def main() -> int:
    global local_vllm_client
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--base-url", help="a vLLM server, e.g. http://127.0.0.1:8000/v1 (default: $LOCAL_VLLM_URL)"
    )
    parser.add_argument(
        "--time-scale", type=float, default=0.002, help="the simulator's real seconds per second"
    )
    args = parser.parse_args()
    base_url = args.base_url or os.environ.get("LOCAL_VLLM_URL")
    async with contextlib.AsyncExitStack() as stack:
        if base_url is None:
            config = SimulatorConfig(model=MODEL, time_scale=args.time_scale)
            sim = await stack.enter_async_context(VLLMSimulator(config))
            base_url = sim.base_url
            print(f"serving a simulated vLLM at {base_url} (time scale {args.time_scale:g})")
        if base_url != LOCAL_VLLM_URL:
            # The pipeline sets LOCAL_VLLM_URL before it starts; this script learns the URL later, so the
            # module-level client is re-pointed once, before any call.
            local_vllm_client = make_client(base_url)
        return await run(simulated=args.base_url is None and "LOCAL_VLLM_URL" not in os.environ)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
