"""A chat burst against a running real vLLM: the official SDK vs ``resilient_llm``, default settings.

Issue 8 asks two things of a real server (the CPU recipe of ``scripts/setup-real-vllm.sh``):

1. **burst**: ``--calls`` (96) non-streaming chat calls sent at once take ``resilient_llm.AsyncOpenAI``
   no longer than ``openai.AsyncOpenAI``, both with default settings. Each run uses a fresh client
   (so ``resilient_llm``'s slow-start ramp is part of what is measured, as in a pipeline that starts),
   runs come in pairs of alternating order (official, resilient_llm, resilient_llm, official, ...;
   ``--runs`` of each: a server whose speed drifts over a session favours neither), the server is let go
   idle before each run (``/metrics``: nothing running or waiting), and the medians are compared.
2. **orphans**: a ``--orphan-calls`` (32) burst through ``resilient_llm`` with its defaults ends with
   every call ok and ``stats().orphans == 0`` and ``stats().stalls == 0``: the server's ``/metrics``
   counts a burst's arrivals late (seconds on a CPU), and that lag must not read as lost requests.

Every call is the same shape: a system prompt, an ARC-like grid (``--grid`` × ``--grid`` digits,
different per call), ``max_tokens`` (``--max-tokens``), ``temperature=0`` and vLLM's ``ignore_eos``
(``--no-ignore-eos`` to drop it), so every answer is exactly ``max_tokens`` long and both clients ask
the server for the same work. The defaults fit the served model's 8,192-token context and take tens
of seconds per 96-call burst on a 2-core CPU (issue 8 measured 42-46 s).

The server is not started here: start it (``scripts/setup-real-vllm.sh serve``), pass its URL, and
stop it afterwards. Nothing else should use the server during a run.

    python benchmarks/bench_real_vllm.py http://127.0.0.1:8041/v1
    python benchmarks/bench_real_vllm.py http://127.0.0.1:8041/v1 --runs 1 --only orphans
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks._machine import REPO_ROOT, command_line, describe, load_average, machine_info, write_results

DEFAULT_OUTPUT = REPO_ROOT / "benchmarks" / "results" / "real-vllm.json"
CLIENTS = ("openai", "resilient_llm")
LABELS = {"openai": "openai SDK (defaults)", "resilient_llm": "resilient_llm (defaults)"}
API_KEY = "EMPTY"
MAX_MODEL_LEN = 8192  # scripts/setup-real-vllm.sh serves with --max-model-len 8192
#: The issue's target: resilient_llm's median burst time ÷ the official SDK's.
TARGET = 1.0


def server_root(base_url: str) -> str:
    """``http://host:port`` of an OpenAI-style base URL (``.../v1``)."""
    url = base_url.rstrip("/")
    return url.removesuffix("/v1")


def get_text(url: str, timeout: float = 5.0) -> tuple[int, str]:
    """Status and body of a GET; status 0 when the server did not answer."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        return exc.code, ""
    except OSError:
        return 0, ""


def served_model(base_url: str) -> str | None:
    status, body = get_text(f"{base_url.rstrip('/')}/models")
    if status != 200:
        return None
    with contextlib.suppress(ValueError, KeyError, IndexError, TypeError):
        name: str = json.loads(body)["data"][0]["id"]
        return name
    return None


QUEUE_GAUGES = frozenset({"vllm:num_requests_running", "vllm:num_requests_waiting"})


def queue_depth_of(text: str) -> int | None:
    """``running + waiting`` summed over every series (one per engine) of a ``/metrics`` body, or
    None when it has neither gauge."""
    total, seen = 0.0, False
    for line in text.splitlines():
        name, _, rest = line.partition("{") if "{" in line.split(" ", 1)[0] else line.partition(" ")
        if name not in QUEUE_GAUGES:
            continue
        with contextlib.suppress(ValueError, IndexError):
            total += float(rest.rsplit(" ", 1)[1] if "}" in rest else rest.split()[0])
            seen = True
    return round(total) if seen else None


def queue_depth(root: str) -> int | None:
    """The server's ``running + waiting`` now, or None without vLLM gauges."""
    status, text = get_text(f"{root}/metrics")
    return queue_depth_of(text) if status == 200 else None


def wait_idle(root: str, *, timeout: float, settle: float) -> float:
    """Wait until the server shows nothing running or waiting (or ``timeout``), then ``settle`` s.
    Returns the seconds waited. Without ``/metrics`` it only settles."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        depth = queue_depth(root)
        if depth is None or depth == 0:
            break
        time.sleep(0.5)
    time.sleep(settle)
    return time.monotonic() - started


def grid_text(index: int, size: int) -> str:
    """A ``size`` × ``size`` grid of digits, different for every ``index`` (deterministic)."""
    rows = []
    for r in range(size):
        rows.append(" ".join(str((index * 7 + r * 3 + c * (r + 1)) % 10) for c in range(size)))
    return "\n".join(rows)


def messages_for(index: int, grid: int) -> list[dict[str, str]]:
    return [
        {
            "role": "system",
            "content": "You solve ARC puzzles. Describe the transformation, then the output grid.",
        },
        {
            "role": "user",
            "content": f"Puzzle {index}. Input grid:\n{grid_text(index, grid)}\n"
            "What rule maps this input to its output? Explain step by step.",
        },
    ]


def request_args(model: str, index: int, args: argparse.Namespace) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": messages_for(index, args.grid),
        "max_tokens": args.max_tokens,
        "temperature": 0.0,
    }
    if args.ignore_eos:
        body["extra_body"] = {"ignore_eos": True}
    return body


def open_client(kind: str, base_url: str) -> Any:
    """A fresh client of ``kind`` with its default settings."""
    if kind == "resilient_llm":
        from resilient_llm import AsyncOpenAI

        return AsyncOpenAI(api_key=API_KEY, base_url=base_url)
    import openai

    return openai.AsyncOpenAI(api_key=API_KEY, base_url=base_url)


async def burst(kind: str, base_url: str, model: str, calls: int, args: argparse.Namespace) -> dict[str, Any]:
    """``calls`` chat calls at once through a fresh ``kind`` client; what happened and how long."""
    client = open_client(kind, base_url)
    outcomes: list[dict[str, Any]] = []

    async def one(index: int) -> None:
        sent = time.monotonic()
        try:
            reply = await client.chat.completions.create(**request_args(model, index, args))
        except Exception as exc:
            outcomes.append({"ok": False, "error": type(exc).__name__, "seconds": time.monotonic() - sent})
            return
        usage = reply.usage
        outcomes.append(
            {
                "ok": True,
                "seconds": time.monotonic() - sent,
                "prompt_tokens": usage.prompt_tokens if usage else 0,
                "completion_tokens": usage.completion_tokens if usage else 0,
                "finish_reason": reply.choices[0].finish_reason,
            }
        )

    started = time.monotonic()
    tasks = [asyncio.ensure_future(one(i)) for i in range(calls)]
    _, pending = await asyncio.wait(tasks, timeout=args.run_timeout)
    wall = time.monotonic() - started
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    stats: dict[str, Any] | None = None
    if kind == "resilient_llm":
        stats = client.stats().as_dict()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(client.close(), 10.0)
    ok = [o for o in outcomes if o["ok"]]
    errors: dict[str, int] = {}
    for outcome in outcomes:
        if not outcome["ok"]:
            errors[outcome["error"]] = errors.get(outcome["error"], 0) + 1
    completion = sum(o["completion_tokens"] for o in ok)
    latencies = sorted(o["seconds"] for o in ok)
    return {
        "client": kind,
        "calls": calls,
        "ok": len(ok),
        "failed": len(outcomes) - len(ok),
        "hung": len(pending),
        "errors": errors,
        "seconds": round(wall, 2),
        "timed_out": bool(pending),
        "prompt_tokens": sum(o["prompt_tokens"] for o in ok),
        "completion_tokens": completion,
        "tokens_per_second": round(completion / wall, 1) if wall > 0 else 0.0,
        "latency_median_s": round(statistics.median(latencies), 2) if latencies else None,
        "latency_max_s": round(latencies[-1], 2) if latencies else None,
        "stats": stats,
    }


def burst_order(runs: int) -> list[str]:
    """``runs`` of each client in pairs whose order alternates (official, resilient_llm, resilient_llm,
    official, official, ...): a server that slows down (or speeds up) run by run over a session does
    not always favour the client that goes first."""
    order: list[str] = []
    for index in range(runs):
        order += CLIENTS if index % 2 == 0 else CLIENTS[::-1]
    return order


def summarize_bursts(rows: Sequence[dict[str, Any]], target: float = TARGET) -> dict[str, Any]:
    """Median seconds per client over runs that ended with every call ok, and the ratio."""
    summary: dict[str, Any] = {}
    for kind in CLIENTS:
        mine = [r for r in rows if r["client"] == kind]
        clean = [r["seconds"] for r in mine if r["ok"] == r["calls"]]
        summary[kind] = {
            "runs": len(mine),
            "clean_runs": len(clean),
            "seconds": [r["seconds"] for r in mine],
            "median_s": round(statistics.median(clean), 2) if clean else None,
        }
    official, library = summary["openai"]["median_s"], summary["resilient_llm"]["median_s"]
    every_run_clean = all(s["clean_runs"] == s["runs"] > 0 for s in summary.values())
    ratio = round(library / official, 3) if official and library else None
    summary.update(
        ratio=ratio,
        target=target,
        every_call_ok=every_run_clean,
        met=bool(every_run_clean and ratio is not None and ratio <= target),
    )
    return summary


def orphan_verdict(row: dict[str, Any]) -> dict[str, Any]:
    stats = row.get("stats") or {}
    orphans, stalls = stats.get("orphans"), stats.get("stalls")
    all_ok = row["ok"] == row["calls"]
    return {
        "all_ok": all_ok,
        "orphans": orphans,
        "stalls": stalls,
        "metrics_available": stats.get("metrics_available"),
        "met": bool(all_ok and orphans == 0 and stalls == 0),
    }


def burst_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'run':>3} {'client':<25} {'ok':>4} {'failed':>6} {'hung':>4} {'seconds':>8} {'tok/s':>7}"
        f" {'median call s':>13} {'retries':>7} {'orphans':>7} {'stalls':>6}"
    )
    lines = [header, "-" * len(header)]
    for number, row in enumerate(rows, 1):
        stats = row.get("stats") or {}
        lines.append(
            f"{number:>3} {LABELS[row['client']]:<25} {row['ok']:>4} {row['failed']:>6} {row['hung']:>4}"
            f" {row['seconds']:>8.2f} {row['tokens_per_second']:>7.1f} {row['latency_median_s'] or 0:>13.2f}"
            f" {stats.get('retries', '-'):>7} {stats.get('orphans', '-'):>7} {stats.get('stalls', '-'):>6}"
        )
    return "\n".join(lines)


def burst_line(summary: dict[str, Any], calls: int) -> str:
    official, library = summary["openai"], summary["resilient_llm"]
    if summary["ratio"] is None:
        return f"{calls} calls: no ratio (a client had no run with every call ok)"
    runs = library["clean_runs"], official["clean_runs"]
    counted = f"{runs[0]}" if runs[0] == runs[1] else f"{runs[0]} and {runs[1]}"
    failed = "" if summary["every_call_ok"] else " (calls failed)"
    return (
        f"{calls} calls, median of {counted} runs: resilient_llm {library['median_s']:.2f} s / openai "
        f"{official['median_s']:.2f} s = {summary['ratio']:.2f}x (target <= {summary['target']:.2f}x)"
        f"{failed}: {'MET' if summary['met'] else 'NOT MET'}"
    )


def orphan_line(verdict: dict[str, Any], row: dict[str, Any]) -> str:
    metrics = "/metrics read" if verdict["metrics_available"] else "/metrics NOT read"
    return (
        f"{row['calls']} calls through resilient_llm: {row['ok']}/{row['calls']} ok, orphans "
        f"{verdict['orphans']}, stalls {verdict['stalls']}, {metrics} ({row['seconds']:.1f} s): "
        f"{'MET' if verdict['met'] else 'NOT MET'}"
    )


def check_request_size(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """Refuse a request that cannot fit the served context (a rough upper bound of its prompt)."""
    words = sum(len(m["content"].split()) for m in messages_for(0, args.grid))
    prompt_bound = 3 * words + 64  # a token per digit and space at most, plus the chat template
    if prompt_bound + args.max_tokens > args.max_model_len:
        parser.error(
            f"--grid {args.grid} and --max-tokens {args.max_tokens} may not fit --max-model-len "
            f"{args.max_model_len} (prompt up to about {prompt_bound} tokens)"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("url", help="the running server's OpenAI base URL, e.g. http://127.0.0.1:8041/v1")
    parser.add_argument("--model", help="model name (default: the first of the server's /v1/models)")
    parser.add_argument("--calls", type=int, default=96, help="calls per burst run")
    parser.add_argument("--runs", type=int, default=3, help="burst runs per client (alternating)")
    parser.add_argument("--orphan-calls", type=int, default=32, help="calls of the no-false-orphans burst")
    parser.add_argument(
        "--only", choices=("burst", "orphans"), help="run one part only (default: the bursts, then orphans)"
    )
    parser.add_argument("--max-tokens", type=int, default=48, help="max_tokens of every call")
    parser.add_argument(
        "--grid", type=int, default=4, help="side of the grid in each prompt (4: about 85 tokens)"
    )
    parser.add_argument(
        "--no-ignore-eos",
        dest="ignore_eos",
        action="store_false",
        help="let answers stop at the model's end of text (lengths then differ between runs)",
    )
    parser.add_argument("--max-model-len", type=int, default=MAX_MODEL_LEN, help="the server's context")
    parser.add_argument("--warmup", type=int, default=4, help="calls sent (official SDK) before measuring")
    parser.add_argument("--idle-timeout", type=float, default=120.0, help="longest wait for an idle server")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds of rest before each run")
    parser.add_argument("--run-timeout", type=float, default=900.0, help="a run still going is stopped")
    parser.add_argument("--target", type=float, default=TARGET, help="resilient_llm ÷ official, median")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="JSON results file")
    return parser


def check_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    for name in ("calls", "runs", "orphan_calls", "max_tokens", "grid", "max_model_len"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.warmup < 0:
        parser.error(f"--warmup must be >= 0, got {args.warmup}")
    if not args.run_timeout > 0:
        parser.error(f"--run-timeout must be > 0, got {args.run_timeout}")
    check_request_size(args, parser)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    check_args(parser, args)
    base_url = args.url.rstrip("/")
    root = server_root(base_url)
    status, _ = get_text(f"{root}/health")
    if status != 200:
        print(f"error: {root}/health answered {status or 'nothing'}; start the server first", file=sys.stderr)
        return 2
    model = args.model or served_model(base_url)
    if model is None:
        print(f"error: {base_url}/models names no model; pass --model", file=sys.stderr)
        return 2
    logging.getLogger("resilient_llm").setLevel(logging.ERROR)
    command = command_line(None if argv is None else [sys.argv[0], *argv])
    info = machine_info()
    version_status, version = get_text(f"{root}/version")
    print(describe(info, command))
    print(
        f"server: {base_url} model {model} version {version.strip() if version_status == 200 else '?'}; "
        f"/metrics {'with' if queue_depth(root) is not None else 'without'} vLLM gauges; "
        f"each call: {args.grid}x{args.grid} grid prompt, max_tokens {args.max_tokens}, "
        f"ignore_eos {args.ignore_eos}",
        flush=True,
    )
    started = time.perf_counter()
    document: dict[str, Any] = {
        "benchmark": "real-vllm",
        "command": command,
        "machine": info,
        "server": {
            "url": base_url,
            "model": model,
            "version": version.strip() if version_status == 200 else None,
        },
        "settings": {
            "calls": args.calls,
            "runs": args.runs,
            "orphan_calls": args.orphan_calls,
            "max_tokens": args.max_tokens,
            "grid": args.grid,
            "ignore_eos": args.ignore_eos,
            "temperature": 0.0,
            "warmup": args.warmup,
        },
    }
    if args.warmup:
        asyncio.run(burst("openai", base_url, model, args.warmup, args))
    if args.only in (None, "burst"):
        rows = []
        for kind in burst_order(args.runs):
            waited = wait_idle(root, timeout=args.idle_timeout, settle=args.settle)
            row = asyncio.run(burst(kind, base_url, model, args.calls, args))
            row.update(idle_wait_s=round(waited, 1), load_average=load_average())
            rows.append(row)
            print(
                f"  {LABELS[kind]}: {row['ok']}/{args.calls} ok in {row['seconds']:.2f} s",
                file=sys.stderr,
                flush=True,
            )
        summary = summarize_bursts(rows, args.target)
        print()
        print(burst_table(rows))
        print(f"\n{burst_line(summary, args.calls)}", flush=True)
        document["burst"] = {"runs": rows, "summary": summary}
    if args.only in (None, "orphans"):
        wait_idle(root, timeout=args.idle_timeout, settle=args.settle)
        row = asyncio.run(burst("resilient_llm", base_url, model, args.orphan_calls, args))
        row["load_average"] = load_average()
        verdict = orphan_verdict(row)
        print(f"\n{orphan_line(verdict, row)}")
        document["orphans"] = {"run": row, "verdict": verdict}
    elapsed = time.perf_counter() - started
    document["elapsed_seconds"] = round(elapsed, 1)
    document["load_average_after"] = load_average()
    write_results(args.output, document)
    print(f"\n{elapsed:.0f} s in all\nresults: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
