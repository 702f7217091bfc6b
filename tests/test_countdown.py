"""Multi-solution countdown: the safe parser, canonical forms, the solver, the generator and the scorer.

The generator is cross-checked by an independent brute force written here: it
combines pairs of numbers into fully parenthesized strings and tells solutions
apart by flattening Python's own ``ast`` of each string (ast is only parsed,
never run).
"""

from __future__ import annotations

import ast
import json
import random
import time
from fractions import Fraction
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from asyncthink.envs import arith, countdown, make_task
from asyncthink.envs.countdown import CountdownConfig, canonical_str, solutions

PROBLEM = {"numbers": [1, 2, 3, 4], "target": 10, "required": 4}

# -- the parser


@pytest.mark.parametrize("text, value", [
    ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20), ("8 - 2 - 1", 5), ("8 / 2 / 2", 2), ("8 - (2 - 1)", 7),
    ("1 / 3 + 1 / 6", Fraction(1, 2)), ("((((7))))", 7), ("12/(1-3/4)", 48),
])
def test_evaluate_exact(text, value):
    assert arith.evaluate(text) == value


@pytest.mark.parametrize("text", [
    "", "1 +", "+1", "-1 + 2", "(1 + 2", "1 + 2)", "()", "1 2", "2 ** 3", "1 // 2", "3 / (2 - 2)",
    "1.5 + 1", "1e3", "0x10", "٣ + 1", "３ + 1", "__import__('os')", "1 = 1",
])
def test_rejects_malformed(text):
    with pytest.raises(arith.ArithError):
        arith.parse(text)


def test_limits_reject_early():
    with pytest.raises(arith.ArithError, match="nested"):
        arith.parse("(" * 40 + "1" + ")" * 40)
    with pytest.raises(arith.ArithError, match="longer than"):
        arith.parse("(" * 10_000 + "1" + ")" * 10_000)
    with pytest.raises(arith.ArithError, match="digits"):
        arith.parse("1" * 50)
    with pytest.raises(arith.ArithError, match="beyond"):
        arith.parse("999999999 * 999999999 * 999999999")


exprs = st.recursive(
    st.integers(1, 30).map(arith.Num),
    lambda sub: st.tuples(st.sampled_from("+-*"), sub, sub).map(lambda t: arith.combine(*t)),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(exprs)
def test_to_str_round_trips_the_tree(tree):
    assert arith.parse(arith.to_str(tree)) == tree


# -- canonical forms and the solver


@pytest.mark.parametrize("a, b", [
    ("(3 + 5) * 3", "3 * (5 + 3)"), ("8 - (2 - 1)", "8 - 2 + 1"), ("12 / (6 / 2)", "12 * 2 / 6"),
    ("(1 + 2) + (3 + 4)", "4 + (3 + (2 + 1))"), ("2 * 3 * 4", "4 * (2 * 3)"), ("6 - 2 - 1", "6 - (1 + 2)"),
])
def test_same_solution(a, b):
    assert canonical_str(a) == canonical_str(b)


@pytest.mark.parametrize("a, b", [
    ("4 * 1", "4 / 1"), ("10 - 2 * (5 - 3)", "10 + 2 * (3 - 5)"), ("2 * (3 + 4)", "2 * 3 + 4"),
])
def test_different_solutions(a, b):
    assert canonical_str(a) != canonical_str(b)


def test_known_solutions():
    assert solutions([3, 3, 5], 24) == ["(3 + 5) * 3"]
    assert solutions([1, 1, 1], 24) == []
    assert canonical_str("(7 - 8 / 8) * 4") in solutions([4, 7, 8, 8], 24)
    assert canonical_str("8 / (3 - 8 / 3)") in solutions([3, 3, 8, 8], 24)  # 24 only through a fraction
    sols = solutions([1, 2, 3, 4], 10)
    for expr in ["1 + 2 + 3 + 4", "1 * 2 * 3 + 4", "(3 - 1) * 4 + 2", "(2 * 3 + 4) * 1", "(2 * 3 + 4) / 1"]:
        assert canonical_str(expr) in sols
    assert len(set(map(canonical_str, sols))) == len(sols)  # one representative per class


def test_reachable_groups_by_value():
    reach = countdown.reachable([2, 3])
    assert reach == {Fraction(-1): ["2 - 3"], Fraction(2, 3): ["2 / 3"], Fraction(1): ["3 - 2"],
                     Fraction(3, 2): ["3 / 2"], Fraction(5): ["2 + 3"], Fraction(6): ["2 * 3"]}
    assert countdown.reachable([5]) == {Fraction(5): ["5"]}
    assert countdown.reachable([3, 3, 5])[Fraction(24)] == solutions([3, 3, 5], 24)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=3))
def test_representatives_are_fixed_points(numbers):
    # every rendered class parses back to itself, with its value and the given numbers (zeros included)
    for v, exprs in countdown.reachable(numbers).items():
        for e in exprs:
            tree = arith.parse(e)
            assert tree.value == v and sorted(arith.leaves(tree)) == sorted(numbers)
            assert canonical_str(e) == e


def ast_canon(node):
    """Flatten +/- and */÷ chains of Python's ast of the string; sort with repr."""
    if isinstance(node, ast.Constant):
        return ("n", node.value)
    kind = "S" if isinstance(node.op, ast.Add | ast.Sub) else "P"
    items = []

    def collect(n, positive):
        if isinstance(n, ast.BinOp) and ("S" if isinstance(n.op, ast.Add | ast.Sub) else "P") == kind:
            collect(n.left, positive)
            collect(n.right, positive if isinstance(n.op, ast.Add | ast.Mult) else not positive)
        else:
            items.append((positive, ast_canon(n)))

    collect(node, True)
    return (kind, tuple(sorted(items, key=repr)))


def brute_force(numbers, target):
    """Distinct solutions by exhaustive pair combination, independent of envs.countdown."""
    found = set()

    def rec(items):
        if len(items) == 1:
            if items[0][0] == target:
                found.add(ast_canon(ast.parse(items[0][1], mode="eval").body))
            return
        for i, j in combinations(range(len(items)), 2):
            (a, sa), (b, sb) = items[i], items[j]
            rest = [x for k, x in enumerate(items) if k not in (i, j)]
            options = [(a + b, f"({sa}+{sb})"), (a - b, f"({sa}-{sb})"), (b - a, f"({sb}-{sa})"),
                       (a * b, f"({sa}*{sb})")]
            options += [(a / b, f"({sa}/{sb})")] if b else []
            options += [(b / a, f"({sb}/{sa})")] if a else []
            for opt in options:
                rec(rest + [opt])

    rec([(Fraction(x), str(x)) for x in numbers])
    return found


def test_brute_force_agrees_on_a_known_case():
    assert len(brute_force([3, 3, 5], 24)) == 1
    assert len(brute_force([1, 2, 3, 4], 10)) == len(solutions([1, 2, 3, 4], 10))


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 10**9), st.sampled_from(["train", "test"]), st.integers(2, 5))
def test_generated_problems_have_enough_solutions(seed, split, required):
    cfg = CountdownConfig(required=required)
    p = countdown.generate(cfg, random.Random(seed), split)
    assert len(p["numbers"]) == 4 and all(1 <= x <= 20 for x in p["numbers"]) and 10 <= p["target"] <= 100
    independent = brute_force(p["numbers"], p["target"])
    assert len(independent) >= required
    assert len(independent) == len(solutions(p["numbers"], p["target"]))  # same definition, same count
    gold = json.loads(p["gold"])
    assert len(gold) == required
    task = countdown.make(required=required)
    assert task.score("\n".join(gold), p) == 1.0


# -- the task


@pytest.fixture(scope="module")
def task():
    return countdown.make()


def test_dataset_fields_determinism_and_disjoint_splits(task):
    test = task.dataset("test", n=25, seed=3)
    assert all(list(r)[:3] == ["id", "question", "gold"] for r in test)
    assert all({"numbers", "target", "required"} <= set(r) for r in test)
    assert test == task.dataset("test", n=25, seed=3)
    row = test[0]
    assert str(row["target"]) in row["question"] and all(str(x) in row["question"] for x in row["numbers"])
    assert len({r["id"] for r in test}) == 25
    train = task.dataset("train", n=25, seed=3)
    assert not {tuple(sorted(r["numbers"])) for r in test} & {tuple(sorted(r["numbers"])) for r in train}
    with pytest.raises(ValueError, match="'dev'"):
        task.dataset("dev")


def test_registry_and_options():
    t = make_task("countdown", required=2)
    assert "2 distinct" in t.instruction() and "<ANSWER>" in t.instruction()
    with pytest.raises(ValueError, match="7"):
        countdown.make(n_numbers=7)
    with pytest.raises(ValueError, match="-1"):
        countdown.make(required=-1)


def test_score_and_details(task):
    four = "1 + 2 + 3 + 4\n1 * 2 * 3 + 4 = 10\n(3 - 1) * 4 + 2\n4 * 3 - 2 * 1"
    assert task.score(four, PROBLEM) == 1.0
    assert task.details(four, PROBLEM) == {"at_least_1": 1.0, "at_least_2": 1.0, "at_least_3": 1.0,
                                           "at_least_4": 1.0, "distinct_correct": 4.0}
    assert task.score(four.replace("\n", "; "), PROBLEM) == 1.0
    numbered = "1. 1 + 2 + 3 + 4\n2) 1 * 2 * 3 + 4\n- (3 - 1) * 4 + 2\n* 4 * 3 - 2 * 1"
    assert task.score(numbered, PROBLEM) == 1.0
    # commutative/associative variants count once
    assert task.score("1 + 2 + 3 + 4\n4 + 3 + 2 + 1\n(1 + 2) + (3 + 4)\n1 + (2 + (3 + 4))", PROBLEM) == 0.25
    # a wrong claim, a wrong value, a missing number: only the first entry counts
    wrong = "1 + 2 + 3 + 4\n1 * 2 * 3 + 4 = 11\n1 + 2 * 3 + 4\n2 * 3 + 4"
    assert task.score(wrong, PROBLEM) == 0.25
    d = task.details(wrong, PROBLEM)
    assert d["at_least_1"] == 1.0 and d["at_least_2"] == 0.0
    # only the first `required` entries are checked: listing guesses does not pay
    assert task.score("1 + 1\n2 + 2\n3 + 3\n4 + 4\n" + four, PROBLEM) == 0.0
    assert task.score(None, PROBLEM) == 0.0 and task.score("", PROBLEM) == 0.0
    assert task.score(four, {"numbers": "junk"}) == 0.0  # a malformed problem row does not raise


def test_extract_and_normalize(task):
    assert task.extract_answer(None) is None and task.extract_answer("  \n") is None
    assert task.extract_answer("  1 + 2 \n") == "1 + 2"
    a = task.normalize("1 + 2 + 3 + 4\n2 * 3 + 4 * 1")
    assert a == task.normalize("4 * 1 + 3 * 2 = 10; 4 + 3 + 2 + 1")
    assert a != task.normalize("1 + 2 + 3 + 4")
    assert task.normalize("no expressions here") is None and task.normalize(None) is None


ADVERSARIAL = [
    "2**99999999", "9**9**9**9", "(" * 10_000 + "1" + ")" * 10_000, "٣ * 8", "３ * ８", "(3 + 5) * ３",
    "3 * 8", "(3 + 5) * 3 + 3 - 3", "__import__('os').system('true')", "x" * 1_000_000,
    "1" * 1_000_000, "(3 + 5) * 3;" * 100_000, "99999999999999999999 / 3", "3 / (5 - 5) * 3 + 24",
    "\x00", "(3 + 5) * 3 = 24 = 24", "(3 + 5) * 3 = 2**99999",
]


@pytest.mark.parametrize("answer", ADVERSARIAL, ids=lambda a: repr(a[:20]))
def test_adversarial_answers_score_zero_quickly(task, answer):
    problem = {"numbers": [3, 3, 5], "target": 24, "required": 1}
    start = time.perf_counter()
    assert task.score(answer, problem) == 0.0
    task.details(answer, problem)
    task.normalize(answer)
    assert time.perf_counter() - start < 2.0


def test_a_row_asking_for_more_than_the_task_default_has_all_its_entries_checked():
    """A task made with required=2 scoring a row that asks for 4 reads 4 entries, so 4 solutions score 1."""
    task = countdown.make(required=2)
    four = "1 + 2 + 3 + 4\n1 * 2 * 3 + 4\n(3 - 1) * 4 + 2\n4 * 3 - 2 * 1"
    assert task.score(four, PROBLEM) == 1.0
    assert task.details(four, PROBLEM)["distinct_correct"] == 4.0
    assert countdown.make(required=2, max_expressions=2).score(four, PROBLEM) == 0.5  # an explicit limit holds
