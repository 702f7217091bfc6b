"""Programmatic AsyncThink traces for the generated math task (``math_gen``), and matching sequential traces.

The organizer forks one worker per group ("3 boxes of 4 pens"), or works a
group out itself (``p_self_search``, while its workers run), joins them in
order or shuffled (``p_shuffle``), then adds the products two at a time and
subtracts what was given away, one line a step, and answers ``\\boxed{N}``::

    <FORK-1>3 boxes of 4 pens</FORK-1><FORK-2>5 bags of 2 pens</FORK-2>
    <JOIN-1>12</JOIN-1><JOIN-2>10</JOIN-2>
    12+10=22
    22-6=16
    <ANSWER>\\boxed{16}</ANSWER>

A worker counts (``3*4: 4 8 12``) and returns ``12``; the organizer counts
the groups it keeps the same way. The sequential trace counts every group
inline, then writes the same sums. Counting (rather than recalling a
product) and two numbers a sum line keep each step within what a tiny model
can learn, and make a group's work longer than the fork that hands it out,
so forking shortens the critical path as it does on real problems.
"""

from __future__ import annotations

import random
from typing import Any

from asyncthink.envs.math_gen import group_text
from asyncthink.training.synth_trace import TopologyOptions, Trace


def _groups(problem: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(sub-query, count, per container) of each group, in question order."""
    return [(group_text(a, c, b, problem["item"]), a, b)
            for (a, b), c in zip(problem["groups"], problem["containers"], strict=True)]


def count_line(a: int, b: int) -> str:
    """A product worked out by counting ``a`` times in steps of ``b``: ``3*4: 4 8 12``."""
    return f"{a}*{b}: " + " ".join(str(b * i) for i in range(1, a + 1))


def sums(values: list[int], give_away: int) -> list[str]:
    """The running sum, two numbers a line, then the give-away: ``["12+10=22", "22-6=16"]``."""
    lines, total = [], values[0]
    for v in values[1:]:
        lines.append(f"{total}+{v}={total + v}")
        total += v
    if give_away:
        lines.append(f"{total}-{give_away}={total - give_away}")
    return lines


def finish(values: list[int], give_away: int) -> str:
    total = sum(values) - give_away
    return "\n".join([*sums(values, give_away), f"<ANSWER>\\boxed{{{total}}}</ANSWER>"])


def asyncthink_trace(problem: dict[str, Any], rng: random.Random, opts: TopologyOptions) -> Trace:
    """Fork a worker per group (some groups done by the organizer itself), join, add up, answer."""
    groups = _groups(problem)
    order = list(range(len(groups)))
    if rng.random() < opts.p_shuffle:
        rng.shuffle(order)
    forked = [g for g in order if rng.random() >= opts.p_self_search][: opts.capacity - 1]
    trace, text, index_of = Trace(""), "", {}
    for index, g in enumerate(forked, start=1):
        query, a, b = groups[g]
        text += f"<FORK-{index}>{query}</FORK-{index}>"
        trace.workers[index], trace.subqueries[index] = f"{count_line(a, b)}\n<RETURN>{a * b}</RETURN>", query
        index_of[g] = index
    mine = [g for g in range(len(groups)) if g not in index_of]
    text += "".join(f"\n{count_line(groups[g][1], groups[g][2])}" for g in mine)
    joins = sorted(index_of.values())
    if rng.random() < opts.p_shuffle:
        rng.shuffle(joins)
    text += ("\n" if text else "") + "".join(f"<JOIN-{k}>" for k in joins)
    # add in the order the values stand in the organizer's context (its own, then as joined): a copy,
    # not a lookup
    group_of = {k: g for g, k in index_of.items()}
    values = [groups[g][1] * groups[g][2] for g in [*mine, *(group_of[k] for k in joins)]]
    trace.organizer = text + "\n" + finish(values, int(problem["give_away"]))
    trace.topology = f"fork{len(forked)}+self{len(mine)}"
    return trace


def sequential_trace(problem: dict[str, Any]) -> Trace:
    """Every product inline, in question order, then the same sums."""
    groups = _groups(problem)
    lines = "\n".join(count_line(a, b) for _, a, b in groups)
    values = [a * b for _, a, b in groups]
    return Trace(lines + "\n" + finish(values, int(problem["give_away"])), topology=f"seq{len(groups)}")
