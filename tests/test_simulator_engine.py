"""The simulator's pure parts: engine, fault planning, config, metrics text. No sockets, no sleeps."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from resilient_llm._exceptions import ConfigError
from resilient_llm.testing import LogNormalLength, SimulatorConfig, parse_faults
from resilient_llm.testing._engine import Engine, EngineSnapshot, SeqState, Sequence
from resilient_llm.testing._faults import FaultPlanner, answer_length, pick_fault
from resilient_llm.testing._metrics import MetricsHistory, render_metrics
from resilient_llm.testing._text import build_answer, json_skeleton_tokens

FIXTURES = Path(__file__).parent / "fixtures"


def make_engine(
    capacity: int = 2, token_time: float = 0.01, slowdown: float = 0.0, kv: int = 10_000
) -> Engine:
    return Engine(
        capacity=capacity, token_time=token_time, batch_slowdown=slowdown, kv_cache_tokens=kv, now=0.0
    )


def make_seq(target: int = 10, prefill: float = 0.0, prompt: int = 10, **kw: float) -> Sequence:
    return Sequence(prompt_tokens=prompt, target=target, finish_reason="stop", prefill_time=prefill, **kw)  # type: ignore[arg-type]


# -- engine ---------------------------------------------------------------------------------------
def test_capacity_and_fifo_admission() -> None:
    engine = make_engine(capacity=2)
    seqs = [make_seq(target=10) for _ in range(4)]
    for seq in seqs:
        engine.submit(seq, 0.0)
    assert engine.running == seqs[:2]
    assert list(engine.waiting) == seqs[2:]
    engine.advance(0.1 + 1e-6)  # 10 tokens at 0.01 s each: the first two finish together
    assert [s.state for s in seqs[:2]] == [SeqState.FINISHED, SeqState.FINISHED]
    assert engine.running == seqs[2:]
    engine.advance(0.2 + 1e-6)
    assert all(s.state is SeqState.FINISHED for s in seqs)
    assert engine.snapshot().success[0] == ("stop", 4)


def test_idle_engine_does_not_backdate_new_requests() -> None:
    engine = make_engine()
    engine.advance(50.0)
    seq = make_seq(target=10)
    engine.submit(seq, 100.0)
    assert seq.state is SeqState.DECODE and seq.generated == 1  # first token at prefill end (0 s)
    engine.advance(100.05)
    assert seq.generated == 6


def test_metrics_steps_count_a_burst_after_its_prefill_step() -> None:
    # The "steps" lag mode: the first request of a burst on an idle engine has a step to itself (0.2 s);
    # the other 63, arrived during it, are seen by the next one: 63 x 0.2 s more. Departures show at once.
    engine = Engine(
        capacity=64, token_time=0.01, batch_slowdown=0.0, kv_cache_tokens=10**6, now=0.0, metrics_step=0.2
    )
    seqs = [make_seq(target=10_000) for _ in range(64)]
    for i, seq in enumerate(seqs):
        engine.submit(seq, 1.0 + i * 1e-4)
    shown = {t: engine.snapshot(counted_by=t).running for t in (1.1, 1.2, 13.7, 13.8 + 1e-9)}
    assert shown == {1.1: 0, 1.2: 1, 13.7: 1, 13.8 + 1e-9: 64}
    assert engine.snapshot().running == 64  # the engine itself holds them all from the start...
    engine.advance(13.7)
    assert [s.generated for s in seqs[:2]] == [1 + int((13.7 - 1.2) / 0.01 + 1e-6), 0]  # ...no token before
    engine.advance(13.8 + 1e-9)  # the step that counts them
    assert all(s.generated >= 1 for s in seqs)
    engine.abort(seqs[0], 14.0)
    assert engine.snapshot(counted_by=14.0).running == 63
    # A request arriving alone after the burst has its own step again.
    late = make_seq(target=10_000)
    engine.submit(late, 20.0)
    assert late.counted_at == pytest.approx(20.2)


def test_prefill_delays_first_token() -> None:
    engine = make_engine()
    seq = make_seq(target=5, prefill=0.5)
    engine.submit(seq, 0.0)
    engine.advance(0.49)
    assert (seq.state, seq.generated) == (SeqState.PREFILL, 0)
    assert engine.next_event() == pytest.approx(0.5)
    engine.advance(0.5)
    assert seq.generated == 1
    assert engine.prompt_tokens_total == 10


@pytest.mark.parametrize(
    ("running", "slowdown", "expected_step"),
    [(1, 0.5, 0.01), (2, 0.5, 0.015), (4, 0.5, 0.025), (4, 0.0, 0.01)],
)
def test_step_time_grows_with_batch(running: int, slowdown: float, expected_step: float) -> None:
    engine = make_engine(capacity=8, slowdown=slowdown)
    for _ in range(running):
        engine.submit(make_seq(target=1000), 0.0)
    assert engine.step_time() == pytest.approx(expected_step)
    engine.advance(1.0)
    # first token at admission, then one per step
    assert engine.running[0].generated == 1 + math.floor(1.0 / expected_step + 1e-9)


def test_slow_sequence_trickles_but_respects_max_gap() -> None:
    engine = make_engine(capacity=4, token_time=0.01)
    slow = make_seq(target=100, slowdown=1000.0, max_gap=0.05)
    engine.submit(slow, 0.0)
    engine.advance(1.0)
    assert slow.generated == 1 + 20  # one token per 0.05 s, not per 10 s


def test_abort_frees_the_slot_for_the_next_waiting() -> None:
    engine = make_engine(capacity=1)
    first, second = make_seq(target=100), make_seq(target=100)
    engine.submit(first, 0.0)
    engine.submit(second, 0.0)
    assert second.state is SeqState.WAITING
    assert engine.abort(first, 0.2)
    assert first.state is SeqState.ABORTED
    assert second.state is SeqState.DECODE
    assert dict(engine.snapshot().success)["abort"] == 0  # vLLM 0.32 does not count aborts
    assert not engine.abort(first, 0.3)  # twice is a no-op


def test_instant_engine_finishes_on_submit() -> None:
    engine = make_engine(token_time=0.0)
    seq = make_seq(target=16)
    engine.submit(seq, 0.0)
    assert seq.state is SeqState.FINISHED and seq.generated == 16
    assert engine.generation_tokens_total == 16


def test_kv_overflow_preempts_newest_and_recomputes() -> None:
    engine = make_engine(capacity=4, kv=100)
    old, new = make_seq(target=60, prompt=20), make_seq(target=60, prompt=20)
    engine.submit(old, 0.0)
    engine.submit(new, 0.0)
    engine.advance(0.35)  # 20 + 30ish tokens each: 100 held > budget
    assert engine.preemptions >= 1
    assert new.state is SeqState.WAITING and old.state is SeqState.DECODE
    engine.advance(5.0)
    assert old.state is new.state is SeqState.FINISHED
    assert engine.generation_tokens_total == 120
    assert engine.snapshot().kv_cache_usage == 0.0


def test_notify_fires_at_wake_at_and_on_end() -> None:
    engine = make_engine()
    seq = make_seq(target=10)
    calls: list[int] = []
    seq.notify = lambda: calls.append(seq.generated)
    seq.wake_at = 5
    engine.submit(seq, 0.0)
    engine.advance(0.02)
    assert calls == []
    engine.advance(0.045)
    assert calls == [5]
    engine.advance(1.0)
    assert calls[-1] == 10


@pytest.mark.timeout(5)
def test_a_sliver_of_a_token_left_late_in_the_clock_still_finishes() -> None:
    # At t = 3000 s a float cannot tell t from t + 3e-13: the leftover must end by time, not by count.
    engine = Engine(capacity=2, token_time=0.0002, batch_slowdown=0.0, kv_cache_tokens=10_000, now=3000.0)
    seq = make_seq(target=100)
    engine.submit(seq, 3000.0)
    seq.progress = 100 - 1.05e-9  # more than the 1e-9 slack, less than half a float step of time
    engine.advance(3000.001)
    assert seq.state is SeqState.FINISHED and seq.generated == 100


@settings(max_examples=60, deadline=None)
@given(
    capacity=st.integers(1, 4),
    ops=st.lists(
        st.tuples(st.sampled_from(["submit", "abort", "advance"]), st.integers(1, 40), st.floats(0, 0.2)),
        max_size=40,
    ),
)
def test_engine_invariants(capacity: int, ops: list[tuple[str, int, float]]) -> None:
    engine = make_engine(capacity=capacity, token_time=0.01, slowdown=0.1, kv=500)
    now = 0.0
    seqs: list[Sequence] = []
    admitted: list[Sequence] = []
    for op, n, dt in ops:
        now += dt
        before = {id(s): s.generated for s in seqs}
        if op == "submit":
            seq = make_seq(target=n, prefill=dt / 4, prompt=n)
            seqs.append(seq)
            engine.submit(seq, now)
        elif op == "abort" and seqs:
            engine.abort(seqs[n % len(seqs)], now)
        else:
            engine.advance(now)
        for s in engine.running:
            if s not in admitted:
                admitted.append(s)
        assert len(engine.running) <= capacity
        assert all(s.generated >= before.get(id(s), 0) for s in seqs)
        assert all(s.generated <= s.target for s in seqs)
    engine.advance(now + 1000)
    assert not engine.running and not engine.waiting
    assert all(s.done for s in seqs)
    assert all(s.generated == s.target for s in seqs if s.state is SeqState.FINISHED)
    assert engine.generation_tokens_total == sum(s.generated for s in seqs)
    # FIFO: among sequences never aborted, admission follows submission order.
    finished = [s for s in seqs if s.state is SeqState.FINISHED]
    assert [s for s in admitted if s in finished] == [s for s in finished if s in admitted]


# -- faults and lengths ---------------------------------------------------------------------------
KINDS = frozenset({"ghost", "drop", "lost"})


@pytest.mark.parametrize(
    ("probabilities", "u", "expected"),
    [
        ({}, 0.0, None),
        ({"ghost": 0.1}, 0.05, "ghost"),
        ({"ghost": 0.1}, 0.1, None),
        ({"ghost": 0.1, "drop": 0.2}, 0.15, "drop"),  # slices in FAULT_KINDS order: lost, ghost, drop
        ({"drop": 0.2, "lost": 0.1}, 0.05, "lost"),
        ({"metrics_missing": 1.0}, 0.0, None),  # not a request fault
    ],
)
def test_pick_fault(probabilities: dict[str, float], u: float, expected: str | None) -> None:
    assert pick_fault(probabilities, u, KINDS) == expected


@pytest.mark.parametrize(
    ("spec", "u", "expected"),
    [
        (256, 0.9, 256),
        (LogNormalLength(median=400, sigma=1.0), 0.5, 400),
        (LogNormalLength(median=400, sigma=0.0), 0.99, 400),
        (LogNormalLength(median=400, sigma=1.0, maximum=500), 0.999, 500),
        (LogNormalLength(median=1, sigma=3.0), 0.0, 1),
    ],
)
def test_answer_length(spec: int | LogNormalLength, u: float, expected: int) -> None:
    assert answer_length(spec, u) == expected


def test_lognormal_lengths_are_long_tailed() -> None:
    spec = LogNormalLength(median=400, sigma=1.0, maximum=100_000)
    lengths = sorted(answer_length(spec, (i + 0.5) / 1000) for i in range(1000))
    assert lengths[500] == pytest.approx(400, rel=0.02)
    assert lengths[990] > 4000  # the 99th percentile is ten times the median


def test_planner_is_deterministic_and_script_then_request_override() -> None:
    config = SimulatorConfig(seed=7, faults={"ghost": 0.5}, fault_script=("drop", None, "slow"))
    a, b = FaultPlanner(config), FaultPlanner(config)
    plans_a = [a.next_attempt() for _ in range(20)]
    plans_b = [b.next_attempt("lost" if i == 1 else None) for i in range(20)]
    assert [p.fault for p in plans_a[:3]] == ["drop", None, "slow"]
    assert plans_b[1].fault == "lost"
    assert [p.output_tokens for p in plans_a] == [p.output_tokens for p in plans_b]
    assert [p.fault for p in plans_a[3:]] == [p.fault for p in plans_b[3:]]
    assert {p.fault for p in plans_a[3:]} == {"ghost", None}
    other = [
        FaultPlanner(SimulatorConfig(seed=8, faults={"ghost": 0.5})).next_attempt().id_hex for _ in range(1)
    ]
    assert other[0] != plans_a[0].id_hex


# -- config ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"capacity": 0}, "capacity"),
        ({"engines": 0}, "engines"),
        ({"token_time": -1.0}, "token_time"),
        ({"time_scale": 0.0}, "time_scale"),
        ({"time_scale": math.inf}, "time_scale"),
        ({"port": 70000}, "port"),
        ({"reasoning_ratio": 1.0}, "reasoning_ratio"),
        ({"reasoning_field": "thoughts"}, "reasoning_field"),
        ({"output_tokens": 0}, "output_tokens"),
        ({"faults": {"ghots": 0.1}}, "faults"),
        ({"faults": {"ghost": 1.5}}, "faults"),
        ({"faults": {"ghost": 0.6, "drop": 0.6}}, "faults"),
        ({"fault_script": ("ghost", "metrics_missing")}, "fault_script"),
        ({"max_queued": -1}, "max_queued"),
        ({"slow_factor": 0.5}, "slow_factor"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(ConfigError, match=rf"^SimulatorConfig: {named}\b.* must be .+, got .+"):
        SimulatorConfig(**kwargs)  # type: ignore[arg-type]


def test_config_is_frozen_and_faults_read_only() -> None:
    config = SimulatorConfig(faults={"ghost": 0.1, "metrics_missing": 1.0})
    with pytest.raises(AttributeError):
        config.capacity = 3  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.faults["drop"] = 0.1  # type: ignore[index]
    with pytest.raises(ConfigError, match=r"^LogNormalLength: median must be an integer >= 1, got 0$"):
        LogNormalLength(median=0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", {}),
        ("ghost=0.02", {"ghost": 0.02}),
        (" ghost=0.02 , drop=0.01,", {"ghost": 0.02, "drop": 0.01}),
        ("503=0.1,metrics_frozen=1", {"503": 0.1, "metrics_frozen": 1.0}),
    ],
)
def test_parse_faults(text: str, expected: dict[str, float]) -> None:
    assert parse_faults(text) == expected


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("ghost", "'ghost' is not NAME=PROBABILITY"),
        ("gost=0.1", "unknown fault 'gost'"),
        ("ghost=lots", "'lots' in 'ghost=lots' is not a number"),
        ("ghost=0.1,ghost=0.2", "'ghost' given twice"),
        ("ghost=2", "faults['ghost'] must be a finite number >= 0 and <= 1, got 2.0"),
    ],
)
def test_parse_faults_names_the_bad_part(text: str, complaint: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_faults(text)
    assert complaint in str(info.value)


# -- answers --------------------------------------------------------------------------------------
@pytest.mark.parametrize("tokens", [1, json_skeleton_tokens(), 100, 5000])
def test_json_answers_are_valid_and_padded(tokens: int) -> None:
    import json

    answer = build_answer(tokens, reasoning_tokens=0, json_mode=True, offset=3)
    assert len(answer) == max(tokens, json_skeleton_tokens())
    obj = json.loads("".join(answer.content))
    assert set(obj) == {
        "instructions",
        "grid",
        "reasoning_for_why_old_instructions_are_wrong",
        "revised_instructions",
    }
    assert all(isinstance(row, list) and all(isinstance(x, int) for x in row) for row in obj["grid"])
    with pytest.raises(json.JSONDecodeError):
        json.loads("".join(answer.content[:-1]))


# -- metrics --------------------------------------------------------------------------------------
def snapshot(engine: int, running: int, waiting: int, generated: int = 0) -> EngineSnapshot:
    return EngineSnapshot(
        engine=engine,
        running=running,
        waiting=waiting,
        kv_cache_usage=0.25,
        prompt_tokens=100,
        generation_tokens=generated,
        preemptions=1,
        rejections=2,
        success=(("stop", 3), ("length", 1), ("abort", 0), ("error", 0), ("repetition", 0)),
    )


def test_metrics_text_parses_and_sums_over_engines() -> None:
    text = render_metrics("org/m", [snapshot(0, 5, 2, 40), snapshot(1, 3, 7, 2)], created=1.7e9)
    families = {f.name: f for f in text_string_to_metric_families(text)}
    totals = {
        name: sum(s.value for s in f.samples if not s.name.endswith("_created"))
        for name, f in families.items()
    }
    assert totals["vllm:num_requests_running"] == 8
    assert totals["vllm:num_requests_waiting"] == 9
    assert totals["vllm:generation_tokens"] == 42
    assert totals["vllm:request_success"] == 8
    assert families["vllm:num_requests_running"].type == "gauge"
    assert families["vllm:generation_tokens"].type == "counter"
    running = families["vllm:num_requests_running"].samples
    assert {(s.labels["engine"], s.labels["model_name"]) for s in running} == {("0", "org/m"), ("1", "org/m")}
    rejections = [s for s in families["vllm:admission_rejections"].samples if s.name.endswith("_total")]
    assert {s.labels["reason"]: s.value for s in rejections} == {
        "max_num_queued_reqs": 4,
        "max_num_queued_tokens": 0,
    }


def test_metrics_help_and_type_lines_match_a_real_server() -> None:
    real = set((FIXTURES / "metrics_real_v032_loaded.txt").read_text().splitlines())
    text = render_metrics("openai/gpt-oss-20b", [snapshot(0, 1, 0)], created=1.7e9)
    headers = [line for line in text.splitlines() if line.startswith("# ")]
    assert len(headers) == 2 * 14
    assert [line for line in headers if line not in real] == []


def test_metrics_history_answers_the_past() -> None:
    history = MetricsHistory(horizon=2.0)
    for t in range(10):
        history.record(float(t), (snapshot(0, t, 0),))
    assert history.at(7.5) is not None and history.at(7.5)[0].running == 7  # type: ignore[index]
    assert history.at(100.0)[0].running == 9  # type: ignore[index]
    assert history.at(6.9)[0].running == 7  # type: ignore[index]  # before what is kept: the oldest kept


def test_public_surface() -> None:
    import resilient_llm.testing as testing

    assert testing.__all__ == sorted(testing.__all__)
    assert set(testing.__all__) == {
        "FAULT_KINDS", "FakeClock", "FaultKind", "LogNormalLength", "QueueSample", "ReplicaFaults",
        "SimulatedReplicas", "SimulatorConfig", "SimulatorStats", "SimulatorThread", "VLLMSimulator",
        "parse_faults", "set_testing",
    }  # fmt: skip
    assert all(getattr(testing, name) is not None for name in testing.__all__)
