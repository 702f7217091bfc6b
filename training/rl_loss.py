"""The GRPO policy loss over a micro-batch: clipped ratio, truncated importance weights, optional KL.

For each trained token with advantage ``A``:

    ratio = exp(logp - logp_old)              logp_old: the trainer's policy before this update
    surrogate = min(ratio * A, clip(ratio, 1 - clip_low, 1 + clip_high) * A)
    w = min(exp(logp_old - logp_rollout), tis_cap)   (no gradient) corrects engine/trainer mismatch
    loss_token = -w * surrogate + kl_coef * k3(logp_ref, logp)

``logp`` is computed at the rollout temperature, so it is the distribution the
engine sampled from. ``clipped`` counts the tokens whose clip binds: ratio above
``1 + clip_high`` with ``A > 0``, or below ``1 - clip_low`` with ``A < 0``
(elsewhere the unclipped term is the minimum and the token still has gradient).
The function returns the *sum* over trained tokens; the
trainer divides by the token count of the whole batch (token mean).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asyncthink.training.rl_batch import TokenBatch


@dataclass
class LossParts:
    """Sums over the trained tokens of a micro-batch (divide by ``tokens`` for means)."""

    loss: torch.Tensor
    tokens: float
    clipped: float
    kl: float
    tis_weight: float
    ratio: float


def token_logprobs(model: torch.nn.Module, batch: TokenBatch, temperature: float) -> torch.Tensor:
    """Log-probability of each target token under ``model`` at ``temperature``, [batch, targets]."""
    logits = model(input_ids=batch.input_ids_BT, attention_mask=batch.attention_mask_BT).logits.float()
    logprobs = torch.log_softmax(logits / temperature, dim=-1)
    return logprobs.gather(-1, batch.target_ids_BT.unsqueeze(-1)).squeeze(-1)


def policy_loss(
    logp_BT: torch.Tensor,
    batch: TokenBatch,
    old_logp_BT: torch.Tensor | None = None,
    ref_logp_BT: torch.Tensor | None = None,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    tis_cap: float = 2.0,
    kl_coef: float = 0.0,
) -> LossParts:
    mask = batch.loss_mask_BT
    old = logp_BT.detach() if old_logp_BT is None else old_logp_BT
    ratio = torch.exp(logp_BT - old)
    adv = batch.advantages_BT
    surrogate = torch.minimum(ratio * adv, torch.clamp(ratio, 1 - clip_low, 1 + clip_high) * adv)
    weight = torch.ones_like(ratio)
    if tis_cap > 0:
        weight = torch.clamp(torch.exp(old - batch.rollout_logprobs_BT), max=tis_cap).detach()
    per_token = -weight * surrogate
    kl = torch.zeros_like(per_token)
    if ref_logp_BT is not None:
        delta = ref_logp_BT - logp_BT
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + kl_coef * kl
    # the clip binds (zero gradient) only on the side the advantage pushes towards
    clipped = (((ratio > 1 + clip_high) & (adv > 0)) | ((ratio < 1 - clip_low) & (adv < 0))).float()
    return LossParts(
        loss=(per_token * mask).sum(), tokens=float(mask.sum()), clipped=float((clipped * mask).sum()),
        kl=float((kl.detach() * mask).sum()), tis_weight=float((weight * mask).sum()),
        ratio=float((ratio.detach() * mask).sum()),
    )
