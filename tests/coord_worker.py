"""One OS process of a fleet for tests/test_coord_processes.py (run as ``python -m tests.coord_worker``).

``calls``: run CALLS chat completions against SIM, CONCURRENCY at a time, each under the global limit
LIMIT shared through REDIS; print one JSON line with what happened. ``hold``: take LIMIT leases, print
``HELD`` and wait to be killed. ``client`` and ``client-hold``: the same through the library's own
client, ``resilient_llm.AsyncOpenAI(coordination=..., max_concurrency=LIMIT)`` (``client-hold`` starts
LIMIT calls that take TOKENS tokens each and waits to be killed).
"""

from __future__ import annotations

import argparse
import json
import sys

import anyio
import httpx

from resilient_llm import AsyncOpenAI
from resilient_llm._coord import CoordinationConfig, Coordinator

BODY = {"model": "openai/gpt-oss-20b", "messages": [{"role": "user", "content": "Solve the puzzle."}]}


async def calls(args: argparse.Namespace, coordinator: Coordinator) -> dict[str, object]:
    limit = coordinator.concurrency_limit("sim", limit=args.limit)
    ok, errors = 0, []
    todo = iter(range(args.calls))

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal ok
        for _ in todo:
            lease = await limit.acquire(deadline=anyio.current_time() + 30)
            try:
                response = await client.post(args.sim + "/v1/chat/completions", json=BODY)
                response.raise_for_status()
                ok += 1
            except httpx.HTTPError as exc:
                errors.append(repr(exc))
            finally:
                limit.release(lease)

    async with httpx.AsyncClient(timeout=30) as client, anyio.create_task_group() as tg:
        for _ in range(args.concurrency):
            tg.start_soon(worker, client)
    return {"ok": ok, "errors": errors, "fleet_size": coordinator.fleet_size}


async def hold(args: argparse.Namespace, coordinator: Coordinator) -> None:
    limit = coordinator.concurrency_limit("sim", limit=args.limit)
    for _ in range(args.limit):
        await limit.acquire(deadline=anyio.current_time() + 10)
    print("HELD", flush=True)
    await anyio.sleep_forever()


def library_client(args: argparse.Namespace, config: CoordinationConfig) -> AsyncOpenAI:
    return AsyncOpenAI(
        api_key="EMPTY",
        base_url=args.sim + "/v1",
        coordination=config,
        max_concurrency=args.limit,
        ramp_up=0,
        deadline=30,
    )


async def client_calls(args: argparse.Namespace, config: CoordinationConfig) -> dict[str, object]:
    client = library_client(args, config)
    ok, errors = 0, []
    todo = iter(range(args.calls))

    async def worker() -> None:
        nonlocal ok
        for _ in todo:
            try:
                await client.chat.completions.create(
                    **BODY, extra_body={"simulator": {"output_tokens": args.tokens}}
                )
                ok += 1
            except Exception as exc:
                errors.append(repr(exc))

    try:
        async with anyio.create_task_group() as tg:
            for _ in range(args.concurrency):
                tg.start_soon(worker)
        stats = client.stats()
    finally:
        await client.close()
    return {"ok": ok, "errors": errors, "coordination": stats.coordination}


async def client_hold(args: argparse.Namespace, config: CoordinationConfig) -> None:
    client = library_client(args, config)
    async with anyio.create_task_group() as tg:
        for _ in range(args.limit):
            tg.start_soon(
                lambda: client.chat.completions.create(
                    **BODY, extra_body={"simulator": {"output_tokens": args.tokens}}
                )
            )
        while client.stats().in_flight < args.limit:
            await anyio.sleep(0.01)
        print("STARTED", flush=True)
        await anyio.sleep_forever()


async def main(args: argparse.Namespace) -> None:
    config = CoordinationConfig(
        url=args.redis,
        key_prefix=args.prefix,
        lease_ttl=args.lease_ttl,
        redis_timeout=args.redis_timeout,
        poll_interval=0.01,
    )
    if args.mode == "client":
        print(json.dumps(await client_calls(args, config)), flush=True)
        return
    if args.mode == "client-hold":
        await client_hold(args, config)
        return
    async with Coordinator(config) as coordinator:
        if args.mode == "hold":
            await hold(args, coordinator)
        else:
            print(json.dumps(await calls(args, coordinator)), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["calls", "hold", "client", "client-hold"])
    parser.add_argument("--redis", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--lease-ttl", type=float, default=3.0)
    parser.add_argument("--sim", default="")
    parser.add_argument("--calls", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--redis-timeout", type=float, default=0.1)
    anyio.run(main, parser.parse_args(sys.argv[1:]))
