"""Episode rewards (DESIGN section 5), as plain functions of an ``Episode``.

    R = r_format_error                                   if the episode has any format error
    R = accuracy_weight * R_accuracy + lambda * R_concurrency   otherwise

``R_accuracy`` is the task's score already on the episode (``ep.score``; 1/0,
or ``min(distinct correct, required) / required`` for countdown; missing -> 0).
An episode has a format error when it records one (``ep.format_errors``) or
ended with status ``format_error`` or ``budget_exceeded``.
``R_concurrency = min(eta / capacity, tau) / tau``, with ``eta / capacity``
from ``ep.metrics["eta_over_capacity"]`` when the runtime stored it, else
computed by ``asyncthink.metrics.episode_metrics`` with the ``prefill_cost``
the episode's runtime recorded: there is one prefill-cost setting, the
runtime's (``RuntimeConfig.prefill_cost``). It lies in [0, 1] and is capped
at ``tau``: concurrency beyond that earns nothing more. Since ``eta >= 1``,
``eta / capacity >= 1 / capacity``: a ``tau`` at or below ``1 / capacity``
pays every episode the constant 1, so the RL config rejects it.

Who is to blame. A format error or a budget breach (``format_error``,
``budget_exceeded``; a context overflow caused by the policy's own text is a
budget breach) is the policy's failure and is rewarded ``r_format_error``. An
infrastructure failure (status ``error``: an engine or runtime fault) is
nobody's signal: ``trainable`` is False for it and the trainer leaves it out
of the update (see ``training/rl.py``).

Gating (an option; later work found it helps): ``gate="positive"`` pays the
concurrency term only when ``R_accuracy > 0``, ``gate="correct"`` only when
``R_accuracy >= 1``; ``gate="none"`` always pays it. Gating stops a policy
from farming concurrency with wrong answers.

Reward code must never crash a training batch: ``safe`` wraps a reward
function so an exception is logged and scores ``default`` (0), and
``episode_reward`` computes every term through it.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

from asyncthink.config_io import require
from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.metrics import episode_metrics

log = logging.getLogger(__name__)

GATES = ("none", "positive", "correct")


@dataclass(frozen=True)
class RewardConfig:
    """Weights and options of the episode reward."""

    r_format_error: float = -1.0
    """The whole reward of an episode with any format error (replaces the other terms)."""
    accuracy_weight: float = 1.0
    """Weight of ``R_accuracy``."""
    concurrency_weight: float = 0.2
    """``lambda``, the weight of ``R_concurrency``; 0 turns the term off. Our default, not the paper's."""
    tau: float = 0.5
    """Cap on ``eta / capacity``, in (0, 1]: ``R_concurrency = min(eta / capacity, tau) / tau``."""
    gate: str = "none"
    """When the concurrency term is paid: "none" (always), "positive" (score > 0), "correct" (score >= 1)."""
    def __post_init__(self):
        require(
            (0 < self.tau <= 1, f"tau must be in (0, 1], got {self.tau!r}"),
            (self.gate in GATES, f"gate must be one of {GATES}, got {self.gate!r}"),
        )
        for name in ("r_format_error", "accuracy_weight", "concurrency_weight"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not math.isfinite(value):
                raise ValueError(f"{name} must be a finite number, got {value!r}")
        require(
            (self.concurrency_weight >= 0, f"concurrency_weight must be >= 0, got {self.concurrency_weight!r}"),
        )

    def check_capacity(self, capacity: int) -> None:
        """Reject a ``tau`` the concurrency term cannot vary under: ``eta / capacity >= 1 / capacity``."""
        if self.concurrency_weight > 0 and self.tau <= 1 / capacity:
            raise ValueError(f"rewards.tau={self.tau!r} is <= 1/capacity={1 / capacity:.4g} (capacity {capacity}): "
                             f"eta >= 1, so R_concurrency would be the constant 1; choose tau above 1/capacity "
                             f"(above the SFT model's measured eta/capacity) or set concurrency_weight=0")


@dataclass(frozen=True)
class RewardBreakdown:
    """The total reward and its terms (unweighted), for logging."""

    total: float
    accuracy: float
    concurrency: float
    """``R_concurrency`` after gating, in [0, 1]."""
    format: float
    """``r_format_error`` if the episode has a format error (then it is the total), else 0."""
    format_error: bool
    eta_over_capacity: float


def safe(fn: Callable[..., float], default: float = 0.0) -> Callable[..., float]:
    """``fn`` that returns ``default`` (and logs) instead of raising, or of returning a non-finite value."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs) -> float:
        try:
            value = float(fn(*args, **kwargs))
        except Exception:
            log.exception("reward function %s raised; scoring %s", getattr(fn, "__name__", fn), default)
            return default
        if not math.isfinite(value):
            log.error("reward function %s returned %r; scoring %s", getattr(fn, "__name__", fn), value, default)
            return default
        return value

    return wrapper


def accuracy(ep: Episode) -> float:
    """``ep.score`` clipped to [0, 1]; 0 when missing."""
    return min(1.0, max(0.0, float(ep.score or 0.0)))


def trainable(ep: Episode) -> bool:
    """False for an infrastructure failure (status ``error``): no signal about the policy."""
    return ep.status != EpisodeStatus.ERROR


def eta_over_capacity(ep: Episode) -> float:
    """The stored figure, else recomputed with the prefill cost the episode's runtime used."""
    if "eta_over_capacity" in ep.metrics:
        return float(ep.metrics["eta_over_capacity"])
    prefill_cost = float((ep.info.get("runtime") or {}).get("prefill_cost", 0.0))
    return episode_metrics(ep, prefill_cost)["eta_over_capacity"]


def concurrency_reward(eta_over_capacity: float, score: float, tau: float = 0.5, gate: str = "none") -> float:
    """``min(eta / capacity, tau) / tau``, or 0 when the gate is closed for this score."""
    if (gate == "positive" and score <= 0) or (gate == "correct" and score < 1):
        return 0.0
    return min(max(eta_over_capacity, 0.0), tau) / tau


def concurrency(ep: Episode, tau: float = 0.5, gate: str = "none") -> float:
    """``R_concurrency`` of an episode (gated on its own score)."""
    return concurrency_reward(eta_over_capacity(ep), accuracy(ep), tau, gate)


_safe_accuracy = safe(accuracy)
_safe_eta = safe(eta_over_capacity)
_safe_concurrency = safe(concurrency_reward)
_safe_format_error = safe(lambda ep: ep.has_format_error, default=1.0)  # unknown: treat as broken


def episode_reward(ep: Episode, cfg: RewardConfig = RewardConfig()) -> RewardBreakdown:
    """The reward of one episode; never raises."""
    broken = bool(_safe_format_error(ep))
    acc = _safe_accuracy(ep)
    eta = _safe_eta(ep)
    conc = _safe_concurrency(eta, acc, cfg.tau, cfg.gate)
    total = cfg.r_format_error if broken else cfg.accuracy_weight * acc + cfg.concurrency_weight * conc
    return RewardBreakdown(total=total, accuracy=acc, concurrency=conc, format=cfg.r_format_error if broken else 0.0,
                           format_error=broken, eta_over_capacity=eta)


def batch_rewards(episodes: list[Episode], cfg: RewardConfig = RewardConfig()) -> list[float]:
    """Total rewards of a batch, one per episode."""
    return [episode_reward(ep, cfg).total for ep in episodes]
