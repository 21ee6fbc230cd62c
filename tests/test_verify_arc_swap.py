"""scripts/verify-arc-swap.py: the one-line swap, scratch copies, event folding, and a stub-backed run.

The pipeline itself is not in this repository: the end-to-end test builds a tiny stand-in checkout
with the same layout (``src/llms/structured.py``, ``src/run.py``, ``src/configs/oss_configs.py``,
the ARC data files) whose tasks call the local client the way the pipeline does.
"""

from __future__ import annotations

import importlib.util
import json
import sys
import textwrap
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "verify-arc-swap.py"


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("verify_arc_swap", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


verify = load_script()

STRUCTURED = """\
import os

from openai import AsyncOpenAI

local_vllm_client = AsyncOpenAI(
    api_key="EMPTY", base_url=os.environ.get("LOCAL_VLLM_URL"), timeout=2500, max_retries=2
)
"""

RUN = """\
import asyncio
import json


async def solve_challenge(*, c, **kwargs):
    from src.llms.structured import local_vllm_client

    replies = await asyncio.gather(
        *[
            local_vllm_client.chat.completions.create(
                model="openai/gpt-oss-20b",
                messages=[{"role": "user", "content": "solve"}],
                response_format={"type": "json_object"},
                max_tokens=8000,
            )
            for _ in range(3)
        ],
        return_exceptions=True,
    )
    answers = [json.loads(r.choices[0].message.content) for r in replies if not isinstance(r, Exception)]
    if not answers:
        raise RuntimeError("no answers")
    return 1.0


class Challenge:
    def __init__(self, task_id):
        self.task_id = task_id


async def run_from_json(*, challenges_path, limit, **kwargs):
    ids = list(json.loads(challenges_path.read_text()))[:limit]
    await asyncio.gather(*[solve_challenge(c=Challenge(i)) for i in ids], return_exceptions=True)
"""


def fake_checkout(root: Path) -> Path:
    (root / "src" / "llms").mkdir(parents=True)
    (root / "src" / "configs").mkdir(parents=True)
    (root / "data" / "arc-prize-2024").mkdir(parents=True)
    for package in (root / "src", root / "src" / "llms", root / "src" / "configs"):
        (package / "__init__.py").write_text("")
    (root / "src" / "llms" / "structured.py").write_text(STRUCTURED)
    (root / "src" / "run.py").write_text(RUN)
    (root / "src" / "configs" / "oss_configs.py").write_text("local_gpt_oss_20b_config = None\n")
    challenges: dict[str, dict[str, list[object]]] = {f"task{i}": {"train": [], "test": []} for i in range(3)}
    (root / "data" / "arc-prize-2024" / "arc-agi_evaluation_challenges.json").write_text(
        json.dumps(challenges)
    )
    (root / "data" / "arc-prize-2024" / "arc-agi_evaluation_solutions.json").write_text("{}")
    return root


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from openai import AsyncOpenAI\n", "from resilient_llm import AsyncOpenAI\n"),
        (
            "x = 1\nfrom openai import AsyncOpenAI\r\ny = 2\n",
            "x = 1\nfrom resilient_llm import AsyncOpenAI\r\ny = 2\n",
        ),
        ("import a\nfrom openai import AsyncOpenAI", "import a\nfrom resilient_llm import AsyncOpenAI"),
    ],
)
def test_swap_changes_exactly_the_import_line(source: str, expected: str) -> None:
    assert verify.swap_import(source) == expected
    assert len(verify.changed_lines(source, expected)) == 2


@pytest.mark.parametrize(
    "source",
    [
        "from openai import OpenAI\n",  # not the async client
        "    from openai import AsyncOpenAI\n",  # indented: not the module-level import
        "from openai import AsyncOpenAI\nfrom openai import AsyncOpenAI\n",  # twice
        "from openai import AsyncOpenAI, OpenAI\n",  # more than the one name
    ],
)
def test_swap_refuses_anything_but_one_exact_line(source: str) -> None:
    with pytest.raises(verify.SetupError, match="exactly once"):
        verify.swap_import(source)


def test_events_fold_into_finished_failed_hung_and_not_started(tmp_path: Path) -> None:
    events = [
        {"event": "run", "tasks": ["a", "b", "c", "d"], "client": "resilient_llm"},
        {"event": "task_started", "task": "a"},
        {"event": "task_started", "task": "b"},
        {"event": "task_started", "task": "c"},
        {"event": "call_started", "call": 1},
        {"event": "call_started", "call": 2},
        {"event": "call_started", "call": 3},
        {"event": "call_ok", "call": 1},
        {"event": "call_failed", "call": 2, "error": "StallError"},
        {"event": "task_finished", "task": "a"},
        {"event": "task_failed", "task": "b", "error": "RuntimeError: no scores"},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + '\n{"event": "call_st')  # cut by a kill
    outcome = verify.read_events(path, "swapped")
    assert (outcome.finished, outcome.failed, outcome.hung, outcome.not_started) == (
        ["a"],
        ["b"],
        ["c"],
        ["d"],
    )
    assert (outcome.calls_started, outcome.calls_ok, outcome.calls_failed, outcome.calls_waiting) == (
        3,
        1,
        1,
        1,
    )
    assert outcome.call_errors == {"StallError": 1}
    assert outcome.client_module == "resilient_llm"
    assert not outcome.all_ended
    assert verify.read_events(tmp_path / "missing.jsonl", "official").tasks == []


def test_copies_leave_the_checkout_alone_and_differ_by_one_line(tmp_path: Path) -> None:
    checkout = fake_checkout(tmp_path / "checkout")
    (checkout / ".git").mkdir()
    before = (checkout / verify.TARGET).read_text()
    copies = verify.make_copies(checkout, tmp_path / "work")
    assert (checkout / verify.TARGET).read_text() == before
    assert not (checkout / verify.DRIVER_NAME).exists()
    assert not (copies["official"] / ".git").exists()
    official = (copies["official"] / verify.TARGET).read_text()
    swapped = (copies["swapped"] / verify.TARGET).read_text()
    assert official == before
    assert verify.changed_lines(official, swapped) == [
        "-from openai import AsyncOpenAI",
        "+from resilient_llm import AsyncOpenAI",
    ]
    assert (copies["swapped"] / verify.DRIVER_NAME).is_file()


def test_a_checkout_without_the_pipeline_layout_is_refused(tmp_path: Path) -> None:
    with pytest.raises(verify.SetupError, match="is missing"):
        verify.make_copies(tmp_path, tmp_path / "work")


def test_pipeline_env_sets_dummy_keys_and_drops_client_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://elsewhere/v1")
    monkeypatch.setenv("RESILIENT_LLM_DEADLINE", "5")
    env = verify.pipeline_env("http://127.0.0.1:9/v1", Path("/tmp/x"), ["EXTRA=1"])
    assert env["LOCAL_VLLM_URL"] == "http://127.0.0.1:9/v1"
    assert env["LOCAL_LOGS_ONLY"] == "1"
    assert env["MAX_CONCURRENCY"] == "100"
    assert env["EXTRA"] == "1"
    assert "OPENAI_BASE_URL" not in env and "RESILIENT_LLM_DEADLINE" not in env
    with pytest.raises(verify.SetupError, match="KEY=VALUE"):
        verify.pipeline_env("u", Path("/tmp/x"), ["no-equals-sign"])


@pytest.mark.timeout(90)
def test_stub_run_ends_every_task_with_both_clients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = fake_checkout(tmp_path / "checkout")
    report = tmp_path / "report.json"
    argv = [str(checkout), "--python", sys.executable, "--server", "stub", "--tasks", "2", "--limit", "40"]
    code = verify.main([*argv, "--workdir", str(tmp_path / "work"), "--output", str(report)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    runs = {run["client"]: run for run in json.loads(report.read_text())["runs"]}
    assert runs["official"]["client_module"] == "openai"
    assert runs["swapped"]["client_module"] == "resilient_llm"
    for run in runs.values():
        assert (run["tasks"], run["finished"], run["hung"], run["not_started"]) == (2, 2, 0, 0)
        assert (run["calls_started"], run["calls_ok"], run["calls_waiting"]) == (6, 6, 0)
        assert run["server_stats"]["completed"] == 6
    assert "every task ended" in printed
    assert not (tmp_path / "work").exists()  # scratch copies removed without --keep


@pytest.mark.timeout(60)
def test_a_run_stopped_at_its_limit_counts_hung_tasks(tmp_path: Path) -> None:
    checkout = fake_checkout(tmp_path / "checkout")
    run_py = checkout / "src" / "run.py"
    run_py.write_text(run_py.read_text().replace("return 1.0", "await asyncio.Event().wait()"))
    report = tmp_path / "report.json"
    # 10 s, not 3: the driver must start and import the pipeline's stand-in and the library before its
    # tasks can hang, which took more than 3 s on a loaded 2-core machine (0 tasks seen, test failed).
    argv = [str(checkout), "--python", sys.executable, "--server", "stub", "--tasks", "2", "--limit", "10"]
    code = verify.main([*argv, "--clients", "swapped", "--output", str(report)])
    assert code == 1
    (run,) = json.loads(report.read_text())["runs"]
    assert run["limit_hit"] is True
    assert (run["finished"], run["hung"]) == (0, 2)


def test_driver_source_compiles() -> None:
    compile(textwrap.dedent(verify.DRIVER), "driver", "exec")


def test_default_faults_are_the_issues_incident_mix() -> None:
    from resilient_llm.testing import parse_faults

    args = verify.build_parser().parse_args(["/tmp/x"])
    assert parse_faults(args.faults) == {"ghost": 0.03, "lost": 0.02, "drop": 0.02, "503": 0.03}
    assert args.clients == ["official", "swapped"]  # the original comparison stays the default
    assert args.target == 1.3


def test_baseline_server_is_the_same_simulator_without_faults_or_queue_bound() -> None:
    args = verify.build_parser().parse_args(["/tmp/x", "--seed", "5", "--capacity", "8"])
    kind, faulty = verify.server_args(args, "swapped")
    assert kind == "simulator"
    assert faulty[faulty.index("--faults") + 1] == verify.INCIDENT_FAULTS
    assert faulty[faulty.index("--max-queued") + 1] == "32"
    assert verify.server_args(args, "official") == (kind, faulty)
    _, clean = verify.server_args(args, "baseline")
    assert "--faults" not in clean and "--max-queued" not in clean
    assert clean == faulty[2:-2]  # seed, capacity, time scale, answer lengths: the same
    stub = verify.build_parser().parse_args(["/tmp/x", "--server", "stub"])
    assert verify.server_args(stub, "baseline") == ("stub", [])


def test_copies_are_made_for_the_runs_asked_for(tmp_path: Path) -> None:
    checkout = fake_checkout(tmp_path / "checkout")
    copies = verify.make_copies(checkout, tmp_path / "work", ["baseline", "swapped"])
    assert sorted(copies) == ["baseline", "swapped"]
    assert not (tmp_path / "work" / "official").exists()
    assert (copies["baseline"] / verify.TARGET).read_text() == STRUCTURED
    assert "from resilient_llm import AsyncOpenAI" in (copies["swapped"] / verify.TARGET).read_text()
    only = verify.make_copies(checkout, tmp_path / "work2", ["baseline"])
    assert (only["baseline"] / verify.TARGET).read_text() == STRUCTURED


def test_a_run_named_twice_is_refused() -> None:
    with pytest.raises(SystemExit):
        verify.main(["/tmp/x", "--clients", "swapped", "swapped"])


def _timed(client: str, start: float | None, end: float | None, *, limit_hit: bool = False) -> object:
    outcome = verify.Outcome(client=client, tasks=["a"], started=["a"], seconds=99.0, limit_hit=limit_hit)
    outcome.run_started_at, outcome.run_ended_at = start, end
    if end is not None:
        outcome.finished = ["a"]
        outcome.run_ended = True
    return outcome


def test_run_seconds_come_from_the_drivers_run_and_run_ended_events(tmp_path: Path) -> None:
    events = [
        {"event": "run", "t": 100.0, "tasks": ["a"], "client": "openai"},
        {"event": "task_started", "task": "a", "t": 100.5},
        {"event": "task_finished", "task": "a", "t": 117.0},
        {"event": "run_ended", "t": 117.5},
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in events) + "\n")
    outcome = verify.read_events(path, "baseline")
    assert outcome.run_seconds == pytest.approx(17.5)
    assert outcome.as_dict()["run_seconds"] == 17.5
    path.write_text("\n".join(json.dumps(e) for e in events[:3]) + "\n")  # killed before it returned
    assert verify.read_events(path, "baseline").run_seconds is None


def test_comparison_is_swapped_over_baseline_and_a_stopped_run_gives_a_lower_bound() -> None:
    baseline = _timed("baseline", 0.0, 20.0)
    swapped = _timed("swapped", 5.0, 30.0)
    result = verify.comparison([baseline, swapped], 1.3)
    assert result == {
        "baseline_seconds": 20.0,
        "swapped_seconds": 25.0,
        "ratio": 1.25,
        "lower_bound": False,
        "target": 1.3,
        "met": True,
    }
    assert "1.25x" in verify.comparison_line(result) and "MET" in verify.comparison_line(result)
    assert verify.comparison([baseline, swapped], 1.2)["met"] is False  # type: ignore[index]
    stopped = _timed("swapped", 0.0, None, limit_hit=True)  # process wall time 99 s, a lower bound
    result = verify.comparison([baseline, stopped], 1.3)
    assert result is not None and result["lower_bound"] and not result["met"] and result["ratio"] == 4.95
    assert "4.95x+" in verify.comparison_line(result)
    assert verify.comparison([_timed("baseline", 0.0, None), swapped], 1.3) is None  # no yardstick
    assert verify.comparison([swapped], 1.3) is None


@pytest.mark.timeout(90)
def test_stub_run_of_baseline_and_swapped_one_after_the_other_reports_the_ratio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkout = fake_checkout(tmp_path / "checkout")
    report = tmp_path / "report.json"
    argv = [str(checkout), "--python", sys.executable, "--server", "stub", "--tasks", "2", "--limit", "40"]
    argv += ["--clients", "baseline", "swapped", "--sequential", "--output", str(report)]
    assert verify.main(argv) == 0
    printed = capsys.readouterr().out
    document = json.loads(report.read_text())
    assert document["clients"] == ["baseline", "swapped"] and document["sequential"] is True
    assert (
        document["command"].startswith("scripts/verify-arc-swap.py ")
        and "--sequential" in document["command"]
    )
    runs = {run["client"]: run for run in document["runs"]}
    assert runs["baseline"]["client_module"] == "openai"
    assert runs["swapped"]["client_module"] == "resilient_llm"
    for run in runs.values():
        assert (run["finished"], run["hung"], run["calls_ok"]) == (2, 0, 6)
        assert 0 < run["run_seconds"] <= run["seconds"]
    comparison = document["comparison"]
    assert comparison["baseline_seconds"] == runs["baseline"]["run_seconds"]
    assert comparison["ratio"] > 0 and comparison["lower_bound"] is False
    assert "official without faults" in printed and "target <= 1.3x" in printed
