"""The SmolLM2 configs: the evaluation's held-out countdown problems were seen by no SmolLM2 training stage
(CPU or GPU), and the GPU script's configs load."""

from __future__ import annotations

from pathlib import Path

from asyncthink.config_io import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


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
