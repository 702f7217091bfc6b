"""Build episode records from a compact script, for metric and reward tests.

A script is a list of steps for one row: ``("gen", n)`` generates n tokens;
``("fork", i, child)`` forks worker i (``child`` is its own script, or an int
for a plain worker of that many tokens); ``("join", i, m)`` joins worker i and
appends m tokens. Fork and join tags are counted inside the ``gen`` steps
around them, as a real tokenizer would place them.
"""

from __future__ import annotations

from asyncthink.episode import Episode, EventKind, Row, RowEvent
from asyncthink.protocol import Role


def build_episode(script: list, capacity: int = 4, pool_policy: str = "error", mode: str = "asyncthink") -> Episode:
    rows: list[Row] = []
    _build_row(script, "0", None, 0, None, rows)
    return Episode(episode_id="e", mode=mode, question="q", rows=rows, capacity=capacity, pool_policy=pool_policy)


def _build_row(script, row_id, parent, depth, index, rows) -> Row:
    row = Row(row_id=row_id, role=Role.ORGANIZER if parent is None else Role.WORKER, depth=depth,
              parent=parent, fork_index=index)
    rows.append(row)
    if isinstance(script, int):
        script = [("gen", script)]
    children: dict[int, str] = {}
    for step in script:
        if step[0] == "gen":
            _extend(row, step[1], 1)
        elif step[0] == "fork":
            child_id = f"{row_id}.{len(children) + 1}"
            children[step[1]] = child_id
            row.events.append(RowEvent(EventKind.FORK, step[1], len(row.completion_ids), child_id, 0.0))
            _build_row(step[2], child_id, row_id, depth + 1, step[1], rows)
        elif step[0] == "join":
            row.events.append(RowEvent(EventKind.JOIN, step[1], len(row.completion_ids), children[step[1]], 0.0))
            _extend(row, step[2], 0)
    return row


def _extend(row: Row, n: int, mask: int) -> None:
    row.completion_ids += [7] * n
    row.completion_mask += [mask] * n
    row.logprobs += [-0.5 if mask else 0.0] * n


def parallel_episode(lengths: list[int]) -> Episode:
    rows = []
    for k, n in enumerate(lengths):
        r = Row(row_id=f"t{k}", role=Role.ORGANIZER, depth=0)
        _extend(r, n, 1)
        rows.append(r)
    return Episode(episode_id="p", mode="parallel", question="q", rows=rows, capacity=len(lengths))
