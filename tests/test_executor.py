"""The episode executor on a scripted engine: forks while streaming, joins, errors, budgets, cancellation."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from asyncthink.batch import make_items, run_batch
from asyncthink.detok import IncrementalDetokenizer
from asyncthink.episode import EpisodeStatus, EventKind, consistency_problems
from asyncthink.executor import EpisodeExecutor
from asyncthink.metrics import episode_metrics
from asyncthink.runtime_config import Mode, RuntimeConfig
from asyncthink.task import Task
from tests.fakes import CharTokenizer, ScriptedEngine, loop_gaps

# every test runs on each path: (whole deltas at once, tags as text, tokens per delta, deltas pushed by the engine)
PATHS = {"per_token": (False, False, 1, False), "bulk": (True, False, 5, False), "text_tags": (True, True, 5, False),
         "push": (True, False, 5, True)}


@pytest.fixture(autouse=True, params=list(PATHS))
def path(request, monkeypatch):
    """Runs the test on one path; ``@pytest.mark.paths(...)`` limits a test that counts tokens or times them."""
    only = request.node.get_closest_marker("paths")
    if only and request.param not in only.args:
        pytest.skip(f"counts tokens or times them on {only.args} only")
    bulk, text_tags, per_delta, push = PATHS[request.param]
    monkeypatch.setattr(IncrementalDetokenizer, "bulk", bulk)
    monkeypatch.setattr(CharTokenizer, "text_tags", text_tags)
    monkeypatch.setattr(ScriptedEngine, "default_tokens_per_delta", per_delta)
    monkeypatch.setattr(ScriptedEngine, "push_native", push)
    return request.param

TWO = {
    "Q": "plan <FORK-1>s1</FORK-1> and <FORK-2>s2</FORK-2> think <JOIN-1> then <JOIN-2> so <ANSWER>42</ANSWER>",
    "s1": "a<RETURN>r1</RETURN>",
    "s2": "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb<RETURN>r2</RETURN>",
}


async def run(scripts, question="Q", delay=0.0, **cfg):
    engine = ScriptedEngine(scripts, delay_s=delay)
    ep = await EpisodeExecutor(engine, RuntimeConfig(**cfg)).run({"question": question, "id": "p"})
    assert consistency_problems(ep) == []
    assert engine.live == 0, "a request outlived its episode"
    return ep, engine


async def test_valid_episode_forks_joins_and_answers(path):
    ep, engine = await run(TWO)
    assert ep.status == EpisodeStatus.OK and ep.answer == "42" and ep.format_errors == []
    org = ep.organizer
    assert org.text.endswith("<ANSWER>42</ANSWER>") and "<JOIN-1>r1</JOIN-1>" in org.text
    assert [r.row_id for r in ep.rows] == ["0", "0.1", "0.2"] and ep.rows[1].subquery == "s1"
    kinds = [(e.kind, e.index) for e in org.events]
    assert kinds == [(EventKind.FORK, 1), (EventKind.FORK, 2), (EventKind.JOIN, 1), (EventKind.JOIN, 2)]
    tails = 2 if path == "text_tags" else 0  # a join written as text stops at "<JOIN-", then reads "1>"
    assert len(org.requests) == 3 + tails  # one request per join, plus the last


async def test_resume_prompt_is_previous_prompt_plus_generated_plus_appended():
    ep, engine = await run(TWO)
    org_requests = [
        r for r in engine.requests if r.prompt_ids[: len(ep.organizer.prompt_ids)] == ep.organizer.prompt_ids
    ]
    org = ep.organizer
    for req, span in zip(org_requests, org.requests, strict=True):
        assert req.prompt_ids == org.prompt_ids + org.completion_ids[: span.start]
    appended = [t for t, m in zip(org.completion_ids, org.completion_mask, strict=True) if m == 0]
    assert engine.tokenizer.decode(appended) == "r1</JOIN-1>r2</JOIN-2>"


async def test_worker_starts_while_organizer_streams():
    ep, _ = await run(TWO, delay=0.002)
    fork_time = ep.organizer.events[0].time_s
    w1 = ep.row("0.1")
    assert w1.start_s == pytest.approx(fork_time, abs=0.01)
    assert w1.start_s < ep.organizer.requests[0].end_s  # the worker ran while the first request was live


async def test_join_of_running_worker_waits_and_finished_worker_does_not():
    ep, _ = await run(TWO, delay=0.002)
    join1, join2 = [e for e in ep.organizer.events if e.kind == EventKind.JOIN]
    assert join1.wait_s < 0.01 and join2.wait_s > 0.02  # s1 is done by then; s2 is long
    m = ep.metrics
    assert m["forks"] == 2 and m["latency"] == episode_metrics(ep)["latency"]


@pytest.mark.paths("per_token", "bulk")
async def test_metrics_of_a_scripted_episode_by_hand():
    scripts = {"Q": "ab<FORK-1>s</FORK-1>c<JOIN-1>d<ANSWER>1</ANSWER>", "s": "xxxxxxxxxxxxxxxxxxxx<RETURN>r</RETURN>"}
    ep, _ = await run(scripts)
    # organizer: "ab" + <FORK-1> + "s" + </FORK-1> = 5 tokens, then "c<JOIN-1>" = 2 -> blocked at 7.
    # worker: 20 x + <RETURN> + r + </RETURN> = 23 tokens from step 5 -> ends at 28.
    # after join: "d" <ANSWER> "1" </ANSWER> = 4 tokens -> latency 32.
    assert ep.metrics["latency"] == 32
    assert ep.metrics["eta"] == pytest.approx((11 + 23) / 32)
    assert ep.metrics["total_tokens"] == 34


@pytest.mark.parametrize(
    "scripts,code",
    [
        ({"Q": "<FORK-1>s</FORK-1><FORK-1>s</FORK-1>"}, "duplicate_fork"),
        ({"Q": "<JOIN-3>"}, "join_unknown"),
        ({"Q": "<FORK-1>s</FORK-1><JOIN-1><JOIN-1>", "s": "<RETURN>x</RETURN>"}, "join_twice"),
        ({"Q": "<FORK-x>"}, "malformed_tag"),
        ({"Q": "<FORK-1>s</FORK-1><JOIN-1><ANSWER>1</ANSWER>", "s": "no return"}, "worker_no_return"),
        ({"Q": "I have no answer"}, "no_answer"),
        ({"Q": "<FORK-1>s</FORK-1><ANSWER>1</ANSWER>", "s": "<RETURN>x</RETURN>"}, "unjoined_worker"),
        ({"Q": "<FORK-1>s</FORK-1><JOIN-1><ANSWER>1</ANSWER>", "s": "<FORK-1>t</FORK-1>"}, "nested_fork"),
    ],
)
async def test_every_format_error_ends_the_episode(scripts, code):
    ep, engine = await run(scripts)
    assert ep.status == EpisodeStatus.FORMAT_ERROR and ep.error_codes == [code]
    assert ep.answer is None


POOL = {"Q": "<FORK-1>s1</FORK-1><FORK-2>s2</FORK-2><JOIN-1><JOIN-2><ANSWER>1</ANSWER>",
        "s1": "aaaaaaaaaa<RETURN>1</RETURN>", "s2": "b<RETURN>2</RETURN>"}


async def test_fork_into_full_pool_error_policy():
    ep, _ = await run(POOL, capacity=2, pool_policy="error")
    assert ep.error_codes == ["pool_overflow"]


async def test_fork_into_full_pool_wait_policy_queues_the_worker():
    ep, _ = await run(POOL, delay=0.002, capacity=2, pool_policy="wait")
    assert ep.status == EpisodeStatus.OK
    assert ep.row("0.2").start_s >= ep.row("0.1").end_s - 1e-3  # one worker slot: s2 waited for s1
    assert ep.metrics["latency"] > episode_metrics(ep.__class__(**{**ep.__dict__, "pool_policy": "error"}))["latency"]


RECURSIVE = {
    "Q": "<FORK-1>w</FORK-1><JOIN-1><ANSWER>1</ANSWER>",
    "w": "<FORK-1>sub</FORK-1><JOIN-1><RETURN>w done</RETURN>",
    "sub": "<RETURN>leaf</RETURN>",
}


async def test_recursion_within_the_depth_limit():
    ep, _ = await run(RECURSIVE, max_depth=1)
    assert ep.status == EpisodeStatus.OK and ep.row("0.1.1").depth == 2
    assert "<JOIN-1>leaf</JOIN-1>" in ep.row("0.1").text and "<JOIN-1>w done</JOIN-1>" in ep.organizer.text
    assert ep.metrics["max_depth"] == 2


async def test_recursion_beyond_the_depth_limit():
    deeper = {**RECURSIVE, "sub": "<FORK-1>leaf</FORK-1><JOIN-1><RETURN>x</RETURN>", "leaf": "<RETURN>y</RETURN>"}
    ep, _ = await run(deeper, max_depth=1)
    assert ep.error_codes == ["budget_exceeded"] and "depth" in ep.format_errors[0].detail
    ep_off, _ = await run(RECURSIVE, max_depth=0)
    assert ep_off.error_codes == ["nested_fork"]


@pytest.mark.parametrize(
    "cfg,detail",
    [
        ({"max_organizer_tokens": 10}, "10-token budget"),
        ({"max_worker_tokens": 20}, "20-token budget"),
        ({"max_forks": 1}, "fork budget"),
    ],
)
async def test_each_token_and_fork_budget(cfg, detail):
    ep, _ = await run(TWO, **cfg)
    assert ep.status == EpisodeStatus.BUDGET_EXCEEDED and ep.error_codes == ["budget_exceeded"]
    assert detail in ep.format_errors[0].detail


@pytest.mark.paths("per_token", "push")
async def test_wall_time_budget():
    # the episode needs over 1 s; 0.4 s of wall time leaves 0.2 s before a token gap reads as a stalled engine
    # (0.1 s left 50 ms, which a loaded machine's scheduler can exceed: then the episode was an engine timeout)
    ep, engine = await run(TWO, delay=0.01, wall_time_s=0.4)
    assert ep.status == EpisodeStatus.BUDGET_EXCEEDED and "wall time" in ep.format_errors[0].detail
    assert engine.aborted >= 1


@pytest.mark.paths("per_token", "bulk", "push")
async def test_cancellation_mid_episode_leaves_no_tasks():
    engine = ScriptedEngine(TWO, delay_s=0.01)
    before = asyncio.all_tasks()
    task = asyncio.create_task(EpisodeExecutor(engine, RuntimeConfig()).run({"question": "Q"}))
    await asyncio.sleep(0.25)  # both workers are running by now
    assert engine.live >= 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert asyncio.all_tasks() - before == set()
    assert engine.live == 0 and engine.aborted >= 2


@pytest.mark.paths("per_token", "bulk")  # counts aborts: a pushed request may finish before its stop lands
async def test_worker_failure_aborts_siblings_and_organizer():
    scripts = {**TWO, "s1": "oops, no return"}
    ep, engine = await run(scripts, delay=0.002)
    assert ep.error_codes == ["worker_no_return"] and engine.live == 0 and engine.aborted >= 2


@pytest.mark.paths("push")
async def test_worker_failure_stops_an_organizer_that_runs_in_the_episodes_own_task():
    scripts = {**TWO, "s1": "oops, no return", "Q": TWO["Q"].replace(" think ", " think" + " z" * 200 + " ")}
    before = asyncio.all_tasks()
    ep, engine = await run(scripts, delay=0.002)
    assert ep.error_codes == ["worker_no_return"] and engine.live == 0
    assert ep.organizer.requests[-1].finish_reason == "abort"  # stopped mid-stream, not at its join
    assert asyncio.all_tasks() - before == set()


async def test_sequential_mode_has_one_row_and_no_forks():
    ep, _ = await run({"Q": "think think <ANSWER>7</ANSWER>"}, mode="sequential")
    assert ep.status == EpisodeStatus.OK and ep.answer == "7" and len(ep.rows) == 1
    assert ep.metrics["latency"] == ep.organizer.generated_tokens and ep.metrics["eta"] == 1


async def test_parallel_mode_votes_and_reports_longest_trace():
    ep, _ = await run({"Q": "x<ANSWER>7</ANSWER>"}, mode="parallel", parallel_traces=3)
    assert [r.row_id for r in ep.rows] == ["t0", "t1", "t2"] and ep.answer == "7"
    assert ep.info["votes"] == {"7": 3} and ep.capacity == 3
    assert ep.metrics["latency"] == ep.rows[0].generated_tokens and ep.metrics["eta"] == pytest.approx(3.0)


async def test_batch_runner_records_errors_and_keeps_going():
    class Exploding(ScriptedEngine):
        async def generate(self, request):
            if "boom" in self.tokenizer.decode(request.prompt_ids):
                raise RuntimeError("bug")
            async for d in super().generate(request):
                yield d

    engine = Exploding({"ok": "<ANSWER>1</ANSWER>"})
    ex = EpisodeExecutor(engine, RuntimeConfig(mode=Mode.SEQUENTIAL))
    items = make_items([{"id": "a", "question": "ok"}, {"id": "b", "question": "boom"}], samples=3)
    eps = await run_batch(ex, items, max_in_flight=2, progress=False)
    assert [e.episode_id for e in eps] == ["a#0", "a#1", "a#2", "b#0", "b#1", "b#2"]
    assert [e.status for e in eps] == [EpisodeStatus.OK] * 3 + [EpisodeStatus.ERROR] * 3
    assert "bug" in eps[-1].error


async def test_one_parallel_trace_failing_in_the_engine_costs_that_trace_only():
    from asyncthink.engines.types import EngineError, EngineErrorKind

    class FlakyEngine(ScriptedEngine):
        async def generate(self, request):
            if request.sampling.seed is not None and request.sampling.seed % 3 == 0:
                raise EngineError(EngineErrorKind.CONNECTION, "upstream dropped the request")
            async for delta in super().generate(request):
                yield delta

    engine = FlakyEngine({"Q": "<ANSWER>42</ANSWER>"})
    cfg = RuntimeConfig(mode=Mode.PARALLEL, parallel_traces=6)
    ep = await EpisodeExecutor(engine, cfg).run({"question": "Q", "id": "p"}, seed=1)
    failed = {r.row_id for r in ep.rows if r.finish_reason == "error"}
    assert failed and len(failed) < 6 and set(ep.info["trace_errors"]) == failed
    assert ep.status == EpisodeStatus.OK and ep.answer == "42"

    class DownEngine(ScriptedEngine):
        async def generate(self, request):
            raise EngineError(EngineErrorKind.CONNECTION, "upstream down")
            yield  # an async generator that fails on its first step

    down = await EpisodeExecutor(DownEngine({}), cfg).run({"question": "Q", "id": "p"}, seed=1)
    assert down.status == EpisodeStatus.ERROR and down.error_kind == "connection"


class SlowScorer(Task):
    """Scoring that blocks its thread (as math-verify can on a hard expression), counting the threads it ran on."""

    name = "slow"

    def __init__(self) -> None:
        self.threads: set[int] = set()

    def dataset(self, split="test", n=None, seed=0):
        return []

    def instruction(self):
        return ""

    def extract_answer(self, answer_text):
        self.threads.add(threading.get_ident())
        return answer_text

    def score(self, answer, problem):
        time.sleep(0.2)
        return float(answer == "42")

    def normalize(self, answer):
        return answer


@pytest.mark.paths("push")
async def test_scoring_runs_off_the_event_loop():
    task = SlowScorer()
    executor = EpisodeExecutor(ScriptedEngine(TWO), RuntimeConfig(), task)
    async with loop_gaps(0.01) as gaps:
        eps = await asyncio.gather(*(executor.run({"question": "Q", "id": f"p{k}"}) for k in range(4)))
    assert [ep.score for ep in eps] == [1.0] * 4
    assert max(gaps) < 0.15  # four blocking 0.2 s scorers, and the loop never waited on one
    assert threading.get_ident() not in task.threads
