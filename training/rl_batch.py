"""From scored episodes to token tensors: group advantages, one training row per episode row.

Every row of an episode (the organizer and every worker) becomes one
sequence ``prompt + completion``. The targets are the next tokens; a target
is trained iff it is a completion token the policy generated (mask 1), so
prompts and the worker returns the runtime appended are left out. Every
trained token of an episode carries that episode's advantage, and its
rollout logprob (the engine's, for the importance weight).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from asyncthink.episode import Episode


def group_advantages(rewards: list[float], group_size: int, normalize_std: bool = True,
                     eps: float = 1e-4, keep: list[bool] | None = None) -> list[float | None]:
    """``(R - mean_G) / (std_G + eps)`` (or ``R - mean_G``) for consecutive groups of ``group_size``.

    ``keep[k]`` False drops episode k (an infrastructure failure): its advantage is None, and its group's
    mean and std are taken over the kept episodes only. A group with fewer than two kept episodes has no
    relative signal: all of it is dropped.
    """
    if len(rewards) % group_size:
        raise ValueError(f"{len(rewards)} rewards do not split into groups of {group_size}")
    keep = [True] * len(rewards) if keep is None else keep
    out: list[float | None] = []
    for g in range(0, len(rewards), group_size):
        kept = [k for k in range(g, g + group_size) if keep[k]]
        values = torch.tensor([rewards[k] for k in kept], dtype=torch.float64)
        if len(kept) < 2:
            out += [None] * group_size
            continue
        centred = values - values.mean()
        adv = (centred / (values.std(unbiased=False) + eps) if normalize_std else centred).tolist()
        by_index = dict(zip(kept, adv, strict=True))
        out += [by_index.get(k) for k in range(g, g + group_size)]
    return out


SIGNAL_EPS = 1e-9
"""An advantage at most this far from 0 carries no signal."""


def signal_groups(advantages: list[float | None], group_size: int) -> list[bool | None]:
    """Per group: True if some kept advantage is non-zero (the group teaches something), False if all are 0
    (every answer scored alike), None if the group has no kept episode (all dropped)."""
    out: list[bool | None] = []
    for g in range(0, len(advantages), group_size):
        kept = [a for a in advantages[g : g + group_size] if a is not None]
        out.append(any(abs(a) > SIGNAL_EPS for a in kept) if kept else None)
    return out


@dataclass
class TrainRow:
    """One sequence to train on, aligned to next-token targets (length ``len(ids) - 1``)."""

    ids: list[int]
    loss_mask: list[int]
    rollout_logprobs: list[float]
    advantage: float
    episode: int
    row_id: str
    weight: float = 1.0
    """Factor on each of the row's token losses before the loss normaliser (``row_mean``: 1 / its tokens)."""


def episode_rows(ep: Episode, advantage: float, index: int) -> list[TrainRow]:
    """The training rows of one episode; rows without policy tokens are skipped."""
    out = []
    for row in ep.rows:
        if not any(row.completion_mask):
            continue
        ids = list(row.prompt_ids) + list(row.completion_ids)
        pad = len(row.prompt_ids) - 1
        out.append(TrainRow(ids, [0] * pad + list(row.completion_mask), [0.0] * pad + list(row.logprobs),
                            advantage, index, row.row_id))
    return out


@dataclass
class TokenBatch:
    """Padded tensors of a micro-batch; ``*_BT`` are [batch, targets]."""

    input_ids_BT: torch.Tensor
    attention_mask_BT: torch.Tensor
    target_ids_BT: torch.Tensor
    loss_mask_BT: torch.Tensor
    rollout_logprobs_BT: torch.Tensor
    advantages_BT: torch.Tensor
    weights_BT: torch.Tensor | None = None
    """Per-token loss factor (``TrainRow.weight``); None means 1 everywhere."""

    def to(self, device: torch.device | str) -> TokenBatch:
        return TokenBatch(*(None if t is None else t.to(device) for t in self.__dict__.values()))


def collate(rows: list[TrainRow], pad_id: int) -> TokenBatch:
    """Right-pad rows into one batch; inputs are ids[:-1], targets ids[1:]."""
    width = max(len(r.ids) for r in rows) - 1

    def padded(values: list, fill) -> list:
        return list(values) + [fill] * (width - len(values))

    inputs = [padded(r.ids[:-1], pad_id) for r in rows]
    return TokenBatch(
        input_ids_BT=torch.tensor(inputs, dtype=torch.long),
        attention_mask_BT=torch.tensor([padded([1] * (len(r.ids) - 1), 0) for r in rows], dtype=torch.long),
        target_ids_BT=torch.tensor([padded(r.ids[1:], pad_id) for r in rows], dtype=torch.long),
        loss_mask_BT=torch.tensor([padded(r.loss_mask, 0) for r in rows], dtype=torch.float32),
        rollout_logprobs_BT=torch.tensor([padded(r.rollout_logprobs, 0.0) for r in rows], dtype=torch.float32),
        advantages_BT=torch.tensor([[r.advantage] * width for r in rows], dtype=torch.float32),
        weights_BT=torch.tensor([[r.weight] * width for r in rows], dtype=torch.float32),
    )


def micro_batches(rows: list[TrainRow], max_tokens: int) -> list[list[TrainRow]]:
    """Group rows (longest first) so each padded micro-batch holds at most ``max_tokens`` tokens."""
    batches: list[list[TrainRow]] = []
    for row in sorted(rows, key=lambda r: -len(r.ids)):
        if batches and len(batches[-1][0].ids) * (len(batches[-1]) + 1) <= max_tokens:
            batches[-1].append(row)
        else:
            batches.append([row])
    return batches
