"""GRPO over episodes: a step changes parameters, masking, shared advantages, resume after SIGKILL, two processes."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from asyncthink.config_io import load_config
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.training.replay import replay_episode
from asyncthink.training.rl import GRPOTrainer
from asyncthink.training.rl_batch import collate, episode_rows, group_advantages
from asyncthink.training.rl_config import RLConfig
from asyncthink.training.rl_loss import policy_loss, token_logprobs
from tests.fakes import OutcomeEngine
from tests.rl_fake_run import OUTCOMES, config

REPO = Path(__file__).resolve().parents[1]


def params(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


async def one_step(tiny_model_dir, tmp_path, task_overrides: list[str], outcomes: list[str]):
    cfg = config(str(tiny_model_dir), str(tmp_path), 1)
    if task_overrides:
        cfg = load_config(RLConfig, None, [f"model={tiny_model_dir}", f"out={tmp_path}", "max_steps=1", "group_size=4",
                                           "prompts_per_step=2", "dataset_size=4", "learning_rate=0.001",
                                           "progress=false", "tensorboard=false", "cpu=true",
                                           "runtime={capacity: 3, max_organizer_tokens: 200, max_worker_tokens: 50}",
                                           *task_overrides])
    trainer = GRPOTrainer(cfg)
    before = params(trainer.model)
    await trainer.train(OutcomeEngine(trainer.tokenizer, outcomes))
    return trainer, before


def changed(trainer, before) -> bool:
    return any(not torch.equal(v, before[k]) for k, v in trainer.model.state_dict().items())


def logged(trainer) -> dict:
    import json

    return json.loads((Path(trainer.cfg.out) / "metrics.jsonl").read_text().splitlines()[-1])


async def test_one_step_on_countdown_changes_parameters_and_logs_finite_figures(tiny_model_dir, tmp_path):
    trainer, before = await one_step(tiny_model_dir, tmp_path, [], OUTCOMES)
    assert changed(trainer, before)
    m = logged(trainer)
    for key in ("reward", "accuracy", "score", "format_error_rate", "eta_over_capacity", "latency", "forks", "loss",
                "clip_fraction", "tokens_per_s", "grad_norm", "entropy", "logprob_gap"):
        assert math.isfinite(m[key]), key
    assert "kl" not in m and "update_kl" not in m  # no reference model (kl_coef 0); log_update_kl is off
    assert m["grad_norm"] > 0 and (Path(trainer.cfg.out) / "curves.png").exists()
    assert (Path(trainer.cfg.out) / "final" / "config.json").exists()


async def test_one_step_on_math_changes_parameters(tiny_model_dir, tmp_path):
    math_outcomes = ["<ANSWER>\\boxed{18}</ANSWER>", "<FORK-1>w</FORK-1><JOIN-1><ANSWER>\\boxed{3}</ANSWER>", "no"]
    trainer, before = await one_step(tiny_model_dir, tmp_path, ["task=math", "task_options={dataset: gsm8k_test}",
                                                                "split=test", "dataset_size=1"], math_outcomes)
    assert changed(trainer, before) and math.isfinite(logged(trainer)["loss"])
    assert logged(trainer)["accuracy"] > 0  # gsm8k's first answer is 18


def test_the_log_reports_the_partial_credit_score_and_the_evaluators_accuracy_apart(tmp_path):
    from asyncthink.episode import Episode, EpisodeStatus, Row
    from asyncthink.eval.stats import summarize
    from asyncthink.protocol import Role
    from asyncthink.training.rl_logging import episode_stats, read_metrics

    def ep(score, status=EpisodeStatus.OK):
        row = Row(row_id="0", role=Role.ORGANIZER, depth=0, completion_ids=[1], completion_mask=[1], logprobs=[0.0])
        return Episode(episode_id="e", mode="asyncthink", question="q", rows=[row], score=score, status=status)

    eps = [ep(1.0), ep(0.5), ep(0.75), ep(0.0), ep(None, EpisodeStatus.ERROR)]  # countdown: 2 of 4 found is 0.5
    stats = episode_stats(eps)
    assert stats["score"] == pytest.approx(2.25 / 5)
    assert stats["accuracy"] == pytest.approx(summarize(eps, n_boot=10)["accuracy"]) == pytest.approx(1 / 5)
    # a run logged before the split wrote the score as "accuracy": it reads back as the score
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 0, "accuracy": 0.4}) + "\n"
                                            + json.dumps({"step": 1, "accuracy": 0.2, "score": 0.5}) + "\n")
    assert read_metrics(tmp_path / "metrics.jsonl") == [{"step": 0, "score": 0.4},
                                                        {"step": 1, "accuracy": 0.2, "score": 0.5}]


# ------------------------------------------------------------ masking and advantages


@pytest.fixture
async def replayed(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    runtime = RuntimeConfig(capacity=3, prompts={"style": "compact"})
    ep = await replay_episode(tok, runtime, {"question": "q"}, "a<FORK-1>sub</FORK-1>b<JOIN-1>c<ANSWER>x</ANSWER>",
                              {"sub": "think<RETURN>the return</RETURN>"})
    assert ep.organizer.appended_tokens > 0 and len(ep.rows) == 2
    return model, tok, ep


def grads(model, rows, pad_id):
    model.zero_grad()
    batch = collate(rows, pad_id)
    policy_loss(token_logprobs(model, batch, 1.0), batch, tis_cap=2.0).loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


async def test_masked_positions_do_not_change_the_gradient(replayed):
    model, tok, ep = replayed
    base = grads(model, episode_rows(ep, 1.0, 0), tok.pad_token_id)
    org = ep.organizer
    for k, m in enumerate(org.completion_mask):
        if m == 0:
            org.logprobs[k] = -123.0  # appended tokens: never trained, their logprobs must not matter
    rows = episode_rows(ep, 1.0, 0)
    for r in rows:
        r.rollout_logprobs = [lp if m else 7.0 for lp, m in zip(r.rollout_logprobs, r.loss_mask, strict=True)]
    again = grads(model, rows, tok.pad_token_id)
    assert all(torch.equal(base[n], again[n]) for n in base)
    trained = [m for r in rows for m in r.loss_mask]
    assert sum(trained) == sum(row.generated_tokens for row in ep.rows)


async def test_worker_rows_receive_gradient_and_share_the_advantage(replayed):
    model, tok, ep = replayed
    rows = episode_rows(ep, 0.75, 0)
    worker_rows = [r for r in rows if r.row_id != "0"]
    assert worker_rows and any(g.abs().sum() > 0 for g in grads(model, worker_rows, tok.pad_token_id).values())
    batch = collate(rows, tok.pad_token_id)
    trained = batch.advantages_BT[batch.loss_mask_BT.bool()]
    assert trained.numel() == sum(r.generated_tokens for r in ep.rows) and torch.all(trained == 0.75)


def test_group_advantages():
    adv = group_advantages([1.0, 0.0, 1.0, 0.0, 2.0, 2.0, 2.0, 2.0], 4)
    assert adv[:4] == pytest.approx([1, -1, 1, -1], abs=1e-3) and adv[4:] == [0.0] * 4
    assert group_advantages([1.0, 0.0], 2, normalize_std=False) == [0.5, -0.5]
    with pytest.raises(ValueError):
        group_advantages([1.0, 0.0, 1.0], 2)


# ------------------------------------------------------------ resume and processes


def run_module(args: list[str], **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, *args], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, **kw)


def step_problems(out: Path) -> dict[int, list[str]]:
    from asyncthink.episode import read_jsonl

    return {int(p.stem.split("-")[1]): sorted({e.problem_id for e in read_jsonl(p)})
            for p in sorted((out / "rollouts").glob("step-*.jsonl"))}


@pytest.mark.slow
def test_resume_after_sigkill_matches_a_straight_run(tiny_model_dir, tmp_path):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    p = run_module(["-m", "tests.rl_fake_run", "--model", str(tiny_model_dir), "--out", str(straight), "--steps", "4"])
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-3000:]
    victim = run_module(["-m", "tests.rl_fake_run", "--model", str(tiny_model_dir), "--out", str(resumed),
                         "--steps", "4", "--delay", "0.3"])
    deadline = time.time() + 600
    while time.time() < deadline and not (resumed / "checkpoints" / "latest").exists():
        time.sleep(0.05)
    while time.time() < deadline and (resumed / "checkpoints" / "latest").read_text().strip() < "step-000002":
        time.sleep(0.05)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert not (resumed / "params-rank0.pt").exists()  # it really died before the end
    p = run_module(["-m", "tests.rl_fake_run", "--model", str(tiny_model_dir), "--out", str(resumed), "--steps", "4"])
    assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-3000:]
    a, b = torch.load(straight / "params-rank0.pt"), torch.load(resumed / "params-rank0.pt")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    assert step_problems(straight) == step_problems(resumed)


@pytest.mark.slow
def test_two_processes_end_with_identical_parameters(tiny_model_dir, tmp_path):
    p = run_module(["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29571",
                    "-m", "tests.rl_fake_run", "--model", str(tiny_model_dir), "--out", str(tmp_path), "--steps", "2"])
    assert p.wait(timeout=900) == 0, p.stderr.read().decode()[-3000:]
    r0, r1 = torch.load(tmp_path / "params-rank0.pt"), torch.load(tmp_path / "params-rank1.pt")
    start = params(__import__("transformers").AutoModelForCausalLM.from_pretrained(tiny_model_dir))
    assert all(torch.equal(r0[k], r1[k]) for k in r0)
    assert any(not torch.equal(r0[k], start[k]) for k in r0)


def test_metrics_of_a_resumed_run_keep_the_last_row_per_step(tmp_path):
    from asyncthink.training.rl_logging import read_metrics

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 0, "reward": 0.1}, {"step": 1, "reward": 0.2}, {"step": 2, "reward": 0.9},
            {"step": 1, "reward": 0.3}, {"step": 2, "reward": 0.4}]  # killed after step 2, resumed from step 1
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert [(r["step"], r["reward"]) for r in read_metrics(path)] == [(0, 0.1), (1, 0.3), (2, 0.4)]
