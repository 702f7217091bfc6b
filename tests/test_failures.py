"""Failures go where they belong (issue 28), on fake engines.

- a request the engine ends itself (finish reason ``abort`` or ``error``) ends the episode as ``error``, never
  as the policy's format error, on the organizer or a worker, in the executor and in an RL step (dropped from
  the update, counted as ``status/error``);
- an exception inside the runtime (a task's answer extraction, an episode that raises out of the executor) is
  ``error`` of kind ``internal``, counted apart as ``runtime_error``, its traceback kept in the record and
  logged once per distinct error; an RL step above ``max_error_fraction`` of such failures stops the run.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path

import pytest

from asyncthink import executor as executor_module
from asyncthink.batch import make_items, run_batch
from asyncthink.engines.types import Delta, Final, FinishReason, GenerateRequest
from asyncthink.envs import make_task
from asyncthink.episode import EpisodeStatus, Outcome, consistency_problems
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.training.rl import GRPOTrainer
from asyncthink.training.rl_config import RLConfig
from tests.fakes import OutcomeEngine, ScriptedEngine
from tests.rl_fake_run import OUTCOMES, config, spy_on_updates

JOINED = {"Q": "a<FORK-1>sub</FORK-1>b<JOIN-1>c<ANSWER>1+2+3=6</ANSWER>", "sub": "think<RETURN>r</RETURN>"}
ABORT, BUG = "ENGINE-ABORTS", "RUNTIME-BUG"


@pytest.fixture(autouse=True)
def fresh_error_log(monkeypatch):
    """Each test starts with no runtime error logged yet (the once-per-error memory is per process)."""
    monkeypatch.setattr(executor_module, "_LOGGED_ERRORS", set())


class EndingEngine(ScriptedEngine):
    """A ``ScriptedEngine`` that ends the request of row ``row`` itself, after 2 tokens, with ``reason``."""

    def __init__(self, scripts, row: str, reason: FinishReason) -> None:
        super().__init__(scripts)
        self.row, self.reason = row, reason

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        if self._segment(request) != self.scripts[self.row]:
            async with aclosing(super().generate(request)) as stream:  # a stopped request closes the inner one
                async for delta in stream:
                    yield delta
            return
        ids = self.tokenizer.encode(self.scripts[self.row])[:2]
        yield Delta(ids, [-0.5] * len(ids), Final(self.reason, None, 0, len(request.prompt_ids), len(ids)))


@pytest.mark.parametrize("row", ["Q", "sub"])
@pytest.mark.parametrize("reason,kind", [(FinishReason.ABORT, "aborted"), (FinishReason.ERROR, "server")])
async def test_an_engine_ended_request_is_an_error_not_a_format_error(row, reason, kind):
    engine = EndingEngine(JOINED, row, reason)
    ep = await EpisodeExecutor(engine, RuntimeConfig(), make_task("countdown")).run({"question": "Q", "id": "p"})
    assert ep.status == EpisodeStatus.ERROR and ep.error_kind == kind and ep.outcome == Outcome.ERROR
    assert not ep.has_format_error and ep.format_errors == [] and str(reason) in ep.error
    cut = ep.organizer if row == "Q" else ep.rows[1]
    assert cut.finish_reason == str(reason) and cut.generated_tokens == 2
    assert consistency_problems(ep) == [] and engine.live == 0


@pytest.mark.parametrize("traces", [1, 2])
async def test_every_parallel_trace_ended_by_the_engine_is_an_error_one_trace_too(traces):
    """One trace runs inline (no task per trace): its engine failure is still the episode's, not a no_answer."""
    engine = EndingEngine({"Q": "x<ANSWER>1</ANSWER>"}, "Q", FinishReason.ABORT)
    cfg = RuntimeConfig(mode="parallel", parallel_traces=traces)
    ep = await EpisodeExecutor(engine, cfg, make_task("countdown")).run({"question": "Q", "id": "p"})
    assert ep.status == EpisodeStatus.ERROR and ep.error_kind == "aborted" and ep.format_errors == []


class ScoreBreaksOnNothing:
    """Countdown, except that scoring a missing answer raises (a user's task that never expected one)."""

    def __init__(self) -> None:
        self.inner = make_task("countdown")

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def score(self, extracted, problem):
        if extracted is None:
            raise TypeError("nothing to score")
        return self.inner.score(extracted, problem)


async def test_a_scorer_breaking_after_a_format_error_keeps_the_format_error():
    engine = ScriptedEngine({"Q": "x<ANSWER> </ANSWER>"})
    ep = await EpisodeExecutor(engine, RuntimeConfig(), ScoreBreaksOnNothing()).run({"question": "Q", "id": "p"})
    assert ep.status == EpisodeStatus.FORMAT_ERROR and ep.error_codes == ["no_answer"] and ep.error_kind is None
    assert "TypeError" in ep.info["later_runtime_error"]


class BuggyTask:
    """Countdown, except that extracting an answer that says ``BUG`` raises: a bug in the runtime's task code."""

    def __init__(self) -> None:
        self.inner = make_task("countdown", n_numbers=3, max_number=9, min_target=5, max_target=40, required=2)

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def extract_answer(self, answer_text):
        if answer_text and BUG in answer_text:
            raise KeyError("the extractor's table has no such entry")
        return self.inner.extract_answer(answer_text)


async def test_a_runtime_exception_is_its_own_outcome_logged_once(caplog):
    engine = ScriptedEngine({"Q": f"x<ANSWER>{BUG}</ANSWER>"})
    executor = EpisodeExecutor(engine, RuntimeConfig(), BuggyTask())
    with caplog.at_level(logging.DEBUG, logger="asyncthink.executor"):
        eps = [await executor.run({"question": "Q", "id": "p"}, seed=k, episode_id=str(k)) for k in range(3)]
    for ep in eps:
        assert ep.status == EpisodeStatus.ERROR and ep.error_kind == "internal"
        assert ep.outcome == Outcome.RUNTIME_ERROR and not ep.has_format_error
        assert "KeyError" in ep.error and "in extract_answer" in ep.info["traceback"]
    logged = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(logged) == 1 and "Traceback" in logged[0].getMessage() and "extract_answer" in logged[0].getMessage()
    assert any("runtime error again in episode 2" in r.getMessage() for r in caplog.records)  # one line, at DEBUG


async def test_an_episode_that_raises_out_of_the_executor_is_a_runtime_error(caplog):
    class Raising(EpisodeExecutor):
        async def run(self, problem, seed=0, episode_id="0", on_event=None):
            if problem["question"] == "boom":
                raise ZeroDivisionError("a bug in the executor")
            return await super().run(problem, seed, episode_id, on_event)

    ex = Raising(ScriptedEngine({"ok": "<ANSWER>1</ANSWER>"}), RuntimeConfig())
    items = make_items([{"id": "a", "question": "ok"}, {"id": "b", "question": "boom"}], samples=2)
    with caplog.at_level(logging.ERROR, logger="asyncthink.executor"):
        eps = await run_batch(ex, items, max_in_flight=2, progress=False)
    assert [ep.outcome for ep in eps] == [Outcome.OK] * 2 + [Outcome.RUNTIME_ERROR] * 2
    assert all("ZeroDivisionError" in ep.info["traceback"] for ep in eps[2:])
    assert len([r for r in caplog.records if "ZeroDivisionError" in r.getMessage()]) == 1


# ------------------------------------------------------------ in an RL step


class FailingOutcomes(OutcomeEngine):
    """An ``OutcomeEngine`` whose outcome ``ABORT`` is a request the engine ends itself, after 3 tokens."""

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        text = self.tokenizer.decode(request.prompt_ids, skip_special_tokens=False)
        if self.marker in text and self.outcomes[(request.sampling.seed or 0) % len(self.outcomes)] == ABORT:
            ids = self.tokenizer.encode("<ANSWER>1", add_special_tokens=False)[:3]
            yield Delta(ids, [-1.0] * len(ids), Final(FinishReason.ABORT, None, 0, len(request.prompt_ids), len(ids)))
            return
        async for delta in super().generate(request):
            yield delta


def trainer_with_buggy_task(cfg: RLConfig) -> GRPOTrainer:
    trainer = GRPOTrainer(cfg)
    trainer.task = BuggyTask()  # the executor is built from it when the engine starts
    return trainer


async def test_rl_drops_and_counts_engine_aborts_and_runtime_errors_apart(tiny_model_dir, tmp_path):
    cfg = config(str(tiny_model_dir), str(tmp_path), 1)
    cfg.max_error_fraction = 1.0
    trainer = trainer_with_buggy_task(cfg)
    seen = spy_on_updates(trainer)
    outcomes = [OUTCOMES[0], OUTCOMES[2], OUTCOMES[3], ABORT, f"<ANSWER>{BUG}</ANSWER>"]
    await trainer.train(FailingOutcomes(trainer.tokenizer, outcomes))
    by_outcome = {o: [a for ep, a in seen["pairs"] if ep.outcome == o] for o in Outcome}
    assert by_outcome[Outcome.ERROR] and by_outcome[Outcome.RUNTIME_ERROR]  # the seeds drew both
    assert all(a is None for o in (Outcome.ERROR, Outcome.RUNTIME_ERROR) for a in by_outcome[o])
    assert any(a is not None for a in by_outcome[Outcome.OK])  # the rest of their groups is still trained
    assert all(ep.error_kind == "aborted" for ep, _ in seen["pairs"] if ep.outcome == Outcome.ERROR)
    m = json.loads((Path(cfg.out) / "metrics.jsonl").read_text().splitlines()[-1])
    assert m["status/error"] == len(by_outcome[Outcome.ERROR])
    assert m["status/runtime_error"] == len(by_outcome[Outcome.RUNTIME_ERROR])
    assert m["dropped_episodes"] >= m["status/error"] + m["status/runtime_error"]  # and groups left with < 2
    assert sum(m[f"status/{o}"] for o in Outcome) == 8


async def test_runtime_errors_above_max_error_fraction_stop_the_run(tiny_model_dir, tmp_path, caplog):
    cfg = config(str(tiny_model_dir), str(tmp_path), 3)
    cfg.max_error_fraction = 0.1
    trainer = trainer_with_buggy_task(cfg)
    with caplog.at_level(logging.ERROR, logger="asyncthink.executor"), \
            pytest.raises(RuntimeError, match=r"runtime errors\), more than max_error_fraction=0\.1; first: KeyError"):
        await trainer.train(FailingOutcomes(trainer.tokenizer, [OUTCOMES[0], f"<ANSWER>{BUG}</ANSWER>"]))
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["status/runtime_error"] > 1  # the failing step is logged, nothing after it
    assert len([r for r in caplog.records if "Traceback" in r.getMessage()]) == 1  # once, however many episodes
