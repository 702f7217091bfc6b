"""Training signals you can trust (issue 13), on the GRPO trainer with the tiny model and scripted outcomes.

- infrastructure failures (status ``error``) are dropped from the update, their group renormalised, counted
  in the step's metrics, and stop the run past ``max_error_fraction``;
- ``tau <= 1/capacity`` (a constant concurrency reward) is rejected at config load;
- ``clip_fraction`` counts only the tokens whose clip binds for their advantage's sign;
- warmup counts RL steps, whatever ``updates_per_step``;
- with bf16 on, policy, old and reference logprobs agree exactly before any update;
- each step logs status counts, the share at the concurrency cap, spreads and tokens trained per role.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import torch

from asyncthink.config_io import load_config
from asyncthink.engines.types import Delta, EngineError, EngineErrorKind, GenerateRequest
from asyncthink.training import rl as rl_module
from asyncthink.training.rl import GRPOTrainer
from asyncthink.training.rl_batch import TokenBatch, group_advantages
from asyncthink.training.rl_config import RLConfig
from asyncthink.training.rl_loss import policy_loss
from tests.fakes import OutcomeEngine
from tests.rl_fake_run import OUTCOMES, config, spy_on_updates

FAIL = "ENGINE-FAILS"


class FailingOutcomeEngine(OutcomeEngine):
    """An ``OutcomeEngine`` whose outcome ``FAIL`` is an engine failure (an infrastructure error)."""

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        text = self.tokenizer.decode(request.prompt_ids, skip_special_tokens=False)
        if self.marker in text and self.outcomes[(request.sampling.seed or 0) % len(self.outcomes)] == FAIL:
            raise EngineError(EngineErrorKind.SERVER, "the rollout server died")
        async for delta in super().generate(request):
            yield delta


def metrics(trainer) -> list[dict]:
    return [json.loads(x) for x in (Path(trainer.cfg.out) / "metrics.jsonl").read_text().splitlines()]


async def train(cfg: RLConfig, outcomes: list[str]) -> GRPOTrainer:
    trainer = GRPOTrainer(cfg)
    await trainer.train(FailingOutcomeEngine(trainer.tokenizer, outcomes))
    return trainer


# ------------------------------------------------------------ infrastructure errors


def test_dropped_episodes_leave_their_group_renormalised():
    adv = group_advantages([1.0, 0.0, 1.0, 5.0], 4, keep=[True, True, True, False])
    assert adv[3] is None and adv[:3] == pytest.approx(group_advantages([1.0, 0.0, 1.0], 3))
    assert group_advantages([1.0, 0.0, 1.0, 0.0], 2, keep=[True, False, True, True]) == [None, None,
                                                                                         pytest.approx(1, abs=1e-3),
                                                                                         pytest.approx(-1, abs=1e-3)]


async def test_error_episodes_are_not_trained_and_are_counted(tiny_model_dir, tmp_path):
    cfg = config(str(tiny_model_dir), str(tmp_path), 1)
    cfg.max_error_fraction = 0.5
    trainer = GRPOTrainer(cfg)
    seen = spy_on_updates(trainer)
    await trainer.train(FailingOutcomeEngine(trainer.tokenizer, [*OUTCOMES[:3], FAIL]))
    errors = [ep for ep, _ in seen["pairs"] if ep.status == "error"]
    assert errors and all(a is None for ep, a in seen["pairs"] if ep.status == "error")
    assert all(a is not None for ep, a in seen["pairs"] if ep.status != "error")
    m = metrics(trainer)[-1]
    assert m["status/error"] == len(errors) == m["dropped_episodes"]
    assert m["status/ok"] + m["status/format_error"] + m["status/budget_exceeded"] + m["status/error"] == 8
    assert m["status/runtime_error"] == 0  # an engine failure is not a bug of the runtime


async def test_too_many_errors_stop_the_run(tiny_model_dir, tmp_path):
    cfg = config(str(tiny_model_dir), str(tmp_path), 3)
    cfg.max_error_fraction = 0.1
    with pytest.raises(RuntimeError, match="max_error_fraction=0.1"):
        await train(cfg, [*OUTCOMES[:3], FAIL])
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["status/error"] > 0  # the failing step is logged, nothing after it


# ------------------------------------------------------------ the concurrency reward's signal


def test_tau_at_or_below_one_over_capacity_is_rejected():
    base = ["model=m", "runtime={capacity: 4}"]
    with pytest.raises(ValueError, match=r"tau=0\.25.*1/capacity=0\.25"):
        load_config(RLConfig, None, [*base, "rewards={tau: 0.25}"])
    with pytest.raises(ValueError, match=r"tau=0\.2 .*1/capacity=0\.25"):
        load_config(RLConfig, None, [*base, "rewards={tau: 0.2}"])
    assert load_config(RLConfig, None, [*base, "rewards={tau: 0.3}"]).rewards.tau == 0.3
    load_config(RLConfig, None, [*base, "rewards={tau: 0.25, concurrency_weight: 0}"])  # no term, no check


def test_shipped_rl_configs_carry_signal_and_follow_the_paper():
    repo = Path(__file__).resolve().parents[1]
    for path in sorted((repo / "configs").glob("rl_*.yaml")):
        cfg = load_config(RLConfig, path, [])
        assert cfg.rewards.tau > 1 / cfg.runtime.capacity, path.name
        # the paper's reward has no correctness gate: a config that gates says why, in a comment
        assert cfg.rewards.gate == "none" or "Not the paper's reward" in path.read_text(), path.name
    tiny = load_config(RLConfig, repo / "configs" / "rl_countdown_tiny.yaml", [])
    big = load_config(RLConfig, repo / "configs" / "rl_countdown_qwen3_4b.yaml", [])
    assert tiny.rewards.tau > 0.542  # the SFT model's measured eta/capacity (README's ablation)
    assert big.task_options["required"] == 4  # the paper asks for 4 solutions


# ------------------------------------------------------------ loss statistics and schedule


def test_clip_fraction_counts_only_binding_clips():
    ratio = torch.tensor([[1.5, 1.5, 0.5, 0.5, 1.0]])
    adv = torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0]])
    ones = torch.ones_like(ratio)
    batch = TokenBatch(torch.zeros(1, 5, dtype=torch.long), ones.long(), torch.zeros(1, 5, dtype=torch.long), ones,
                       torch.zeros(1, 5), adv)
    parts = policy_loss(torch.log(ratio), batch, old_logp_BT=torch.zeros(1, 5), tis_cap=0)
    assert parts.clipped == 2.0  # 1.5 with A > 0 and 0.5 with A < 0; the other two still have gradient


async def test_warmup_counts_rl_steps_not_optimizer_updates(tiny_model_dir, tmp_path):
    cfg = config(str(tiny_model_dir), str(tmp_path), 2)
    cfg.updates_per_step, cfg.warmup_steps, cfg.save_every = 2, 4, 100
    trainer = GRPOTrainer(cfg)
    used: list[float] = []
    real_step = trainer.optimizer.step

    def step(*args, **kwargs):
        used.append(trainer.optimizer.param_groups[0]["lr"])
        return real_step(*args, **kwargs)

    trainer.optimizer.step = step
    await trainer.train(FailingOutcomeEngine(trainer.tokenizer, OUTCOMES))
    lr = cfg.learning_rate
    assert used == pytest.approx([lr / 4, lr / 4, lr / 2, lr / 2])
    assert [m["lr"] for m in metrics(trainer)] == pytest.approx([lr / 4, lr / 2])


async def test_bf16_ratio_is_one_and_kl_zero_at_the_first_micro_step(tiny_model_dir, tmp_path, monkeypatch):
    cfg = config(str(tiny_model_dir), str(tmp_path), 1)
    cfg.bf16, cfg.kl_coef, cfg.updates_per_step = True, 0.1, 2
    first = []
    real_loss = rl_module.policy_loss

    def spy(*args, **kwargs):
        parts = real_loss(*args, **kwargs)
        first.append(parts)
        return parts

    monkeypatch.setattr(rl_module, "policy_loss", spy)
    trainer = GRPOTrainer(cfg)
    assert trainer.acc.mixed_precision == "bf16"
    await trainer.train(FailingOutcomeEngine(trainer.tokenizer, OUTCOMES))
    parts = first[0]
    assert parts.tokens > 0 and parts.ratio == parts.tokens and parts.kl == 0.0


# ------------------------------------------------------------ what a step logs


async def test_each_step_logs_outcomes_and_signal(tiny_model_dir, tmp_path, capsys):
    trainer = await train(config(str(tiny_model_dir), str(tmp_path), 1), OUTCOMES)
    m = metrics(trainer)[-1]
    for key in ("status/ok", "status/format_error", "status/budget_exceeded", "status/error", "at_concurrency_cap",
                "concurrency_reward_spread", "advantage_spread", "groups_without_signal",
                "trained_tokens/organizer", "trained_tokens/worker"):
        assert key in m, key
    assert m["format_error/no_answer"] == m["status/format_error"] > 0  # "no answer at all" is a count, not a rate
    assert m["trained_tokens/worker"] > 0 and m["trained_tokens/organizer"] > 0
    assert 0 <= m["at_concurrency_cap"] <= 1
    line = capsys.readouterr().out
    assert "ok=" in line and "error=" in line and "no_answer" in line and "at_concurrency_cap" in line
