"""The shipped tiny organizer: it loads in vLLM, solves held-out countdown problems in every mode, and its
accuracy stays above a floor set from the measured figure minus a margin (a regression guard)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncthink.batch import make_items, run_batch
from asyncthink.envs import make_task
from asyncthink.episode import EpisodeStatus, consistency_problems
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig

pytestmark = pytest.mark.slow

MODEL = Path(__file__).resolve().parents[1] / "models" / "tiny-organizer"
DEMO = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"
PROBLEMS, SAMPLES = 30, 4  # the first 30 of the demo's 62 held-out problems, 4 seeds each: 120 episodes a mode


def held_out_countdown():
    """The task and problems of the demo's countdown entry: number sets no training stage saw."""
    from asyncthink.eval.config import load_eval_config

    spec = next(t for t in load_eval_config(DEMO, []).tasks if t.name == "countdown")
    task = make_task("countdown", **spec.options)
    return task, task.dataset("test", n=spec.n, seed=0)[:PROBLEMS]
# Mean score of the shipped model on all 62 x 7 (`make demo`, 2-core CPU, vLLM 0.32): sequential 0.515, parallel
# 0.550, AsyncThink 0.540; format errors 2 / 3 / 4 %. The floors were set at about half of the previous model's
# figures on this subset (0.458 / 0.479 / 0.579): a regression guard, not a tuning target.
FLOOR = {"sequential": 0.22, "parallel": 0.24, "asyncthink": 0.29}
MAX_FORMAT_ERRORS = 0.25


@pytest.fixture(scope="module")
async def organizer_engine():
    from asyncthink.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine.create(str(MODEL), dtype="float32", max_model_len=2048, kv_cache_gib=1)
    yield engine
    await engine.close()


@pytest.mark.parametrize("mode", ["sequential", "parallel", "asyncthink"])
async def test_solves_held_out_problems_in_every_mode(organizer_engine, mode):
    task, problems = held_out_countdown()
    runtime = RuntimeConfig(mode=mode, capacity=4, max_organizer_tokens=512, max_worker_tokens=256, max_forks=6,
                            parallel_traces=3, temperature=0.7, prompts={"style": "compact"})
    episodes = await run_batch(
        EpisodeExecutor(organizer_engine, runtime, task),
        make_items(problems, samples=SAMPLES, seed=0),
        max_in_flight=32,
        progress=False,
    )
    assert all(consistency_problems(ep) == [] for ep in episodes)
    assert all(ep.status != EpisodeStatus.ERROR for ep in episodes)
    score = sum(ep.score or 0.0 for ep in episodes) / len(episodes)
    format_errors = sum(ep.status == EpisodeStatus.FORMAT_ERROR for ep in episodes) / len(episodes)
    print(f"{mode}: mean score {score:.3f}, format errors {format_errors:.2f}, on {len(episodes)} held-out episodes")
    assert score >= FLOOR[mode]
    assert format_errors <= MAX_FORMAT_ERRORS
    if mode == "asyncthink":
        assert sum(ep.metrics["forks"] for ep in episodes) / len(episodes) >= 1.0
