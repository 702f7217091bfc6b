"""The GRPO policy loss over a micro-batch: clipped ratio, truncated importance weights, optional KL;
the loss normalisers; and the per-token diagnostics a step logs.

For each trained token with advantage ``A``:

    ratio = exp(logp - logp_old)              logp_old: the trainer's policy before this update
    surrogate = min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)
    w = min(exp(logp_old - logp_rollout), tis_cap)   (no gradient) corrects engine/trainer mismatch
    loss_token = -w * surrogate + kl_coef * k3(logp_ref, logp)

``logp`` is computed at the rollout temperature, so it is the distribution the
engine sampled from. ``clipped`` counts the tokens whose clip binds: ratio above
``1 + clip_high`` with ``A > 0``, or below ``1 - clip_low`` with ``A < 0``
(elsewhere the unclipped term is the minimum and the token still has gradient).
The function returns the *sum* over trained tokens (each times its row's
weight); the trainer divides by the loss normaliser of the whole batch
(``rl_config.LOSS_NORMS``; by default the token count: a token mean).

Diagnostics, summed over trained tokens like the loss (``LossParts.means``):
the policy's entropy at the rollout temperature, the sampler/trainer gap
``|logp_old - logp_rollout|`` and the raw importance weight
``exp(logp_old - logp_rollout)`` before its cap (sum, squared spread, min,
max, share above the cap), so a step shows how far the engine's distribution
is from the one the trainer differentiates.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields

import torch

from asyncthink.episode import Episode
from asyncthink.training.rl_batch import TokenBatch, TrainRow, episode_rows, signal_groups


def row_weight(row: TrainRow, loss_norm: str) -> float:
    """The factor on each of a row's token losses: ``1 / tokens`` under ``row_mean``, else 1."""
    return 1.0 / max(1, sum(row.loss_mask)) if loss_norm == "row_mean" else 1.0


def loss_rows(episodes: list[Episode], advantages: list[float | None], group_size: int,
              loss_norm: str) -> list[TrainRow]:
    """A step's training rows: the kept episodes' (advantage not None), minus the groups without signal under
    ``signal_token_mean``, each row weighted for ``loss_norm``."""
    keep = [a is not None for a in advantages]
    if loss_norm == "signal_token_mean":
        signal = signal_groups(advantages, group_size)
        keep = [k and bool(signal[i // group_size]) for i, k in enumerate(keep)]
    rows = [r for i, (ep, a) in enumerate(zip(episodes, advantages, strict=True)) if keep[i]
            for r in episode_rows(ep, a, i)]
    for r in rows:
        r.weight = row_weight(r, loss_norm)
    return rows


def loss_denominator(rows: list[TrainRow], loss_norm: str, episodes: float, loss_norm_tokens: int,
                     global_sum: Callable[[float], float] = float) -> float:
    """What an update's summed (row-weighted) token losses are divided by: trained tokens (``token_mean``,
    ``signal_token_mean``, whose rows already leave out the groups without signal), rows (``row_mean``), or
    ``episodes x loss_norm_tokens`` (``constant``; ``episodes`` in the update, all processes). ``global_sum``
    adds a count over processes, so every process divides by the same number."""
    if loss_norm == "constant":
        return episodes * loss_norm_tokens
    local = len(rows) if loss_norm == "row_mean" else sum(sum(r.loss_mask) for r in rows)
    return max(global_sum(float(local)), 1.0)


@dataclass
class LossParts:
    """Sums over the trained tokens of a micro-batch (divide by ``tokens`` for means); ``tis_raw_min`` and
    ``tis_raw_max`` are extremes. ``loss`` is the (row-weighted) sum the trainer normalises."""

    loss: torch.Tensor
    tokens: float
    clipped: float
    kl: float
    tis_weight: float
    ratio: float
    entropy: float = 0.0
    logprob_gap: float = 0.0
    tis_raw: float = 0.0
    tis_dev_sq: float = 0.0
    """Sum of ``(w - 1) ** 2``: about 1 is where the weights sit, so the std keeps its digits."""
    tis_raw_min: float = math.inf
    tis_raw_max: float = -math.inf
    tis_capped: float = 0.0

    def __add__(self, other: LossParts) -> LossParts:
        """Two micro-batches' parts as one: sums add, extremes combine (``loss`` is summed detached)."""
        merged = {f.name: getattr(self, f.name) + getattr(other, f.name) for f in fields(self)}
        merged["loss"] = torch.as_tensor(float(self.loss) + float(other.loss))
        merged["tis_raw_min"] = min(self.tis_raw_min, other.tis_raw_min)
        merged["tis_raw_max"] = max(self.tis_raw_max, other.tis_raw_max)
        return LossParts(**merged)

    def means(self) -> dict[str, float]:
        """Per-token means (and the std and extremes of the raw importance weight) of the diagnostics."""
        n = max(self.tokens, 1.0)
        mean_w = self.tis_raw / n
        return {
            "clip_fraction": self.clipped / n, "kl": self.kl / n, "tis_weight": self.tis_weight / n,
            "ratio": self.ratio / n, "entropy": self.entropy / n, "logprob_gap": self.logprob_gap / n,
            "tis_raw_mean": mean_w, "tis_raw_std": max(0.0, self.tis_dev_sq / n - (mean_w - 1) ** 2) ** 0.5,
            "tis_raw_min": self.tis_raw_min if self.tokens else 1.0,
            "tis_raw_max": self.tis_raw_max if self.tokens else 1.0, "tis_capped": self.tis_capped / n,
        }


def token_logprobs(model: torch.nn.Module, batch: TokenBatch, temperature: float) -> torch.Tensor:
    """Log-probability of each target token under ``model`` at ``temperature``, [batch, targets]."""
    return token_logprobs_and_entropy(model, batch, temperature, entropy=False)[0]


def token_logprobs_and_entropy(model: torch.nn.Module, batch: TokenBatch, temperature: float,
                               entropy: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``token_logprobs``, and the entropy of each position's next-token distribution at ``temperature``
    (the distribution the engine samples from; no gradient), [batch, targets]."""
    logits = model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_mask_BT).logits.float()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    picked = logprobs.gather(-1, batch.target_ids_BT.unsqueeze(-1)).squeeze(-1)
    if not entropy:
        return picked, None
    return picked, trained_entropy(logprobs, batch.loss_mask_BT)


ENTROPY_CHUNK = 1024  # positions at a time: a [chunk, vocab] copy, not another [batch, targets, vocab] tensor


@torch.no_grad()
def trained_entropy(logprobs_BTV: torch.Tensor, mask_BT: torch.Tensor) -> torch.Tensor:
    """Entropy of the next-token distribution at the trained positions (0 elsewhere), [batch, targets].

    Only masked-in positions, a chunk at a time: at a 150k vocabulary a full-size ``p * log p`` would add two
    tensors as large as the logits. ``entr`` gives 0 where p is 0 (a masked-out logit), not ``0 * -inf``."""
    ent_BT = torch.zeros(mask_BT.shape, dtype=logprobs_BTV.dtype, device=logprobs_BTV.device)
    where = (mask_BT > 0).nonzero()
    for start in range(0, len(where), ENTROPY_CHUNK):
        b, t = where[start:start + ENTROPY_CHUNK].unbind(-1)
        ent_BT[b, t] = torch.special.entr(logprobs_BTV[b, t].exp()).sum(-1)
    return ent_BT


def policy_loss(
    logp_BT: torch.Tensor,
    batch: TokenBatch,
    old_logp_BT: torch.Tensor | None = None,
    ref_logp_BT: torch.Tensor | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    tis_cap: float = 2.0,
    kl_coef: float = 0.0,
    entropy_BT: torch.Tensor | None = None,
) -> LossParts:
    mask = batch.loss_mask_BT
    old = logp_BT.detach() if old_logp_BT is None else old_logp_BT
    ratio = torch.exp(logp_BT - old)
    adv = batch.advantages_BT
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv)
    gap = (old - batch.rollout_logprobs_BT).detach()
    raw = torch.exp(gap)  # the importance weight before its cap: the engine/trainer mismatch itself
    weight = torch.clamp(raw, max=tis_cap) if tis_cap > 0 else torch.ones_like(ratio)
    per_token = -weight * surrogate
    kl = torch.zeros_like(per_token)
    if ref_logp_BT is not None:
        delta = ref_logp_BT - logp_BT
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + kl_coef * kl
    # the clip binds (zero gradient) only on the side the advantage pushes towards
    clipped = (((ratio > 1 + clip_high) & (adv > 0)) | ((ratio < 1 - clip_low) & (adv < 0))).float()
    rows = mask if batch.weights_BT is None else mask * batch.weights_BT
    on = mask > 0
    return LossParts(
        loss=(per_token * rows).sum(), tokens=float(mask.sum()), clipped=float((clipped * mask).sum()),
        kl=float((kl.detach() * mask).sum()), tis_weight=float((weight * mask).sum()),
        ratio=float((ratio.detach() * mask).sum()),
        entropy=float((entropy_BT * mask).sum()) if entropy_BT is not None else 0.0,
        logprob_gap=float((gap.abs() * mask).sum()), tis_raw=float((raw.double() * mask).sum()),
        tis_dev_sq=float(((raw.double() - 1) ** 2 * mask).sum()),
        tis_raw_min=float(raw[on].min()) if on.any() else math.inf,
        tis_raw_max=float(raw[on].max()) if on.any() else -math.inf,
        tis_capped=float(((raw > tis_cap) & on).sum()) if tis_cap > 0 else 0.0,
    )
