"""A known-answer test for GRPO (issue 28): a task the tiny model learns in seconds, in both advantage modes.

The task: reply with one token, which is right (score 1) iff its id is even. Half the vocabulary is right,
so the random tiny model starts near chance (reward about 0.5) and the best policy is known (reward 1). The
rollouts are sampled by the colocated transformers engine (the trainer's own module, as ``engine.kind=hf``
runs do) and everything after them is the trainer's real step: reward, group advantages, the clipped
token-mean loss over masked next-token targets, the optimizer, the log. Only the protocol (forks, joins,
``<ANSWER>``) is left out, because a random model never writes it.

The reward must reach ``TARGET`` (mean of ``WINDOW`` steps) within ``MAX_STEPS``; on the 2-core CPU it does in
13 steps from 0.62, in both modes, about 8 s each. Checked by mutating ``training/``, each of these fails both
modes: the advantage's sign flipped (reward falls to 0), the loss mask one token early or inverted (stays near
0.5), targets not shifted by one (stays near 0.5). A mask that also trains the prompt is not caught here, and
cannot be by any task: a group shares its prompt, so the prompt's advantages sum to 0; the masks that matter,
on the worker returns the runtime appends, are ``tests/test_rl.py``'s.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from asyncthink.config_io import load_config
from asyncthink.engines.base import generate_all
from asyncthink.engines.types import GenerateRequest, SamplingParams
from asyncthink.episode import Episode, Row
from asyncthink.protocol import Role
from asyncthink.training.rl import GRPOTrainer
from asyncthink.training.rl_config import RLConfig

PROMPTS = ["say a word", "one word please", "answer now", "reply"]
TARGET, WINDOW, MAX_STEPS = 0.9, 3, 40


def right(token_id: int) -> bool:
    return token_id % 2 == 0


def known_answer_config(model: str, out: str, advantage: str) -> RLConfig:
    return load_config(RLConfig, None, [
        f"model={model}", f"out={out}", f"max_steps={MAX_STEPS}", f"advantage={advantage}", "group_size=8",
        f"prompts_per_step={len(PROMPTS)}", f"dataset_size={len(PROMPTS)}", "learning_rate=0.01",
        "save_every=1000", "resume=false", "progress=false", "tensorboard=false", "cpu=true",
        "runtime={mode: sequential, temperature: 1.0}", "rewards={concurrency_weight: 0}",
    ])


class OneTokenRollouts:
    """The trainer's ``generate`` for this task: ``group_size`` one-token replies per prompt, sampled by the
    trainer's colocated engine, recorded as one-row episodes scored 1 or 0."""

    def __init__(self, trainer: GRPOTrainer) -> None:
        self.trainer = trainer
        self.prompt_ids = [trainer.tokenizer.encode(p, add_special_tokens=False) for p in PROMPTS]

    async def __call__(self, problems: list[dict[str, Any]]) -> list[Episode]:
        t = self.trainer
        t.model.eval()
        jobs = [(k, s) for k in range(len(problems)) for s in range(t.cfg.group_size)]  # grouped by prompt
        return list(await asyncio.gather(*(self.episode(k, s) for k, s in jobs)))

    async def episode(self, k: int, sample: int) -> Episode:
        t, prompt = self.trainer, self.prompt_ids[k % len(PROMPTS)]
        seed = (t.cfg.seed * 1_000_003 + t.state.step) * 1009 + k * 31 + sample
        sampling = SamplingParams(max_tokens=1, temperature=t.cfg.runtime.temperature, seed=seed)
        request = GenerateRequest(prompt, sampling, f"{t.state.step}/{k}/{sample}")
        ids, logprobs, _ = await generate_all(t.engine, request)
        row = Row(row_id="0", role=Role.ORGANIZER, depth=0, prompt_ids=list(prompt), completion_ids=ids,
                  completion_mask=[1] * len(ids), logprobs=logprobs)
        return Episode(episode_id=f"s{t.state.step}-{k}#{sample}", mode="sequential", question=PROMPTS[k % 4],
                       problem_id=str(k), rows=[row], score=float(right(ids[0])),
                       metrics={"eta_over_capacity": 1.0, "latency": 1.0, "forks": 0.0, "total_tokens": 1.0})


async def rewards_until_learned(cfg: RLConfig) -> list[float]:
    """Run real trainer steps until the last ``WINDOW`` steps average ``TARGET``; the logged reward per step."""
    trainer = GRPOTrainer(cfg)
    trainer.generate = OneTokenRollouts(trainer)
    await trainer.start_engine()
    rewards: list[float] = []
    try:
        while trainer.state.step < cfg.max_steps:
            await trainer.run_step()
            last = json.loads((Path(cfg.out) / "metrics.jsonl").read_text().splitlines()[-1])
            rewards.append(last["reward"])
            if len(rewards) >= WINDOW and sum(rewards[-WINDOW:]) / WINDOW >= TARGET:
                break
    finally:
        await trainer.engine.close()
    return rewards


@pytest.mark.slow
@pytest.mark.parametrize("advantage", ["std", "mean"])
async def test_grpo_learns_a_known_answer_from_chance(tiny_model_dir, tmp_path, advantage):
    rewards = await rewards_until_learned(known_answer_config(str(tiny_model_dir), str(tmp_path), advantage))
    assert 0.2 <= rewards[0] <= 0.8, f"not a start near chance: {rewards[0]:.2f}"
    window = sum(rewards[-WINDOW:]) / WINDOW
    assert window >= TARGET, f"{advantage}: reward {window:.2f} after {len(rewards)} steps: " + " ".join(
        f"{r:.2f}" for r in rewards)
