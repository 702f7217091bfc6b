"""An RL run on the tiny model with an ``OutcomeEngine``, as a process (for resume and multi-process tests).

    python -m tests.rl_fake_run --model DIR --out DIR --steps 4 [--delay 0.2]
    torchrun --nproc_per_node 2 -m tests.rl_fake_run --model DIR --out DIR --steps 2

Writes ``params-rank{r}.pt`` (all parameters) into ``--out`` when done.
"""

from __future__ import annotations

import argparse
import asyncio

import torch

from asyncthink.config_io import load_config
from asyncthink.training.rl import GRPOTrainer
from asyncthink.training.rl_config import RLConfig
from tests.fakes import OutcomeEngine

OUTCOMES = [
    "x<ANSWER>1+2+3=6\n3*2*1=6</ANSWER>",  # correct, no fork
    "<FORK-1>w</FORK-1>y<JOIN-1>z<ANSWER>1+2+3=6\n1*2*3=6</ANSWER>",  # a fork, but one solution twice
    "no answer at all",  # format error
    "<FORK-1>w</FORK-1><JOIN-1><ANSWER>3+2+1=6\n3*2*1=6</ANSWER>",  # correct, with a fork
]


def config(model: str, out: str, steps: int) -> RLConfig:
    return load_config(RLConfig, None, [
        f"model={model}", f"out={out}", f"max_steps={steps}", "group_size=4", "prompts_per_step=2",
        "dataset_size=6", "save_every=1", "learning_rate=0.001", "progress=false", "tensorboard=false", "cpu=true",
        "task_options={n_numbers: 3, max_number: 9, min_target: 5, max_target: 40, required: 2}",
        "runtime={capacity: 3, max_organizer_tokens: 200, max_worker_tokens: 50, prompts: {style: compact}}",
    ])


def spy_on_updates(trainer: GRPOTrainer) -> dict:
    """Record each update's ``(episode, advantage)`` pairs in the returned dict's ``"pairs"``, then update."""
    seen: dict = {}
    real_update = trainer.update

    def spy(episodes, advantages):
        seen["pairs"] = list(zip(episodes, advantages, strict=True))
        return real_update(episodes, advantages)

    trainer.update = spy
    return seen


async def main(args: argparse.Namespace) -> None:
    trainer = GRPOTrainer(config(args.model, args.out, args.steps))
    engine = OutcomeEngine(trainer.tokenizer, OUTCOMES, delay_s=args.delay)
    await trainer.train(engine)
    params = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
    torch.save(params, f"{args.out}/params-rank{trainer.acc.process_index}.pt")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--delay", type=float, default=0.0)
    asyncio.run(main(parser.parse_args()))
