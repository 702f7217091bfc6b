"""One GRPO run on several modes in equal shares (``RLConfig.modes``), on the tiny model with scripted outcomes.

- each prompt's group is rolled out in one mode, the step's prompts shared equally among the modes, and the
  update sees every episode;
- a run on several modes logs per-mode means (``score_<mode>``, ...), a run on one mode none;
- parallel thinking (voted traces), a repeated mode and ``prompts_per_step`` not a multiple of the modes are
  refused at config load, quoting the value.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from asyncthink.config_io import load_config
from asyncthink.modes import Mode
from asyncthink.training.rl import GRPOTrainer
from asyncthink.training.rl_config import RLConfig
from tests.fakes import OutcomeEngine
from tests.rl_fake_run import OUTCOMES, config, spy_on_updates

PER_MODE = re.compile("_(" + "|".join(m.value for m in Mode) + ")$")  # score_asyncthink, ...


def metrics(trainer) -> list[dict]:
    return [json.loads(x) for x in (Path(trainer.cfg.out) / "metrics.jsonl").read_text().splitlines()]


async def train(cfg: RLConfig) -> tuple[GRPOTrainer, dict]:
    trainer = GRPOTrainer(cfg)
    seen = spy_on_updates(trainer)
    # "Target:" is in the question, which organizer and sequential prompts show and worker prompts do not: both
    # modes' top rows get the scripted outcomes
    await trainer.train(OutcomeEngine(trainer.tokenizer, OUTCOMES, organizer_marker="Target:"))
    return trainer, seen


async def test_each_group_has_one_mode_and_both_modes_train(tiny_model_dir, tmp_path):
    cfg = replace(config(str(tiny_model_dir), str(tmp_path), 1), modes=["asyncthink", "sequential"])
    assert cfg.prompts_per_step == 2
    trainer, seen = await train(cfg)
    episodes = [ep for ep, _ in seen["pairs"]]
    g = cfg.group_size
    assert len(episodes) == cfg.prompts_per_step * g
    groups = [episodes[k : k + g] for k in range(0, len(episodes), g)]
    modes = [{str(ep.mode) for ep in group} for group in groups]
    assert all(len(m) == 1 for m in modes)  # a group compares like with like
    assert [m.pop() for m in modes] == ["asyncthink", "sequential"]  # modes[p % 2] at data position p
    assert all(len({ep.problem_id for ep in group}) == 1 for group in groups)
    assert all(a is not None for _, a in seen["pairs"])  # the update sees every episode of both modes
    assert all(ep.metrics.get("forks", 0) == 0 for ep in groups[1])  # sequential traces never fork
    assert any(ep.metrics.get("forks", 0) > 0 for ep in groups[0])
    assert set(trainer.executors) == {Mode.ASYNCTHINK, Mode.SEQUENTIAL}
    assert trainer.executor is trainer.executors[Mode.ASYNCTHINK]
    m = metrics(trainer)[-1]
    for name in ("score", "accuracy", "reward", "forks", "latency"):
        assert f"{name}_asyncthink" in m and f"{name}_sequential" in m, name
    assert m["forks_sequential"] == 0 and m["forks_asyncthink"] > 0
    assert (m["score_asyncthink"] + m["score_sequential"]) / 2 == pytest.approx(m["score"])  # equal shares
    assert not any("/" in k for k in m if PER_MODE.search(k))  # means, not counts summed over processes


@pytest.mark.parametrize(("overrides", "quoted"), [
    (["modes=[parallel]"], r"\['parallel'\]"),
    (["modes=[asyncthink, asyncthink]"], r"\['asyncthink'\] more than once"),
    (["modes=[asyncthink, sequential]", "prompts_per_step=3"], r"prompts_per_step=3"),
])
def test_untrainable_repeated_or_unequal_modes_are_refused(overrides, quoted):
    with pytest.raises(ValueError, match=quoted):
        load_config(RLConfig, None, ["model=m", *overrides])


def test_modes_are_normalised_and_default_to_the_runtime_mode():
    cfg = load_config(RLConfig, None, ["model=m", "modes=[sequential, asyncthink]", "prompts_per_step=4"])
    assert cfg.modes == cfg.rollout_modes == [Mode.SEQUENTIAL, Mode.ASYNCTHINK]
    assert all(isinstance(m, Mode) for m in cfg.modes)
    assert load_config(RLConfig, None, ["model=m", "runtime={mode: sequential}"]).rollout_modes == [Mode.SEQUENTIAL]
    # the concurrency reward's check runs when any mode forks, not only runtime.mode
    with pytest.raises(ValueError, match="tau"):
        load_config(RLConfig, None, ["model=m", "runtime={mode: sequential, capacity: 4}", "rewards={tau: 0.2}",
                                     "modes=[sequential, asyncthink]"])


async def test_single_mode_runs_log_no_per_mode_keys(tiny_model_dir, tmp_path):
    trainer, seen = await train(config(str(tiny_model_dir), str(tmp_path), 1))
    assert {str(ep.mode) for ep, _ in seen["pairs"]} == {"asyncthink"}
    assert all(ep.episode_id.startswith("s0-r0-countdown") for ep, _ in seen["pairs"])  # ids as before
    m = metrics(trainer)[-1]
    assert "score" in m and not [k for k in m if PER_MODE.search(k)]
