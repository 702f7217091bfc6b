"""The shipped tiny math organizer: it loads in vLLM, solves held-out generated math problems in AsyncThink and
sequential mode with the evaluation config's settings, and stays above a floor set from the measured figure
minus a margin (a regression guard for the checkpoint the README's math RL result is about)."""

from __future__ import annotations

from pathlib import Path

import pytest

from asyncthink.batch import make_items, run_batch
from asyncthink.envs import make_task
from asyncthink.episode import EpisodeStatus, consistency_problems
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import Mode

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "models" / "tiny-math-organizer"
CONFIG = REPO / "configs" / "eval_math_gen_tiny.yaml"
PROBLEMS = 50  # the first 50 of the evaluation config's 200 held-out problems, with the same 4 seeds each
# Measured on these 200 episodes (2-core CPU, vLLM 0.32): AsyncThink 0.270, sequential 0.260, format errors 1.0 %
# each, on the held-out list that holds each sum once; the README's list (one sum in several wordings, before
# math_gen drew by content) gave 0.305 with 1.72 forks an episode and 0.310. The floors are about half.
FLOOR = {"asyncthink": 0.15, "sequential": 0.15}
MAX_FORMAT_ERRORS = 0.10


@pytest.fixture(scope="module")
async def math_engine():
    from asyncthink.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine.create(str(MODEL), dtype="float32", max_model_len=512, kv_cache_gib=1)
    yield engine
    await engine.close()


@pytest.mark.parametrize("mode", ["asyncthink", "sequential"])
async def test_solves_held_out_math_above_the_floor(math_engine, mode):
    from asyncthink.eval.config import load_eval_config

    cfg = load_eval_config(CONFIG, [])
    spec = cfg.tasks[0]
    task = make_task(spec.name, **spec.options)
    problems = task.dataset(spec.split, PROBLEMS, spec.seed)
    runtime = cfg.runtime_for(Mode(mode), cfg.task_budgets(spec)[0])
    episodes = await run_batch(EpisodeExecutor(math_engine, runtime, task),
                               make_items(problems, cfg.task_samples(spec), cfg.seed), max_in_flight=64,
                               progress=False)
    assert all(consistency_problems(ep) == [] for ep in episodes)
    assert all(ep.status != EpisodeStatus.ERROR for ep in episodes)
    accuracy = sum(ep.score or 0.0 for ep in episodes) / len(episodes)
    format_errors = sum(ep.status == EpisodeStatus.FORMAT_ERROR for ep in episodes) / len(episodes)
    print(f"{mode}: accuracy {accuracy:.3f}, format errors {format_errors:.3f} on {len(episodes)} episodes")
    assert accuracy >= FLOOR[mode] and format_errors <= MAX_FORMAT_ERRORS
    if mode == "asyncthink":
        assert sum(ep.metrics["forks"] for ep in episodes) / len(episodes) >= 1.0
