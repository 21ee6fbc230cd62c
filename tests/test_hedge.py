"""Hedged requests: a slow answer's pace against its server's, the race, and the client end to end."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from resilient_llm import AsyncOpenAI, ConfigError
from resilient_llm._assemble import ChatAssembler
from resilient_llm._hedge import MIN_PACE_READS, MIN_READS, AnswerPace, Pace, race
from resilient_llm.demo._run import library_settings
from resilient_llm.testing import SimulatorConfig, VLLMSimulator

pytestmark = pytest.mark.timeout(60)


# --- the pace: pure --------------------------------------------------------------------------------
def warmed(gap: float, reads: int = MIN_PACE_READS) -> Pace:
    pace = Pace()
    for i in range(reads):
        pace.observe(gap, 1, at=i * gap)
    return pace


def feed(answer: AnswerPace, gap: float, reads: int, start: float = 0.0) -> list[bool]:
    """``reads`` reads of one token each, ``gap`` apart; the verdict after each."""
    verdicts = [answer.heard(start, 1)]
    for i in range(1, reads + 1):
        verdicts.append(answer.heard(start + i * gap, 1 + i))
    return verdicts


def test_an_answer_at_the_servers_pace_is_never_slow() -> None:
    answer = AnswerPace(warmed(0.02), 4.0)
    assert not any(feed(answer, 0.02, 500))


def interleaved(pace: Pace, gaps: list[float], steps: int) -> list[list[bool]]:
    """Answers read side by side, one token per read, answer ``i`` every ``gaps[i]`` seconds."""
    answers = [AnswerPace(pace, 4.0) for _ in gaps]
    reads = sorted((k * gap, i) for i, gap in enumerate(gaps) for k in range(steps))
    verdicts: list[list[bool]] = [[] for _ in gaps]
    counts = [0] * len(gaps)
    for at, i in reads:
        counts[i] += 1
        verdicts[i].append(answers[i].heard(at, counts[i]))
    return verdicts


@pytest.mark.parametrize(
    ("factor", "slow"),
    [(1.0, False), (2.0, False), (3.0, False), (6.0, True), (10.0, True)],
)
def test_an_answer_is_slow_only_past_the_slowdown(factor: float, slow: bool) -> None:
    verdicts = interleaved(Pace(), [0.02] * 7 + [0.02 * factor], 200)
    assert not any(any(v) for v in verdicts[:7])
    assert any(verdicts[7]) is slow
    if slow:  # never before it has MIN_READS reads of its own
        assert verdicts[7].index(True) >= MIN_READS


def test_the_time_before_the_first_token_is_not_counted() -> None:
    answer = AnswerPace(warmed(0.02), 4.0)
    assert not answer.heard(100.0, 1)  # a minute in the server's queue: not a slow answer
    assert not any(feed(answer, 0.02, 50, start=100.0))


def test_no_verdict_before_the_server_pace_is_known() -> None:
    answer = AnswerPace(Pace(), 4.0)
    assert not any(feed(answer, 1.0, MIN_PACE_READS - 1))


def test_an_answer_read_alone_is_its_own_pace() -> None:
    pace = Pace()
    assert not any(feed(AnswerPace(pace, 4.0), 0.2, 200))
    assert pace.gap == pytest.approx(0.2)


def test_a_read_is_measured_by_the_text_it_brought() -> None:
    answer = AnswerPace(warmed(0.02), 4.0)
    answer.heard(0.0, 1)
    for i in range(1, 100):
        assert not answer.heard(i * 0.2, 1 + 10 * i)  # 10 characters per 0.2 s: the server's pace


def test_a_read_without_text_is_not_a_read() -> None:
    pace = warmed(0.02)
    answer = AnswerPace(pace, 4.0)
    answer.heard(0.0, 0)  # the role chunk
    assert not answer.heard(0.5, 0)  # a finish reason, a usage chunk: nothing produced
    assert (answer.reads, pace.reads) == (0, MIN_PACE_READS)


def test_one_slow_answer_among_others_is_found_and_does_not_move_the_pace() -> None:
    pace = Pace()
    verdicts = interleaved(pace, [0.02] * 7 + [0.2], 200)
    assert not any(any(v) for v in verdicts[:7])
    assert any(verdicts[7][:20])  # found while the others are still read


def test_a_server_that_slows_down_as_a_whole_moves_its_pace() -> None:
    pace = warmed(0.02)
    answers = [AnswerPace(pace, 4.0) for _ in range(32)]
    for a in answers:
        a.heard(0.0, 1)
    verdicts = []
    for step in range(1, 60):  # every answer's tokens now come 5x slower: a larger batch
        verdicts += [a.heard(step * 0.1, 1 + step) for a in answers]
    assert not any(verdicts)
    assert pace.gap == pytest.approx(0.1)


def paced_answers(texts: list[str], gap: float, reads: int) -> list[list[bool]]:
    """Answers streamed side by side, one chunk every ``gap`` seconds each, answer ``i``'s chunks
    carrying ``texts[i]``: fed through the assembler, whose ``produced`` is what the reader passes."""
    pace = Pace()
    answers = [(ChatAssembler(), AnswerPace(pace, 4.0)) for _ in texts]
    verdicts: list[list[bool]] = [[] for _ in texts]
    for k in range(reads):
        for i, (assembler, answer) in enumerate(answers):
            assembler.feed({"id": "c", "choices": [{"index": 0, "delta": {"content": texts[i]}}]})
            verdicts[i].append(answer.heard(k * gap, assembler.produced))
    return verdicts


def test_one_token_per_chunk_is_one_token_whatever_its_length() -> None:
    """vLLM's default: a chunk per token. An answer of digits (or CJK characters), one character a
    token, among English answers (six a token) comes at the same pace: not slow."""
    verdicts = paced_answers([" cells"] * 7 + ["1"], 0.02, 200)
    assert not any(any(v) for v in verdicts)


def test_packed_chunks_are_measured_by_their_text() -> None:
    """Five tokens a chunk for the others, one for an answer ten times slower, every 50 ms against
    20: 2.5x slower in chunks, 10x in text."""
    pace = Pace()
    fast = [(ChatAssembler(), AnswerPace(pace, 4.0)) for _ in range(7)]
    slow = (ChatAssembler(), AnswerPace(pace, 4.0))
    reads = sorted([(k * 0.02, i) for i in range(7) for k in range(200)] + [(k * 0.05, 7) for k in range(80)])
    verdicts: list[list[bool]] = [[] for _ in range(8)]
    for at, i in reads:
        assembler, answer = slow if i == 7 else fast[i]
        text = " cells" if i == 7 else " cells" * 5
        assembler.feed({"id": "c", "choices": [{"index": 0, "delta": {"content": text}}]})
        verdicts[i].append(answer.heard(at, assembler.produced))
    assert not any(any(v) for v in verdicts[:7])
    assert any(verdicts[7])


# --- the race --------------------------------------------------------------------------------------
@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def after(seconds: float, value: Any = None, error: Exception | None = None) -> Any:
    async def run() -> Any:
        await anyio.sleep(seconds)
        if error is not None:
            raise error
        return value

    return run


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("primary", "hedge", "expected"),
    [
        (after(0.0, "p"), after(5.0, "h"), ("p", False)),
        (after(5.0, "p"), after(0.0, "h"), ("h", True)),
        (after(0.0, error=ValueError("p")), after(0.01, "h"), ("h", True)),
        (after(0.01, "p"), after(0.0, error=RuntimeError("refused")), ("p", False)),
    ],
)
async def test_the_first_answer_wins_and_a_failure_leaves_the_other(
    primary: Any, hedge: Any, expected: tuple[str, bool]
) -> None:
    with anyio.fail_after(2):  # the loser is cancelled, not waited for
        assert await race(primary, hedge) == expected


@pytest.mark.anyio
async def test_when_both_fail_the_primarys_error_is_raised() -> None:
    with pytest.raises(ValueError, match="primary"):
        await race(after(0.01, error=ValueError("primary")), after(0.0, error=KeyError("hedge")))


@pytest.mark.anyio
@pytest.mark.parametrize("copy_in_flight", [False, True])
async def test_a_failed_primary_ends_the_race_unless_the_copy_is_in_flight(copy_in_flight: bool) -> None:
    # A copy still waiting for a slot (or a retry) would hold the primary's slot while it waits: the
    # race ends with the primary's error and the call's own retry takes over. A copy in flight goes on.
    asked: list[bool] = []

    def alone() -> bool:
        asked.append(True)
        return copy_in_flight

    with anyio.fail_after(2):
        if copy_in_flight:
            assert await race(after(0.0, error=ValueError("p")), after(0.05, "h"), hedge_alone=alone) == (
                "h",
                True,
            )
        else:
            with pytest.raises(ValueError, match="p"):
                await race(after(0.0, error=ValueError("p")), after(10.0, "h"), hedge_alone=alone)
    assert asked == [True]


@pytest.mark.anyio
async def test_cancelling_the_race_cancels_both() -> None:
    with anyio.move_on_after(0.05) as scope:
        await race(after(10.0, "p"), after(10.0, "h"))
    assert scope.cancelled_caught


# --- the client against the simulator --------------------------------------------------------------
SCALE = 0.2  # a token every 4 ms, a slow answer's every 40 ms: many simulator ticks each
TOKEN_TIME = 0.02  # the simulator's default (simulated seconds)


def sim_config(**kw: Any) -> SimulatorConfig:
    base: dict[str, Any] = {
        "capacity": 16,
        "time_scale": SCALE,
        "token_time": TOKEN_TIME,
        "seed": 5,
        "sample_interval": 0.5,
    }
    base.update(kw)
    return SimulatorConfig(**base)


async def round_of_calls(client: AsyncOpenAI, n: int, tokens: int, *, stream: bool = False) -> list[Any]:
    results: list[Any] = [None] * n

    async def one(i: int) -> None:
        body = {"simulator": {"output_tokens": tokens}}
        messages: Any = [{"role": "user", "content": "x"}]
        if stream:
            s = await client.chat.completions.create(
                model="openai/gpt-oss-20b", messages=messages, stream=True, extra_body=body
            )
            results[i] = "".join([c.choices[0].delta.content or "" async for c in s if c.choices])
            return
        r = await client.chat.completions.create(
            model="openai/gpt-oss-20b", messages=messages, extra_body=body
        )
        results[i] = r.choices[0].message.content

    async with anyio.create_task_group() as tg:
        for i in range(n):
            tg.start_soon(one, i)
    return results


@pytest.mark.anyio
@pytest.mark.integration
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize(
    "tick",
    [
        0.005,  # about one token per event, the slow answer's and the others'
        # Steps of 20 ms: the others' 5 tokens come in one event, the slow answer's one token every
        # 40 ms in one event: 2x slower in events (under the 4x slowdown), 10x in what it produces.
        0.02,
    ],
)
async def test_a_slow_answer_is_hedged_and_the_copy_answers_first(anyio_backend: str, tick: float) -> None:
    script = ["none"] * 5 + ["slow"]  # the sixth request streams ten times slower than the rest
    async with VLLMSimulator(sim_config(fault_script=script, tick=tick)) as sim:
        client = AsyncOpenAI(api_key="EMPTY", base_url=sim.base_url, **library_settings(SCALE))
        start = anyio.current_time()
        results = await round_of_calls(client, 8, 120)
        took = anyio.current_time() - start
        stats = client.stats()
        await client.close()
        with anyio.move_on_after(5):  # the server sees the closed connection and stops generating
            while sim.stats().requests_aborted == 0:
                await anyio.sleep(0.01)
        sim_stats = sim.stats()
    assert all(isinstance(r, str) and r for r in results)
    assert (stats.hedges, stats.hedges_won) == (1, 1)
    assert sim_stats.requests_aborted >= 1  # the slow answer's connection was closed: the server stopped it
    slow_answer = 120 * TOKEN_TIME * 10 * SCALE  # the simulator's slow_factor is 10
    assert took < slow_answer / 2


@pytest.mark.anyio
@pytest.mark.integration
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_hedged_copy_that_fails_is_retried(anyio_backend: str) -> None:
    # The sixth request streams ten times slower; the ninth (its hedged copy) gets a 500: the copy is
    # retried as any attempt instead of leaving the call to the slow answer.
    script = ["none"] * 5 + ["slow", "none", "none", "500"]
    async with VLLMSimulator(sim_config(fault_script=script)) as sim:
        client = AsyncOpenAI(api_key="EMPTY", base_url=sim.base_url, **library_settings(SCALE))
        start = anyio.current_time()
        results = await round_of_calls(client, 8, 120)
        took = anyio.current_time() - start
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) and r for r in results)
    assert (stats.hedges, stats.hedges_won) == (1, 1) and stats.retries == 1
    slow_answer = 120 * TOKEN_TIME * 10 * SCALE
    assert took < slow_answer / 2


@pytest.mark.anyio
@pytest.mark.integration
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("setting", [{"hedge_slowdown": None}, {"stream": True}])
async def test_no_hedge_when_switched_off_or_for_a_users_stream(
    anyio_backend: str, setting: dict[str, Any]
) -> None:
    script = ["none"] * 5 + ["slow"]
    stream = bool(setting.pop("stream", False))
    async with VLLMSimulator(sim_config(fault_script=script)) as sim:
        settings = {**library_settings(SCALE), **setting}
        client = AsyncOpenAI(api_key="EMPTY", base_url=sim.base_url, **settings)
        results = await round_of_calls(client, 8, 60, stream=stream)
        stats = client.stats()
        await client.close()
    assert all(isinstance(r, str) and r for r in results)
    assert stats.hedges == 0 and stats.retries == 0


def test_hedge_slowdown_is_checked_and_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="hedge_slowdown"):
        AsyncOpenAI(api_key="x", base_url="http://127.0.0.1:9/v1", hedge_slowdown=1.0)
    monkeypatch.setenv("RESILIENT_LLM_HEDGE_SLOWDOWN", "fast")
    with pytest.raises(ConfigError, match="RESILIENT_LLM_HEDGE_SLOWDOWN"):
        AsyncOpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")
    monkeypatch.setenv("RESILIENT_LLM_HEDGE_SLOWDOWN", "off")
    client = AsyncOpenAI(api_key="x", base_url="http://127.0.0.1:9/v1")
    assert client._engine.hedge_slowdown is None


def test_a_pause_every_answer_met_does_not_make_the_answers_that_ran_through_it_slow() -> None:
    """A CPU vLLM taking in a burst: every answer running gets no token for seconds at each prefill
    step, then tokens every 0.25 s. The server's latest reads span one step; an answer's own window
    spans the pauses too. Against the server's pace over the same stretch it is not slow."""
    pace = warmed(0.25)
    answers = [AnswerPace(pace, 4.0) for _ in range(48)]
    at = 10.0
    for a in answers:
        a.heard(at, 1)
    produced = 1
    verdicts = []
    for step in range(40):
        at += 8.0 if step in (2, 5, 8) else 0.25  # three prefill pauses
        produced += 1
        verdicts += [a.heard(at, produced) for a in answers]
    assert not any(verdicts)
    assert pace.gap == pytest.approx(0.25)  # the latest reads alone would call them 4x+ slower


def test_pace_over_a_stretch_counts_the_reads_since_then() -> None:
    pace = Pace()
    for i in range(10):
        pace.observe(0.1, 1, at=float(i))  # 0.1 s per character
    for i in range(10, 20):
        pace.observe(1.0, 1, at=float(i))  # then 1 s per character
    assert pace.gap_since(15.0) == pytest.approx(1.0)
    assert pace.gap_since(0.0) == pytest.approx(0.55)
    assert pace.gap_since(-100.0) == pytest.approx(0.55)  # older than what is kept: all of it
    assert Pace().gap_since(0.0) is None
