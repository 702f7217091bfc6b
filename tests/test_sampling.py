"""The envs' shared split and draws: the split keeps the shipped models' assignments, distinct draws keep first
occurrences, and generated rows carry their cluster.

The pinned assignments were computed with each task's own split code before the rule moved to
``envs/sampling.py``; the shipped models' held-out sets depend on them."""

from __future__ import annotations

import hashlib
import itertools
import random
from collections import Counter

import pytest

from asyncthink.envs import make_task, sampling
from asyncthink.envs.countdown import number_split
from asyncthink.envs.math_gen import content_key, problem_split
from asyncthink.envs.sudoku import puzzle_split

DEMO_COUNTDOWN = {"n_numbers": 3, "min_number": 1, "max_number": 9, "min_target": 5, "max_target": 40,
                  "required": 2, "test_fraction": 0.3}
MATH_GEN_TINY = {"min_groups": 2, "max_groups": 2, "min_factor": 2, "max_factor": 5, "p_give_away": 0.5,
                 "test_fraction": 0.2}


def _digest(labels: list[str]) -> str:
    return hashlib.sha256("".join("T" if s == "test" else "." for s in labels).encode()).hexdigest()[:16]


def test_split_assignments_are_those_of_the_shipped_models():
    # computed with each task's own split code before the rule moved to envs/sampling.py
    assert [number_split(n, tf) for n, tf in [([1, 2, 3], 0.3), ([3, 2, 1], 0.3), ([4, 4, 9], 0.3),
                                              ([5, 7, 8], 0.3), ([2, 6, 9], 0.3), ([3, 8, 12, 20], 0.1),
                                              ([9, 9, 9], 0.5)]] == [
        "train", "train", "train", "test", "test", "train", "test"]
    assert [puzzle_split(p, 0.5) for p in ["1..4.4.........1", "..3.4..1.2.....3", "12344321........",
                                           "................"]] == ["train", "train", "test", "test"]
    assert [problem_split(g, a, 0.2) for g, a in [([(2, 3), (4, 5)], 0), ([(4, 5), (2, 3)], 0), ([(2, 3), (4, 5)], 3),
                                                  ([(5, 5), (5, 5)], 9), ([(3, 4), (2, 5)], 0)]] == [
        "test", "test", "train", "test", "train"]


def test_split_over_whole_ranges_is_unchanged():
    sets = list(itertools.combinations_with_replacement(range(1, 14), 3))  # the tiny organizer's number range
    countdown = [number_split(list(n), 0.3) for n in sets]
    assert (countdown.count("test"), _digest(countdown)) == (123, "6aac672e93f3e4b3")
    pairs = [(a, b) for a in range(2, 6) for b in range(2, 6)]  # the tiny math organizer's groups
    math_gen = [problem_split(list(g), give, 0.2) for g in itertools.combinations_with_replacement(pairs, 2)
                for give in range(10)]
    assert (math_gen.count("test"), _digest(math_gen)) == (267, "7c6e75b096cffb5c")
    rng = random.Random(0)
    puzzles = ["".join(rng.choice("1234.") for _ in range(16)) for _ in range(500)]
    sudoku = [puzzle_split(p, 0.5) for p in puzzles]
    assert (sudoku.count("test"), _digest(sudoku)) == (261, "ade2a4cebeeb751d")


def test_content_key_ignores_order_and_container_form():
    assert content_key([(4, 5), (2, 3)], 6) == content_key([[2, 3], [4, 5]], 6) == "[(2, 3), (4, 5)]|6"


def test_draw_distinct_keeps_first_occurrences_in_order():
    draws = iter([3, None, 1, 3, 2, 1, 5])
    assert sampling.draw_distinct(lambda: next(draws), lambda x: x, 3, "numbers") == [3, 1, 2]
    assert sampling.draw_distinct(lambda: 1, lambda x: x, 0, "numbers") == []


def test_draw_distinct_gives_up_quoting_what_it_drew():
    calls = Counter()

    def draw() -> int:
        calls["n"] += 1
        return calls["n"] % 2

    with pytest.raises(ValueError, match=r"only 2 distinct parities found, 3 asked"):
        sampling.draw_distinct(draw, lambda x: x, 3, "parities")
    assert calls["n"] == sampling.MAX_DRAWS_PER_PROBLEM * 3 + sampling.MAX_DRAWS_EXTRA


def test_countdown_clusters_are_number_sets():
    task = make_task("countdown", **DEMO_COUNTDOWN)
    rows = task.dataset("test", 62, 0)  # the demo's held-out problems
    assert all(r["cluster"] == task.cluster(r) == ",".join(map(str, sorted(r["numbers"]))) for r in rows)
    assert len({r["cluster"] for r in rows}) == 36  # 62 problems on 36 number sets
    assert len({(r["cluster"], r["target"]) for r in rows}) == 62


def test_sudoku_and_math_problems_are_their_own_clusters():
    sudoku = make_task("sudoku", size=4)
    rows = sudoku.dataset("test", 5, 0)
    assert [sudoku.cluster(r) for r in rows] == [r["id"] for r in rows] and "cluster" not in rows[0]
    assert make_task("math").cluster({"id": "aime24-3", "question": "q", "gold": "1"}) == "aime24-3"


def test_math_gen_draws_each_content_once_and_clusters_by_it():
    task = make_task("math_gen", **MATH_GEN_TINY)
    rows = task.dataset("test", 200, 0)
    keys = [content_key(r["groups"], r["give_away"]) for r in rows]
    assert [r["cluster"] for r in rows] == [task.cluster(r) for r in rows] == keys and len(set(keys)) == 200
    wording = make_task("math_gen", **MATH_GEN_TINY, distinct="wording").dataset("test", 200, 0)
    assert len({r["question"] for r in wording}) == 200 and len({r["cluster"] for r in wording}) == 108
    # the content draw keeps the first wording of every content the wording draw had, in the same order
    firsts = list(dict.fromkeys(r["cluster"] for r in wording))
    assert [r["cluster"] for r in rows if r["cluster"] in set(firsts)] == firsts


def test_math_gen_says_when_a_split_has_too_few_contents():
    with pytest.raises(ValueError, match=r"only 266 distinct test problems \(by content\)"):
        make_task("math_gen", **MATH_GEN_TINY).dataset("test", 400, 0)
    with pytest.raises(ValueError, match="distinct must be one of"):
        make_task("math_gen", distinct="words")
