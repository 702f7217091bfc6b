"""What a rollout records for training (issue 13): who is to blame for a failure, and no made-up logprobs.

- a context overflow the policy caused (a join's resume that no longer fits) is
  the policy's failure: ``budget_exceeded``, rewarded ``r_format_error``;
- an overflow of the task's own prompt stays an infrastructure ``error``;
- an engine that streams tokens without their logprobs fails the episode
  (``error``) instead of recording 0.0, in the executor and at the vLLM and
  OpenAI engine boundaries;
- an empty or unextractable ``<ANSWER></ANSWER>`` is ``no_answer``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from asyncthink.engines.openai_engine import _StreamState
from asyncthink.engines.types import Delta, EngineError, GenerateRequest
from asyncthink.engines.vllm_engine import _sampled_logprobs
from asyncthink.envs import make_task
from asyncthink.episode import EpisodeStatus
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from tests.fakes import ScriptedEngine

JOINED = {"Q": "a<FORK-1>sub</FORK-1><JOIN-1>b<ANSWER>1</ANSWER>", "sub": "<RETURN>" + "r" * 60 + "</RETURN>"}


async def run(engine, question: str = "Q", task=None):
    return await EpisodeExecutor(engine, RuntimeConfig(), task).run({"question": question, "id": "p", "gold": "1"})


async def test_a_join_that_overflows_the_context_is_the_policys_budget_failure():
    # organizer prompt 600 tokens, worker 168 + 62: both fit in 640; the resume after the join (668) does not
    ep = await run(ScriptedEngine(JOINED, max_model_len=640))
    assert ep.status == EpisodeStatus.BUDGET_EXCEEDED, ep.error
    assert ep.error_codes == ["budget_exceeded"] and "context" in ep.format_errors[0].detail
    ok = await run(ScriptedEngine(JOINED, max_model_len=700))
    assert ok.status == EpisodeStatus.OK


async def test_a_task_prompt_that_does_not_fit_stays_an_infrastructure_error():
    ep = await run(ScriptedEngine(JOINED, max_model_len=500))  # the organizer's first prompt is 600 tokens
    assert ep.status == EpisodeStatus.ERROR and ep.error_kind == "context_length"
    assert not ep.has_format_error


class NoLogprobEngine(ScriptedEngine):
    """Streams the script's tokens but drops the logprobs of every ``every``-th delta."""

    def __init__(self, scripts, every: int = 1) -> None:
        super().__init__(scripts)
        self.every, self.count = every, 0

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        async for delta in super().generate(request):
            self.count += 1
            yield Delta(delta.token_ids, None if self.count % self.every == 0 else delta.logprobs, delta.final)


@pytest.mark.parametrize("every", [1, 5])
async def test_missing_logprobs_fail_the_episode_instead_of_becoming_zero(every):
    ep = await run(NoLogprobEngine(JOINED, every))
    assert ep.status == EpisodeStatus.ERROR and "logprobs" in ep.error
    assert all(lp != 0.0 for row in ep.rows for lp, m in zip(row.logprobs, row.completion_mask, strict=True) if m)


def test_vllm_boundary_rejects_missing_logprobs():
    class Lp:
        logprob = -0.5

    assert _sampled_logprobs([7, 8], [{7: Lp()}, {8: Lp()}]) == [-0.5, -0.5]
    for missing in (None, [], [{7: Lp()}], [{7: Lp()}, {9: Lp()}]):
        with pytest.raises(EngineError, match="logprobs"):
            _sampled_logprobs([7, 8], missing)


def test_openai_boundary_rejects_null_logprobs():
    state = _StreamState.__new__(_StreamState)
    state.final, state.stop, state.produced = None, None, 0
    good = {"token_ids": [5, 6], "logprobs": {"token_logprobs": [-0.1, -0.2]}}
    assert state._on_choices([good]).logprobs == [-0.1, -0.2]
    with pytest.raises(EngineError, match="logprobs"):
        state._on_choices([{"token_ids": [5, 6], "logprobs": {"token_logprobs": [-0.1, None]}}])


@pytest.mark.parametrize("answer", ["<ANSWER></ANSWER>", "<ANSWER>   </ANSWER>"])
async def test_an_empty_answer_is_no_answer(answer):
    ep = await run(ScriptedEngine({"Q": "thinking " + answer}), task=make_task("countdown"))
    assert ep.status == EpisodeStatus.FORMAT_ERROR and ep.error_codes == ["no_answer"]


async def test_an_unextractable_answer_is_no_answer():
    ep = await run(ScriptedEngine({"Q": r"<ANSWER>\boxed{}</ANSWER>"}), task=make_task("math"))
    assert ep.status == EpisodeStatus.FORMAT_ERROR and ep.error_codes == ["no_answer"]
    ok = await run(ScriptedEngine({"Q": r"<ANSWER>\boxed{1}</ANSWER>"}), task=make_task("math"))
    assert ok.status == EpisodeStatus.OK and ok.score == 1.0
