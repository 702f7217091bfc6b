"""SFT rows from episode records: one row per organizer or worker sequence.

A row is ``input_ids = prompt_ids + completion_ids`` and ``completion_mask``
over the whole sequence: 0 on the prompt, and inside the completion the
record's own mask (1 = written by the policy, 0 = appended by the runtime
after a join). So worker returns inside an organizer row are masked out
exactly as in RL, and TRL's ``SFTTrainer`` (``completion_only_loss``) trains on
the policy's tokens only.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from asyncthink.episode import Episode


def sft_rows(ep: Episode) -> list[dict[str, Any]]:
    """Every row of the episode as an SFT example."""
    rows = []
    for row in ep.rows:
        rows.append({
            "input_ids": list(row.prompt_ids) + list(row.completion_ids),
            "completion_mask": [0] * len(row.prompt_ids) + list(row.completion_mask),
            "role": str(row.role),
            "mode": ep.mode,
            "episode_id": ep.episode_id,
            "row_id": row.row_id,
            "problem_id": ep.problem_id or "",
        })
    return rows


def sft_dataset(episodes: Iterable[Episode]):
    """A ``datasets.Dataset`` of the rows of all ``episodes``."""
    import datasets

    rows = [r for ep in episodes for r in sft_rows(ep)]
    if not rows:
        raise ValueError("no episodes to build an SFT dataset from")
    return datasets.Dataset.from_list(rows)
