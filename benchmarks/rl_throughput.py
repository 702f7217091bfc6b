"""RL throughput on the tiny CPU config: our GRPO trainer against TRL's ``GRPOTrainer`` as a reference.

Both train the same model on the same countdown prompts, with the same group
size, prompts per step and token budgets, and both roll out through our
runtime on the transformers engine sharing the trainer's module. Ours trains
every row of every episode (organizer and workers); TRL's ``rollout_func``
hook returns one completion per sample, so it trains the organizer row only
(the worker returns masked out with ``env_mask``). Both are timed the same
way: the wall time of each RL step (rollouts, scoring, update), setup and
model loading excluded (ours from its per-step ``step_s``, TRL's between its
``on_step_begin`` and ``on_step_end`` callbacks). Reported: RL steps per hour,
generated tokens per second (all rows, both cases), and beside them the
episodes' status counts (ok / format_error / budget_exceeded / error), since a
throughput of failed rollouts means nothing. A third row is ours rolling out
on in-process vLLM (weights reloaded after every update), the configuration
the tiny organizer was trained with.

    python benchmarks/rl_throughput.py --model models/tiny-organizer [--steps 3] [--runs ours-hf trl-hf ours-vllm]
                                       [--set group_size=2 ...]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from asyncthink.config_io import load_config
from asyncthink.configs import config_path
from asyncthink.episode import Outcome
from asyncthink.training.rl_config import RLConfig


def rl_config(model: str, out: str, steps: int, engine: str = "hf", overrides: tuple[str, ...] = ()) -> RLConfig:
    return load_config(RLConfig, config_path("rl_countdown_tiny.yaml"), [
        f"model={model}", f"out={out}", f"max_steps={steps}", "save_every=1000", "progress=false",
        "tensorboard=false", "resume=false", f"engine.kind={engine}", "engine.model=colocated",
        "max_error_fraction=1.0",  # measure and report errors; do not stop on them
        "modes=[]", "runtime.mode=asyncthink",  # AsyncThink rollouts only, as TRL's side runs them
        *overrides])


STATUSES = tuple(str(o) for o in Outcome)  # the RL log's status/<outcome> counts, runtime_error included


def ours(model: str, steps: int, engine: str, overrides: tuple[str, ...] = ()) -> dict:
    from asyncthink.training.rl import train_rl

    out = tempfile.mkdtemp(prefix="bench-ours-")
    t0 = time.perf_counter()
    train_rl(rl_config(model, out, steps, engine, overrides))
    elapsed = time.perf_counter() - t0
    rows = [json.loads(x) for x in (Path(out) / "metrics.jsonl").read_text().splitlines()]
    tokens = sum(r["generated_tokens"] for r in rows)
    step_s = sum(r["step_s"] for r in rows)
    status = {s: int(sum(r.get(f"status/{s}", 0) for r in rows)) for s in STATUSES}
    return {"steps_per_hour": 3600 * len(rows) / step_s, "tokens_per_s": tokens / step_s, "wall_s": elapsed,
            "status": status}


def trl_reference(model: str, steps: int, overrides: tuple[str, ...] = ()) -> dict[str, Any]:
    """TRL's GRPOTrainer with a rollout_func running our episodes; trains the organizer row only."""
    import datasets
    from trl import GRPOConfig, GRPOTrainer

    from asyncthink.batch import make_items, run_batch
    from asyncthink.engines.hf_engine import HFEngine
    from asyncthink.envs import make_task
    from asyncthink.envs.rewards import episode_reward
    from asyncthink.executor import EpisodeExecutor

    cfg = rl_config(model, tempfile.mkdtemp(prefix="bench-trl-"), steps, overrides=overrides)
    task = make_task(cfg.task, **cfg.task_options)
    problems = task.dataset(cfg.split, n=cfg.dataset_size, seed=cfg.seed)
    by_question = {p["question"]: p for p in problems}
    counted = {"tokens": 0}
    statuses: collections.Counter = collections.Counter()

    def rollout(prompts: list[str], trainer) -> dict:
        async def run() -> list:
            engine = HFEngine(trainer.model, trainer.processing_class, max_batch=64)
            executor = EpisodeExecutor(engine, cfg.runtime, task)
            # TRL's sampler already repeats each prompt num_generations times: one episode per entry
            items = make_items([by_question[p] for p in prompts], samples=1, seed=int(time.time()))
            try:
                return await run_batch(executor, items, cfg.max_in_flight, progress=False)
            finally:
                await engine.close()

        episodes = asyncio.run(run())
        counted["tokens"] += sum(int(e.metrics.get("total_tokens", 0)) for e in episodes)
        statuses.update(str(e.outcome) for e in episodes)
        org = [e.rows[0] for e in episodes]
        return {"prompt_ids": [r.prompt_ids for r in org], "completion_ids": [r.completion_ids or [0] for r in org],
                "logprobs": [r.logprobs or [0.0] for r in org], "env_mask": [r.completion_mask or [0] for r in org],
                "episode_reward": [episode_reward(e, cfg.rewards).total for e in episodes]}

    def reward(completions, episode_reward, **kwargs) -> list[float]:
        return list(episode_reward)

    args = GRPOConfig(
        output_dir=cfg.out,
        max_steps=steps,
        per_device_train_batch_size=cfg.group_size * cfg.prompts_per_step,
        num_generations=cfg.group_size,
        learning_rate=cfg.learning_rate,
        logging_steps=1,
        report_to="none",
        use_cpu=True,
        save_strategy="no",
        max_completion_length=cfg.runtime.max_organizer_tokens * 2,
        beta=0.0,
        disable_tqdm=True,
        gradient_checkpointing=False,
    )  # on: no KV cache in rollouts
    dataset = datasets.Dataset.from_list([{"prompt": p["question"]} for p in problems])
    timer = _StepTimer()
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=dataset, rollout_func=rollout,
                          callbacks=[timer])
    t0 = time.perf_counter()
    trainer.train()
    elapsed = time.perf_counter() - t0
    step_s = sum(timer.durations)
    return {"steps_per_hour": 3600 * len(timer.durations) / step_s, "tokens_per_s": counted["tokens"] / step_s,
            "wall_s": elapsed, "status": {s: statuses.get(s, 0) for s in STATUSES}}


class _StepTimer(TrainerCallback):
    """Wall time of each optimizer step (its rollouts included), as ours measures ``step_s``."""

    def __init__(self) -> None:
        self.durations: list[float] = []
        self._t0 = 0.0

    def on_step_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.durations.append(time.perf_counter() - self._t0)


RUNS = {"ours-hf": "asyncthink GRPO, hf rollouts", "trl-hf": "TRL GRPOTrainer, hf rollouts",
        "ours-vllm": "asyncthink GRPO, vllm rollouts"}


def run(key: str, model: str, steps: int, overrides: tuple[str, ...]) -> dict[str, Any]:
    if key == "trl-hf":
        return trl_reference(model, steps, overrides)
    return ours(model, steps, key.removeprefix("ours-"), overrides)


def main(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Each run in ``args.runs``; prints the table and returns each run's figures and episode status counts."""
    results = {RUNS[key]: run(key, args.model, args.steps, tuple(args.set)) for key in args.runs}
    print(f"\n{'trainer':32} {'RL steps/hour':>14} {'gen tokens/s':>13}  episodes ok / format_error / "
          "budget_exceeded / error")
    for name, r in results.items():
        counts = " / ".join(str(r["status"][s]) for s in STATUSES)
        print(f"{name:32} {r['steps_per_hour']:>14.0f} {r['tokens_per_s']:>13.0f}  {counts}")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", required=True)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--runs", nargs="+", default=list(RUNS), choices=list(RUNS))
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="Overrides of configs/rl_countdown_tiny.yaml for every run (e.g. group_size=2).")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
