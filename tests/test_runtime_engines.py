"""The executor on real engines with the tiny random model: many concurrent episodes, consistent records.

A random model mostly writes format errors; what matters here is that every
episode ends, its record is consistent, and no request outlives it.
"""

from __future__ import annotations

import asyncio

import pytest

from asyncthink.batch import make_items, run_batch
from asyncthink.episode import EpisodeStatus, consistency_problems
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig

pytestmark = pytest.mark.slow

PROBLEMS = [{"id": f"p{i}", "question": f"Use {i} {i + 2} {i + 5} to make {3 * i + 7}"} for i in range(8)]


def config(mode: str) -> RuntimeConfig:
    return RuntimeConfig(mode=mode, max_organizer_tokens=48, max_worker_tokens=24, parallel_traces=3,
                         temperature=1.0, prompts={"style": "compact"})


def check_records(episodes, n):
    assert len(episodes) == n
    for ep in episodes:
        assert consistency_problems(ep) == [], ep.episode_id
        assert ep.status in (EpisodeStatus.OK, EpisodeStatus.FORMAT_ERROR, EpisodeStatus.BUDGET_EXCEEDED)
        assert ep.metrics["total_tokens"] == sum(r.generated_tokens for r in ep.rows) > 0
        for row in ep.rows:
            assert all(lp <= 0 for lp in row.logprobs)
            assert row.requests and row.requests[-1].end == len(row.completion_ids)


@pytest.mark.parametrize("mode", ["sequential", "parallel", "asyncthink"])
async def test_32_concurrent_episodes_on_vllm(vllm_engine, mode):
    executor = EpisodeExecutor(vllm_engine, config(mode))
    episodes = await run_batch(executor, make_items(PROBLEMS, samples=4, seed=1), max_in_flight=32, progress=False)
    check_records(episodes, 32)
    await asyncio.sleep(0.2)
    assert vllm_engine._llm.output_processor.get_num_unfinished_requests() == 0


async def test_episodes_on_the_transformers_engine(hf_engine):
    executor = EpisodeExecutor(hf_engine, config("asyncthink"))
    episodes = await run_batch(executor, make_items(PROBLEMS, samples=2, seed=2), max_in_flight=16, progress=False)
    check_records(episodes, 16)
    assert not hf_engine._active and not hf_engine._pending
