"""Episode rewards: format errors override accuracy, the concurrency term is capped and gated, nothing raises."""

from __future__ import annotations

import logging

import pytest

from asyncthink.envs.rewards import (
    RewardConfig,
    accuracy,
    batch_rewards,
    concurrency,
    concurrency_reward,
    episode_reward,
    safe,
)
from asyncthink.episode import Episode, EpisodeStatus, Row, RowFormatError
from asyncthink.protocol import FormatErrorCode, Role
from tests.builders import build_episode

# organizer 18 steps, two workers of 5 and 6 tokens: eta = 29/18 (see test_metrics), capacity 4
TWO_WORKERS = [("gen", 2), ("fork", 1, 5), ("gen", 2), ("fork", 2, 6), ("gen", 10), ("join", 1, 3),
               ("gen", 1), ("join", 2, 3), ("gen", 3)]


def plain_episode(score=1.0, **fields) -> Episode:
    row = Row(row_id="0", role=Role.ORGANIZER, depth=0, completion_ids=[1] * 8, completion_mask=[1] * 8,
              logprobs=[-0.1] * 8)
    return Episode(episode_id="e", mode="asyncthink", question="q", rows=[row], score=score, **fields)


def test_accuracy_only_without_forks():
    ep = plain_episode(score=1.0, capacity=4)
    r = episode_reward(ep, RewardConfig(concurrency_weight=0.5, tau=0.5))
    # no fork: eta = 1, eta/capacity = 0.25, R_concurrency = 0.25/0.5
    assert r.accuracy == 1.0 and r.eta_over_capacity == 0.25 and r.concurrency == 0.5
    assert r.total == pytest.approx(1.0 + 0.5 * 0.5) and not r.format_error
    assert episode_reward(plain_episode(score=None)).accuracy == 0.0


@pytest.mark.parametrize("fields", [
    {"format_errors": [RowFormatError(FormatErrorCode.NO_ANSWER, "no <ANSWER>", "0")]},
    {"status": EpisodeStatus.FORMAT_ERROR},
    {"status": EpisodeStatus.BUDGET_EXCEEDED},
])
def test_format_error_overrides_accuracy(fields):
    ep = plain_episode(score=1.0, metrics={"eta_over_capacity": 1.0}, **fields)
    assert ep.has_format_error
    r = episode_reward(ep)
    assert r.format_error and r.total == r.format == -1.0
    assert episode_reward(ep, RewardConfig(r_format_error=-0.5)).total == -0.5


def test_concurrency_capped_at_tau():
    cfg = RewardConfig(concurrency_weight=0.1, tau=0.5)
    low = episode_reward(plain_episode(score=1.0, metrics={"eta_over_capacity": 0.25}), cfg)
    at = episode_reward(plain_episode(score=1.0, metrics={"eta_over_capacity": 0.5}), cfg)
    high = episode_reward(plain_episode(score=1.0, metrics={"eta_over_capacity": 0.95}), cfg)
    assert (low.concurrency, at.concurrency, high.concurrency) == (0.5, 1.0, 1.0)
    assert high.total == pytest.approx(1.1)
    assert concurrency_reward(3.0, 1.0, tau=1.0) == 1.0 and concurrency_reward(-1.0, 1.0) == 0.0


def test_concurrency_from_the_episode_dag():
    ep = build_episode(TWO_WORKERS, capacity=4)
    ep.score = 1.0
    eta_c = 29 / 18 / 4
    assert concurrency(ep, tau=0.5) == pytest.approx(eta_c / 0.5)
    assert concurrency(ep, tau=0.25) == 1.0
    r = episode_reward(ep, RewardConfig(concurrency_weight=1.0, tau=0.5))
    assert r.eta_over_capacity == pytest.approx(eta_c) and r.total == pytest.approx(1.0 + eta_c / 0.5)


@pytest.mark.parametrize("gate, score, paid", [
    ("none", 0.0, True), ("positive", 0.0, False), ("positive", 0.25, True),
    ("correct", 0.75, False), ("correct", 1.0, True),
])
def test_gating(gate, score, paid):
    ep = plain_episode(score=score, metrics={"eta_over_capacity": 0.5})
    r = episode_reward(ep, RewardConfig(concurrency_weight=0.2, tau=0.5, gate=gate))
    assert r.concurrency == (1.0 if paid else 0.0)
    assert r.total == pytest.approx(score + (0.2 if paid else 0.0))


def test_raising_reward_function_scores_zero(caplog):
    def broken(ep):
        raise RuntimeError("boom")

    with caplog.at_level(logging.ERROR, logger="asyncthink.envs.rewards"):
        assert safe(broken)(plain_episode()) == 0.0
    assert "broken" in caplog.text and "boom" in caplog.text
    assert safe(lambda ep: float("nan"))(plain_episode()) == 0.0
    assert safe(lambda ep: 0.7)(plain_episode()) == 0.7
    assert safe(broken, default=-1.0)(plain_episode()) == -1.0


def test_broken_episodes_never_raise():
    weird = plain_episode(score="not a number", metrics={"eta_over_capacity": "nan-ish"})
    r = episode_reward(weird)
    assert r.accuracy == 0.0 and r.concurrency == 0.0 and r.total == 0.0
    empty = Episode(episode_id="x", mode="asyncthink", question="q", rows=[], score=1.0)
    assert episode_reward(empty).total == pytest.approx(1.0)
    assert accuracy(plain_episode(score=7.0)) == 1.0
    eps = [plain_episode(1.0), weird, plain_episode(1.0, status=EpisodeStatus.FORMAT_ERROR)]
    assert batch_rewards(eps, RewardConfig(concurrency_weight=0.0)) == [1.0, 0.0, -1.0]


@pytest.mark.parametrize("options, bad", [
    ({"tau": 0.0}, "0.0"), ({"tau": 1.5}, "1.5"), ({"gate": "sometimes"}, "sometimes"),
    ({"concurrency_weight": -1.0}, "-1.0"), ({"r_format_error": float("inf")}, "inf"),
])
def test_config_validation_quotes_values(options, bad):
    with pytest.raises(ValueError, match=bad):
        RewardConfig(**options)


def test_one_prefill_cost_setting_the_runtimes():
    """The reward recomputes eta with the prefill cost the episode's runtime used, so a stored and a
    recomputed figure agree; the reward config has no second setting to disagree with."""
    from asyncthink.envs.rewards import eta_over_capacity
    from asyncthink.metrics import episode_metrics

    ep = build_episode(TWO_WORKERS, capacity=4)
    ep.info["runtime"] = {"prefill_cost": 2.0}
    stored = episode_metrics(ep, 2.0)["eta_over_capacity"]
    assert stored != episode_metrics(ep, 0.0)["eta_over_capacity"]  # the cost matters for this episode
    assert eta_over_capacity(ep) == pytest.approx(stored)
    ep.metrics = {"eta_over_capacity": stored}
    assert eta_over_capacity(ep) == stored
    with pytest.raises(TypeError):
        RewardConfig(prefill_cost=2.0)


def test_error_episodes_are_not_trainable():
    from asyncthink.envs.rewards import trainable

    assert not trainable(plain_episode(status=EpisodeStatus.ERROR))
    assert trainable(plain_episode(status=EpisodeStatus.BUDGET_EXCEEDED)) and trainable(plain_episode())
