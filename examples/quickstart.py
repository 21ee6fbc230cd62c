"""A first call, a streamed call and ``parse()`` with resilient_llm.

    python examples/quickstart.py                                   # against a simulated vLLM, in-process
    python examples/quickstart.py --base-url http://127.0.0.1:8000/v1   # against a real server

The only change from code written for openai-python is the import. Without ``--base-url`` the script
serves the library's simulated vLLM (``resilient_llm.testing.VLLMSimulator``) on a free loopback port
for the length of the run, 100 times faster than real time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys

from pydantic import BaseModel

from resilient_llm import AsyncOpenAI, OpenAIError
from resilient_llm.testing import SimulatorConfig, VLLMSimulator

MODEL = "openai/gpt-oss-20b"


class Rule(BaseModel):
    """What ``parse()`` turns the answer into."""

    instructions: str
    grid: list[list[int]]


async def first_call(client: AsyncOpenAI, model: str) -> None:
    reply = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Describe the grid transformation in one sentence."}],
        max_tokens=400,
    )
    choice = reply.choices[0]
    print(f"[create] finish_reason={choice.finish_reason} usage={reply.usage and reply.usage.total_tokens}")
    print(f"[create] content: {(choice.message.content or '')[:100]!r}")
    if choice.message.reasoning:
        print(f"[create] reasoning: {choice.message.reasoning[:60]!r}")


async def streamed_call(client: AsyncOpenAI, model: str) -> None:
    stream = await client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "Count the shapes in the grid."}],
        max_tokens=100,
        stream=True,
    )
    chunks, text = 0, []
    async with stream:  # leaving the block closes the connection, even on an error
        async for chunk in stream:
            chunks += 1
            if chunk.choices and chunk.choices[0].delta.content:
                text.append(chunk.choices[0].delta.content)
    print(f"[stream] {chunks} chunks: {''.join(text)[:100]!r}")


async def parsed_call(client: AsyncOpenAI, model: str) -> None:
    completion = await client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Give the rule and the output grid as JSON."}],
        response_format=Rule,
        max_tokens=400,
    )
    rule = completion.choices[0].message.parsed
    assert rule is not None
    print(f"[parse] instructions={rule.instructions[:60]!r} grid={rule.grid}")


async def run(base_url: str, api_key: str, model: str) -> None:
    async with AsyncOpenAI(base_url=base_url, api_key=api_key) as client:
        await first_call(client, model)
        await streamed_call(client, model)
        await parsed_call(client, model)
        s = client.stats()
        print(f"[stats] calls={s.calls} ok={s.calls_ok} attempts={s.attempts} breaker={s.breaker_state}")


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", default=MODEL)
    args = parser.parse_args()
    api_key = os.environ.get("OPENAI_API_KEY", "EMPTY")
    async with contextlib.AsyncExitStack() as stack:
        base_url = args.base_url
        if base_url is None:
            sim = await stack.enter_async_context(
                VLLMSimulator(SimulatorConfig(model=args.model, time_scale=0.01))
            )
            base_url = sim.base_url
            print(f"serving a simulated vLLM at {base_url}")
        try:
            await run(base_url, api_key, args.model)
        except OpenAIError as exc:
            print(f"failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
