"""Sudoku: known puzzles, uniqueness of generated ones (independent counter), tolerant extraction, scoring."""

from __future__ import annotations

import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncthink.envs import make_task, sudoku
from asyncthink.envs.sudoku import count_solutions, is_valid_solution, rows_text, solve

SMALL = "1..." "..1." ".3.." "...4"
SMALL_SOLUTION = "1243" "3412" "4321" "2134"
WIKI = ("53..7...." "6..195..." ".98....6." "8...6...3" "4..8.3..1" "7...2...6" ".6....28." "...419..5"
        "....8..79")
WIKI_SOLUTION = ("534678912" "672195348" "198342567" "859761423" "426853791" "713924856" "961537284"
                 "287419635" "345286179")


def independent_count(puzzle: str, limit: int = 2) -> int:
    """Solutions up to ``limit`` by plain backtracking over string grids (not envs.sudoku's solver)."""
    size = round(len(puzzle) ** 0.5)
    bh = 2 if size == 4 else 3
    cells = list(puzzle)

    def allowed(i):
        r, c = divmod(i, size)
        br, bc = r - r % bh, c - c % bh
        seen = {cells[r * size + k] for k in range(size)} | {cells[k * size + c] for k in range(size)}
        seen |= {cells[(br + a) * size + bc + b] for a in range(bh) for b in range(bh)}
        return [d for d in "123456789"[:size] if d not in seen]

    def count():
        blanks = [i for i, ch in enumerate(cells) if ch == "."]
        if not blanks:
            return 1
        i = min(blanks, key=lambda k: len(allowed(k)))  # most constrained first, or 9x9 takes ages
        total = 0
        for d in allowed(i):
            cells[i] = d
            total += count()
            cells[i] = "."
            if total >= limit:
                break
        return total

    return count()


def test_known_puzzles():
    assert independent_count(SMALL) == 1 and count_solutions(SMALL) == 1
    assert solve(SMALL) == SMALL_SOLUTION
    assert independent_count(WIKI) == 1 and count_solutions(WIKI) == 1
    assert solve(WIKI) == WIKI_SOLUTION
    assert count_solutions("." * 16) == 2 and count_solutions("11" + "." * 14) == 0
    assert is_valid_solution(WIKI_SOLUTION, WIKI)


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10**9), st.integers(4, 10))
def test_generated_4x4_unique(seed, clues):
    puzzle, solution = sudoku.generate(4, clues, random.Random(seed))
    assert sum(ch != "." for ch in puzzle) == clues
    assert independent_count(puzzle) == 1
    assert is_valid_solution(solution, puzzle)


@settings(max_examples=3, deadline=None)
@given(st.integers(0, 10**9))
def test_generated_9x9_unique(seed):
    puzzle, solution = sudoku.generate(9, 30, random.Random(seed))
    assert sum(ch != "." for ch in puzzle) == 30
    assert independent_count(puzzle) == 1
    assert is_valid_solution(solution, puzzle)


def test_dataset_fields_determinism_and_splits():
    task = sudoku.make(size=4, clues=6)
    test = task.dataset("test", n=20, seed=1)
    assert all(list(r) == ["id", "question", "gold", "puzzle", "size", "clues"] for r in test)
    assert test == task.dataset("test", n=20, seed=1)
    row = test[0]
    assert rows_text(row["puzzle"]) in row["question"] and row["size"] == 4 and row["clues"] == 6
    assert is_valid_solution(row["gold"], row["puzzle"])
    train = task.dataset("train", n=20, seed=1)
    assert not {r["puzzle"] for r in test} & {r["puzzle"] for r in train}
    nine = sudoku.make(size=9, clues=32).dataset("test", n=2)
    assert all(count_solutions(r["puzzle"]) == 1 for r in nine)
    with pytest.raises(ValueError, match="'valid'"):
        task.dataset("valid")


def test_options_validated():
    with pytest.raises(ValueError, match="6"):
        sudoku.make(size=6)
    with pytest.raises(ValueError, match="3"):
        sudoku.make(size=4, clues=3)
    t = make_task("sudoku", size=9)
    assert "9x9" in t.instruction() and "<ANSWER>" in t.instruction() and t.cfg.n_clues == 30


@pytest.fixture(scope="module")
def task():
    return sudoku.make(size=4)


PROBLEM = {"puzzle": SMALL, "gold": SMALL_SOLUTION, "size": 4, "clues": 4}


@pytest.mark.parametrize("answer", [
    "1243\n3412\n4321\n2134",
    "1 2 4 3\n3 4 1 2\n4 3 2 1\n2 1 3 4",
    "12|43\n34|12\n--+--\n43|21\n21|34",
    "[1, 2, 4, 3]\n[3, 4, 1, 2]\n[4, 3, 2, 1]\n[2, 1, 3, 4]",
    "Grid:\n1243\n3412\n4321\n2134\n",
    "1243341243212134",
])
def test_tolerant_extraction(task, answer):
    assert task.extract_answer(answer) == "1243\n3412\n4321\n2134"
    assert task.score(answer, PROBLEM) == 1.0
    assert task.normalize(answer) == SMALL_SOLUTION


def test_wrong_grids_score_zero(task):
    assert task.score("2143\n3412\n4321\n1234", PROBLEM) == 0.0  # breaks a column and a given
    pattern = sudoku.pattern_grid(4)  # a valid grid that does not keep the givens
    assert is_valid_solution(pattern, "." * 16) and task.score(pattern, PROBLEM) == 0.0
    assert task.score("1243\n3412\n4321", PROBLEM) == 0.0
    assert task.score(None, PROBLEM) == 0.0 and task.extract_answer(None) is None


def test_any_valid_completion_scores(task):
    # the verifier checks the rules and the givens, not equality with the stored gold
    loose = {"puzzle": "1" + "." * 15, "gold": "1234341221434321", "size": 4, "clues": 1}
    assert task.score(rows_text(sudoku.pattern_grid(4)), loose) == 1.0


@pytest.mark.parametrize("answer", [
    "١٢٤٣\n٣٤١٢\n٤٣٢١\n٢١٣٤", "１２４３\n３４１２\n４３２１\n２１３４", "0000\n0000\n0000\n0000",
    "5243\n3412\n4321\n2134", "x" * 1_000_000, "1243\n" * 250_000, "__import__('os')", "",
])
def test_adversarial_answers(task, answer):
    start = time.perf_counter()
    assert task.score(answer, PROBLEM) == 0.0
    task.normalize(answer)
    assert time.perf_counter() - start < 2.0
    assert task.score("1243341243212134", {"puzzle": "junk"}) == 0.0
