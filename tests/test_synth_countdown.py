"""Countdown search traces: every step written is right arithmetic on whole numbers, every hit is checked
against the target and returned as a verified solution, and the workers' branches split the search."""

from __future__ import annotations

import itertools
import random
import re

import pytest

from asyncthink.envs import make_task
from asyncthink.envs.countdown import check_entry
from asyncthink.training.synth_countdown import (
    asyncthink_trace,
    branches,
    sequential_trace,
    worker_text,
)
from asyncthink.training.synth_trace import TopologyOptions

OPTIONS = {"n_numbers": 3, "min_number": 1, "max_number": 9, "min_target": 5, "max_target": 40, "required": 2,
           "test_fraction": 0.3}
EQUATION = re.compile(r"(\d+)([-+*/])(\d+)=(-?\d+(?:/\d+)?)(!?)")
RETURN = re.compile(r"<RETURN>(.*)</RETURN>", re.S)


def problems(n: int = 40, **options) -> list[dict]:
    return make_task("countdown", **(OPTIONS | options)).dataset("train", n=n, seed=3)


def _value(a: int, op: str, b: int) -> float:
    ops = {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b}
    return ops[op]()


@pytest.mark.parametrize("n_numbers", [3, 4])
def test_every_written_step_is_whole_and_right_and_hits_are_marked(n_numbers):
    for p in problems(12 if n_numbers == 4 else 40, n_numbers=n_numbers):
        for branch in branches(p["numbers"], p["target"]):
            for line in branch.lines:
                for a, op, b, result, hit in EQUATION.findall(line):
                    assert "/" not in result and not result.startswith("-"), (branch.subquery, line)
                    assert _value(int(a), op, int(b)) == int(result), (branch.subquery, line)
                    assert not hit or int(result) == p["target"], (branch.subquery, line)
                last_steps = line.partition(": ")[2] if n_numbers == 3 else ""
                for *_, result, hit in EQUATION.findall(last_steps):
                    assert (int(result) == p["target"]) == (hit == "!"), (branch.subquery, line)


def test_returns_hold_only_verified_solutions_and_every_mark_is_returned():
    for p in problems():
        for branch in branches(p["numbers"], p["target"]):
            returned = RETURN.search(worker_text(branch)).group(1)
            entries = [] if returned == "none" else returned.split("; ")
            assert all(check_entry(e, p["numbers"], p["target"]).correct for e in entries), (p, returned)
            marks = sum(line.count("!") for line in branch.lines)
            assert len(entries) == marks, (branch.subquery, branch.lines, entries)


def test_branches_split_the_search_by_first_pair():
    for p in problems():
        pairs = [b.subquery.split(" from ")[1].split(" | ")[0] for b in branches(p["numbers"], p["target"])]
        expected = [f"{p['numbers'][i]} {p['numbers'][j]}" for i, j in itertools.combinations(range(3), 2)]
        assert pairs == expected


def test_sequential_trace_does_the_same_search_inline():
    rng, opts = random.Random(0), TopologyOptions(p_stop_early=0.0, p_shuffle=0.0)
    for p in problems(10):
        text = sequential_trace(p["numbers"], p["target"], 2, rng, opts).organizer
        for b in branches(p["numbers"], p["target"]):
            assert b.subquery + "\n" + "\n".join(b.lines) in text


def test_answers_of_both_modes_solve_the_problem():
    task, rng, opts = make_task("countdown", **OPTIONS), random.Random(1), TopologyOptions()
    for p in problems():
        for build in (asyncthink_trace, sequential_trace):
            trace = build(p["numbers"], p["target"], 2, rng, opts)
            if trace is None:  # the whole-number search finds fewer than 2 classes: the problem is skipped
                continue
            answer = trace.organizer.split("<ANSWER>")[1].split("</ANSWER>")[0]
            assert task.score(answer, p) == 1.0, (p, trace.organizer)
