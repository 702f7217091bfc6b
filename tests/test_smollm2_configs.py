"""The SmolLM2 configs: the evaluation's held-out countdown problems were seen by no SmolLM2 training stage
(CPU or GPU), the GPU script's configs load, the fork-keeping GRPO arm differs from the main run in its reward
alone, and the shell scripts that run these stages parse."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from asyncthink.config_io import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SCRIPTS = CONFIGS.parent / "scripts"


def test_smollm2_held_out_problems_are_in_no_training_stage():
    from asyncthink.envs import make_task
    from asyncthink.envs.countdown import number_split
    from asyncthink.eval.config import load_eval_config
    from asyncthink.training.rl_config import RLConfig
    from asyncthink.training.synth import SynthConfig

    ev = load_eval_config(CONFIGS / "eval_smollm2.yaml", [])
    task = next(t for t in ev.tasks if t.name == "countdown")
    assert task.split == "test"
    held_out = make_task("countdown", **task.options).dataset("test", n=task.n, seed=0)
    stages = [(SynthConfig, "synth_countdown_smollm2.yaml"), (RLConfig, "rl_countdown_smollm2_gpu.yaml")]
    for cls, name in stages:
        cfg = load_config(cls, CONFIGS / name, [])
        assert cfg.split == "train", name
        fraction = cfg.task_options["test_fraction"]
        seen = [p["numbers"] for p in held_out if number_split(p["numbers"], fraction) == "train"]
        assert seen == [], f"{name} trains on held-out number sets {seen}"


def test_smollm2_sft_configs_pick_a_consistent_tag_path():
    from asyncthink.training.sft import SFTRunConfig

    cpu = load_config(SFTRunConfig, CONFIGS / "sft_countdown_smollm2.yaml", [])
    gpu = load_config(SFTRunConfig, CONFIGS / "sft_countdown_smollm2_gpu.yaml", [])
    assert cpu.lora.enabled and not cpu.tags_as_tokens  # LoRA on tags as text (see README: SmolLM2)
    assert not gpu.lora.enabled and gpu.tags_as_tokens and gpu.bf16  # full fine-tuning on tags as tokens


def test_fork_keeping_arm_changes_only_the_reward_and_pays_for_a_fork():
    from asyncthink.envs.rewards import concurrency_reward
    from asyncthink.training.rl_config import RLConfig

    main = load_config(RLConfig, CONFIGS / "rl_math_gen_smollm2.yaml", [])
    forks = load_config(RLConfig, CONFIGS / "rl_math_gen_smollm2_forks.yaml", [])
    differ = {f.name for f in dataclasses.fields(RLConfig) if getattr(main, f.name) != getattr(forks, f.name)}
    assert differ == {"rewards", "out"}

    def fork_bonus(cfg) -> float:  # what a correct episode earns for one fork (eta/capacity 0.25 -> 0.32, measured)
        r = cfg.rewards
        return r.concurrency_weight * (concurrency_reward(0.32, 1.0, r.tau, r.gate) -
                                       concurrency_reward(0.25, 1.0, r.tau, r.gate))

    assert fork_bonus(main) < 0.05 < 0.15 < fork_bonus(forks)
    assert concurrency_reward(0.32, 0.0, forks.rewards.tau, forks.rewards.gate) == 0  # wrong answers earn nothing


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.glob("*.sh")))
def test_pipeline_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(SCRIPTS / script)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
