"""Per-step RL diagnostics and loss normalisation (issue 28, items 2 and 6), checked on hand-computable cases.

- ``policy_loss``'s diagnostics: entropy, sampler/trainer logprob gap, the raw importance weight's mean, std,
  extremes and share above the cap, on tiny tensors;
- the loss normalisers (``token_mean``, ``signal_token_mean``, ``row_mean``, ``constant``) on a two-group step
  with a worker row, against losses worked out by hand; ``token_mean`` is the loss the trainer always had;
- the share of groups without signal counts an all-equal group and skips a group with every episode dropped;
- one real trainer step on the colocated transformers engine: right after sync the trainer's logprobs are the
  sampler's (gap ~0, every importance weight ~1), at temperature 1 and below; the entropy is the one computed
  by hand from the model; KL to the reference is logged only with a reference, and is 0 before any update.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from asyncthink.episode import Episode, Row
from asyncthink.protocol import Role
from asyncthink.training.rl import GRPOTrainer
from asyncthink.training.rl_batch import TokenBatch, collate, group_advantages, signal_groups
from asyncthink.training.rl_config import RLConfig
from asyncthink.training.rl_logging import signal_stats
from asyncthink.training.rl_loss import loss_denominator, loss_rows, policy_loss
from tests.test_grpo_known_answer import PROMPTS, OneTokenRollouts, known_answer_config

# ------------------------------------------------------------ policy_loss diagnostics


def test_policy_loss_reports_gap_importance_weights_and_entropy_by_hand():
    # three trained tokens and one masked; the trainer's probabilities 1/2, 1/4, 1/2, the sampler's 1/2, 1/2, 1/8
    old = torch.log(torch.tensor([[0.5, 0.25, 0.5, 0.9]]))
    rollout = torch.log(torch.tensor([[0.5, 0.5, 0.125, 0.001]]))
    mask = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    batch = TokenBatch(torch.zeros(1, 4, dtype=torch.long), torch.ones(1, 4, dtype=torch.long),
                       torch.zeros(1, 4, dtype=torch.long), mask, rollout, torch.ones(1, 4))
    entropy = torch.tensor([[1.0, 2.0, 3.0, 99.0]])
    m = policy_loss(old.clone(), batch, tis_cap=2.0, entropy_BT=entropy).means()
    weights = [1.0, 0.5, 4.0]  # exp(old - rollout) on the trained tokens
    mean_w = sum(weights) / 3
    assert m["logprob_gap"] == pytest.approx((0 + math.log(2) + math.log(4)) / 3)
    assert m["tis_raw_mean"] == pytest.approx(mean_w)
    assert m["tis_raw_std"] == pytest.approx((sum((w - mean_w) ** 2 for w in weights) / 3) ** 0.5)
    assert (m["tis_raw_min"], m["tis_raw_max"]) == pytest.approx((0.5, 4.0))
    assert m["tis_capped"] == pytest.approx(1 / 3)  # 4 > cap 2
    assert m["tis_weight"] == pytest.approx((1 + 0.5 + 2) / 3)  # the applied (capped) weight
    assert m["entropy"] == pytest.approx(2.0)  # the masked token's 99 is not trained


def test_loss_parts_of_two_micro_batches_add_up_to_one_batch():
    logp = torch.log(torch.tensor([[0.5, 0.25], [0.125, 0.5]]))
    rollout = torch.log(torch.tensor([[0.25, 0.25], [0.5, 0.5]]))
    ones = torch.ones(2, 2)
    batch = TokenBatch(torch.zeros(2, 2, dtype=torch.long), ones.long(), torch.zeros(2, 2, dtype=torch.long), ones,
                       rollout, ones)
    whole = policy_loss(logp, batch, entropy_BT=ones).means()
    halves = [TokenBatch(*(t[k : k + 1] for t in batch.__dict__.values() if t is not None)) for k in range(2)]
    added = policy_loss(logp[:1], halves[0], entropy_BT=ones[:1]) + policy_loss(logp[1:], halves[1],
                                                                                  entropy_BT=ones[1:])
    assert added.means() == pytest.approx(whole)
    assert (whole["tis_raw_min"], whole["tis_raw_max"]) == pytest.approx((0.25, 2.0))


# ------------------------------------------------------------ loss normalisation

PROMPT = [5, 6]


def row(row_id: str, tokens: int) -> Row:
    role = Role.ORGANIZER if row_id == "0" else Role.WORKER
    return Row(row_id=row_id, role=role, depth=row_id.count("."), prompt_ids=list(PROMPT),
               completion_ids=[7] * tokens, completion_mask=[1] * tokens, logprobs=[-1.0] * tokens)


def episode(k: int, *rows: Row) -> Episode:
    return Episode(episode_id=f"e{k}", mode="asyncthink", question="q", problem_id=str(k // 3), rows=list(rows))


# group A (rewards 1, 0, 0; mean advantages 2/3, -1/3, -1/3) has signal, group B (1, 1, 1) has none.
# Episode 0 has an organizer row of 3 tokens and a worker row of 2; the others one row of 1, 2, 2, 2, 1 tokens.
STEP = [episode(0, row("0", 3), row("0.1", 2)), episode(1, row("0", 1)), episode(2, row("0", 2)),
        episode(3, row("0", 2)), episode(4, row("0", 2)), episode(5, row("0", 1))]
ADVANTAGES = group_advantages([1.0, 0.0, 0.0, 1.0, 1.0, 1.0], 3, normalize_std=False)
# At ratio 1 and importance weight 1 a token's loss is -A: the token sum is -(5 * 2/3 - 1/3 - 2 * 1/3) = -7/3
# over 13 tokens (8 of them in group A) and 7 rows (4 in group A; the row means -A sum to -2/3 there, 0 in B).
BY_HAND = {"token_mean": -7 / 3 / 13, "signal_token_mean": -7 / 3 / 8, "row_mean": -2 / 3 / 7,
           "constant": -7 / 3 / (6 * 4)}


@pytest.mark.parametrize("loss_norm", sorted(BY_HAND))
def test_each_loss_norm_gives_the_loss_worked_out_by_hand(loss_norm):
    rows = loss_rows(STEP, ADVANTAGES, 3, loss_norm)
    batch = collate(rows, pad_id=0)
    # the policy is the sampler (logp = rollout logprobs): ratio 1 and importance weight 1 on every token
    parts = policy_loss(batch.rollout_logprobs_BT.clone(), batch)
    loss = float(parts.loss) / loss_denominator(rows, loss_norm, episodes=6, loss_norm_tokens=4)
    assert loss == pytest.approx(BY_HAND[loss_norm])
    assert len(rows) == (4 if loss_norm == "signal_token_mean" else 7)


def test_token_mean_is_the_loss_the_trainer_always_had():
    rows = loss_rows(STEP, ADVANTAGES, 3, "token_mean")
    batch = collate(rows, pad_id=0)
    logp = batch.rollout_logprobs_BT + 0.1 * torch.arange(batch.rollout_logprobs_BT.numel()).view_as(
        batch.rollout_logprobs_BT) / 100  # ratio != 1, so the clip and the weights take part
    old_rule = policy_loss(logp, TokenBatch(*list(batch.__dict__.values())[:6]))  # no row weights at all
    assert float(policy_loss(logp, batch).loss) == float(old_rule.loss)
    assert all(r.weight == 1.0 for r in rows)
    assert loss_denominator(rows, "token_mean", 6, 0) == 13


@pytest.mark.parametrize(("override", "quoted"), [({"loss_norm": "tokens"}, "'tokens'"),
                                                  ({"loss_norm": "constant"}, "loss_norm_tokens > 0, got 0"),
                                                  ({"loss_norm_tokens": -1}, "got -1")])
def test_bad_loss_norm_settings_are_refused_with_their_values(override, quoted):
    with pytest.raises(ValueError, match=quoted):
        RLConfig(model="m", **override)


# ------------------------------------------------------------ groups without signal


def test_groups_without_signal_count_an_all_equal_group_and_skip_a_dropped_one():
    rewards = [1.0, 1.0, 0.0, 1.0, 5.0, 5.0]
    adv = group_advantages(rewards, 2, keep=[True, True, True, True, False, False])
    assert signal_groups(adv, 2) == [False, True, None]
    breakdowns = [SimpleNamespace(eta_over_capacity=0.5, concurrency=0.0)] * 6
    stats = signal_stats(breakdowns, adv, 2, tau=0.6)
    assert stats["groups_without_signal"] == 0.5 and stats["dropped_episodes"] == 2


# ------------------------------------------------------------ one real step on the colocated engine


def entropy_by_hand(trainer: GRPOTrainer, temperature: float) -> float:
    """The mean over the step's prompts of the next-token entropy at ``temperature``: every episode of this
    task trains one token, the first after its prompt, and every prompt has ``group_size`` episodes."""
    values = []
    with torch.no_grad():
        for prompt in PROMPTS:
            ids = torch.tensor([trainer.tokenizer.encode(prompt, add_special_tokens=False)])
            p = torch.softmax(trainer.model(input_ids=ids).logits[0, -1].float() / temperature, dim=-1)
            values.append(float(-(p * p.log()).sum()))
    return sum(values) / len(values)


async def one_step(tiny_model_dir, tmp_path, temperature: float, kl_coef: float) -> tuple[dict, float]:
    cfg = known_answer_config(str(tiny_model_dir), str(tmp_path), "std")
    cfg.max_steps, cfg.runtime.temperature, cfg.kl_coef, cfg.log_update_kl = 1, temperature, kl_coef, True
    trainer = GRPOTrainer(cfg)
    trainer.generate = OneTokenRollouts(trainer)
    await trainer.start_engine()
    expected_entropy = entropy_by_hand(trainer, temperature)
    try:
        await trainer.run_step()
    finally:
        await trainer.engine.close()
    return json.loads((Path(cfg.out) / "metrics.jsonl").read_text().splitlines()[-1]), expected_entropy


@pytest.mark.parametrize(("temperature", "kl_coef"), [(1.0, 0.0), (0.7, 0.1)])
async def test_right_after_sync_the_trainer_sees_the_samplers_logprobs(tiny_model_dir, tmp_path, temperature,
                                                                       kl_coef):
    m, expected_entropy = await one_step(tiny_model_dir, tmp_path, temperature, kl_coef)
    assert m["logprob_gap"] < 1e-4
    assert abs(m["tis_raw_min"] - 1) < 1e-4 and abs(m["tis_raw_max"] - 1) < 1e-4 and m["tis_raw_std"] < 1e-4
    assert m["tis_capped"] == 0
    assert m["entropy"] == pytest.approx(expected_entropy, rel=1e-4)
    assert m["trained_tokens/organizer"] == len(PROMPTS) * 8 and m["trained_tokens/worker"] == 0
    assert m["grad_norm"] > 0 and m["update_kl"] > 0  # lr 0.01 moves the policy
    assert 0 <= m["groups_without_signal"] <= 1
    if kl_coef:
        assert m["kl"] == 0.0  # the reference is the policy until the first update
    else:
        assert "kl" not in m
