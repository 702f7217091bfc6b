"""Every shipped training config in configs/ loads into its dataclass (validation included)."""

from pathlib import Path

import pytest

from asyncthink.config_io import load_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _config_class(name: str):
    from asyncthink.training.rl_config import RLConfig
    from asyncthink.training.sft import SFTRunConfig
    from asyncthink.training.synth import SynthConfig
    from asyncthink.training.teacher import TeacherRunConfig

    return {"synth": SynthConfig, "sft": SFTRunConfig, "rl": RLConfig, "teacher": TeacherRunConfig}[name.split("_")[0]]


TRAINING = sorted(p for p in CONFIGS.glob("*.yaml") if p.name.split("_")[0] in {"synth", "sft", "rl", "teacher"})


def test_every_training_stage_has_configs():
    assert {p.name.split("_")[0] for p in TRAINING} == {"synth", "sft", "rl", "teacher"}


@pytest.mark.parametrize("path", TRAINING, ids=lambda p: p.name)
def test_training_config_loads(path):
    cfg = load_config(_config_class(path.name), path, [])
    assert cfg.out, path


def test_demo_held_out_problems_were_seen_by_no_tiny_training_stage():
    """The countdown split is by hash bucket of the number set, whatever the number range: a training config
    with a wider range still holds out every set the demo tests, but one with a smaller ``test_fraction``
    trains on sets a larger one holds out."""
    from asyncthink.envs import make_task
    from asyncthink.envs.countdown import number_split
    from asyncthink.eval.config import load_eval_config

    demo = load_eval_config(CONFIGS / "demo.yaml", [])
    task = next(t for t in demo.tasks if t.name == "countdown")
    held_out = make_task("countdown", **task.options).dataset("test", n=task.n, seed=0)
    stages = [p for p in TRAINING if "countdown_tiny" in p.name and p.name.split("_")[0] in {"synth", "rl"}]
    assert len(stages) >= 2
    for path in stages:
        train_fraction = load_config(_config_class(path.name), path, []).task_options["test_fraction"]
        seen = [p["numbers"] for p in held_out if number_split(p["numbers"], train_fraction) == "train"]
        assert seen == [], f"{path.name} trains on held-out number sets {seen}"
