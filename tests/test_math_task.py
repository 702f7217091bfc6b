r"""Math: loaders, \boxed extraction, scoring with math-verify under a hard limit, from any thread."""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time

import pytest

from asyncthink.envs import make_task, math_task
from asyncthink.envs.math_check import MathChecker
from asyncthink.envs.math_task import MathConfig, MathTask, extract, last_boxed, plain_number

LIMIT = 1.0  # seconds per check in these tests
SLOW = r"9^{9^{9^{9}}}"  # sympy would work on this for minutes


@pytest.fixture(scope="module")
def checker():
    c = MathChecker(timeout_s=LIMIT)
    assert c.verify("1", "1") is True  # start the child outside the timed tests
    yield c
    c.close()


@pytest.fixture(scope="module")
def task(checker):
    return MathTask(MathConfig(timeout_s=LIMIT), checker=checker)


# -- data


@pytest.mark.parametrize("name, rows, first_gold", [
    ("aime24", 30, "204"), ("amc23", 40, "27"), ("math500", 500, r"\left( 3, \frac{\pi}{2} \right)"),
    ("gsm8k_test", 1319, "18"), ("aime_1983_2023_train", 975, "60"),
])
def test_loaders(name, rows, first_gold):
    data = math_task.load_rows(name)
    assert len(data) == rows and len({r["id"] for r in data}) == rows
    assert data[0]["gold"] == first_gold and data[0]["question"] and data[0]["source"] == name
    assert all(r["gold"] and "####" not in r["gold"] and "," not in r["gold"] for r in data if name == "gsm8k_test")


def test_splits_and_dataset(task):
    test = task.dataset("test")
    assert list(test[0])[:3] == ["id", "question", "gold"] and len(test) == 30
    train = task.dataset("train", n=5, seed=1)
    assert len(train) == 5 and train == task.dataset("train", n=5, seed=1)
    assert [r["id"] for r in train] != [r["id"] for r in task.dataset("train", n=5, seed=2)]
    assert not {r["question"] for r in train} & {r["question"] for r in test}
    assert len(task.dataset("amc23", n=3)) == 3
    with pytest.raises(ValueError, match="'aime25'"):
        math_task.make(dataset="aime25")
    with pytest.raises(ValueError, match="'dev'"):
        task.dataset("dev")


def test_gsm8k_gold_drops_separators():
    row = math_task._gsm8k({"question": "q", "answer": "so 1,000 + 234 = 1,234\n#### 1,234", "idx": 7})
    assert row["gold"] == "1234" and row["id"] == "gsm8k-7"


def test_data_dir_option_and_env(tmp_path, monkeypatch):
    (tmp_path / "aime24.jsonl").write_text(json.dumps({"id": 1, "problem": "1+1?", "answer": "2"}) + "\n")
    assert math_task.load_rows("aime24", tmp_path)[0]["gold"] == "2"
    monkeypatch.setenv("ASYNCTHINK_MATH_DATA", str(tmp_path))
    assert [r["question"] for r in make_task("math").dataset("test")] == ["1+1?"]
    with pytest.raises(FileNotFoundError, match="amc23"):
        math_task.load_rows("amc23")


# -- extraction


@pytest.mark.parametrize("text, answer", [
    (r"so \boxed{42}", "42"),
    (r"\boxed{\frac{1}{2}}", r"\frac{1}{2}"),
    (r"first \boxed{1} then \boxed{2}", "2"),
    (r"\boxed{7} and an unfinished \boxed{8", "7"),
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"\fbox{x+1}", "x+1"),
    ("  $42$ ", "42"),
    (" 17 ", "17"),
    ("", None),
    (None, None),
])
def test_extract(text, answer):
    assert extract(text) == answer


def test_extract_is_linear():
    start = time.perf_counter()
    assert last_boxed("\\boxed{" * 200_000) is None
    assert extract("{" * 1_000_000 + r"\boxed{5}") == "5"
    assert time.perf_counter() - start < 2.0


def test_plain_number():
    assert plain_number("27.0") == 27 and plain_number("1,000") == 1000 and plain_number("$18") == 18
    assert plain_number("\\$-2.5") == -2.5
    assert plain_number("1e999999999") is None and plain_number("\\frac{1}{2}") is None
    assert plain_number("9" * 100) is None


# -- scoring and normalizing


@pytest.mark.parametrize("gold, answer, expected", [
    ("27", "27.0", 1.0), ("025", "25", 1.0), ("18", "$18", 1.0), ("18", "19", 0.0),
    (r"\frac{14}{3}", r"\dfrac{14}{3}", 1.0), (r"\frac{3}{4}", "0.75", 1.0), ("p - q", "-q + p", 1.0),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3, \frac{\pi}{2})", 1.0), (r"2\sqrt{3}", r"\sqrt{12}", 1.0),
    (r"\frac{3}{4}", r"\frac{4}{3}", 0.0), ("p - q", "q - p", 0.0),
])
def test_score(task, gold, answer, expected):
    assert task.score(answer, {"gold": gold}) == expected


def test_score_real_rows(task):
    amc = task.dataset("amc23", n=1)[0]
    assert amc["gold"] == "27" and task.score("27", amc) == 1.0
    assert task.score(task.extract_answer(r"The answer is \boxed{27}."), amc) == 1.0
    assert task.score(None, amc) == 0.0 and task.score("", amc) == 0.0
    assert task.score("27", {}) == 0.0  # a malformed row does not raise


def test_normalize(task):
    assert task.normalize("27.0") == task.normalize("27") == task.normalize(r"\frac{54}{2}") == "27"
    assert task.normalize(r"\frac{1}{2}") == task.normalize("0.5") == "1/2"
    assert task.normalize("p-q") == task.normalize("-q + p")
    assert task.normalize(None) is None and task.normalize("  ") is None


ADVERSARIAL = [
    SLOW, r"\frac{(10^{10})!}{3}", "2**99999999", "9**9**9**9", "(" * 10_000 + "1" + ")" * 10_000,
    "٣", "３", "__import__('os')", "x" * 1_000_000, r"\boxed{" * 1000,
]


@pytest.mark.parametrize("answer", ADVERSARIAL, ids=lambda a: repr(a[:20]))
def test_adversarial_answers(task, answer):
    start = time.perf_counter()
    assert task.score(answer, {"gold": "204"}) == 0.0
    task.normalize(answer)
    # a score and a normalize, each cut at LIMIT; a restarted child is not charged to the call
    assert time.perf_counter() - start < 2 * LIMIT + 1.0


def test_slow_check_is_cut_off_in_a_thread(task):
    results = []

    def work():
        start = time.perf_counter()
        results.append((task.score(SLOW, {"gold": "204"}), time.perf_counter() - start))

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=30)
    assert results and results[0][0] == 0.0 and results[0][1] < LIMIT + 1.0
    assert task.score("204", {"gold": r"\frac{408}{2}"}) == 1.0  # the checker still works afterwards


async def test_slow_check_is_cut_off_via_to_thread(task):
    start = time.perf_counter()
    answers = [SLOW, r"\frac{408}{2}"]
    scores = await asyncio.gather(*(asyncio.to_thread(task.score, a, {"gold": "204"}) for a in answers))
    assert scores == [0.0, 1.0]
    assert time.perf_counter() - start < 2 * LIMIT + 2.0  # calls share one child: one after the other


class HangingChecker(MathChecker):
    """A child that starts fine and then never answers, deaf to signals: only a kill stops it."""

    def child_command(self):
        code = ("import json, signal, sys, time; signal.signal(signal.SIGALRM, signal.SIG_IGN); "
                "print(json.dumps({'ready': True}), flush=True); sys.stdin.readline(); time.sleep(3600)")
        return [sys.executable, "-c", code]


def test_hard_limit_kills_a_stuck_child():
    checker = HangingChecker(timeout_s=0.5)
    try:
        start = time.perf_counter()
        assert checker.verify("1", "1") is None
        assert time.perf_counter() - start < 3.0
        assert checker.restarts == 1 and checker._proc is None
        assert checker.normalize("1") is None and checker.restarts == 2
    finally:
        checker.close()


def test_close_kills_the_child():
    checker = MathChecker(timeout_s=LIMIT)
    assert checker.verify("2", "2") is True
    pid = checker._proc.pid
    checker.close()
    assert checker._proc is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- issue 13: deep nesting, full stops, equivalent vote keys


def test_deeply_nested_answer_is_not_its_innermost_fraction(task):
    deep = r"\frac{" * 107 + "1}{2}" + "}{3}" * 106  # 1 / (2 * 3^106), 1,071 chars
    assert len(deep) == 1071
    assert task.score(deep, {"gold": r"\frac{1}{2}"}) == 0.0
    assert task.normalize(deep) is None
    shallow = r"\frac{\frac{1}{2}}{3}"
    assert task.score(shallow, {"gold": r"\frac{1}{6}"}) == 1.0


@pytest.mark.parametrize("text, gold", [("3.", "3"), ("42.", "42"), (r"\frac{1}{2}.", r"\frac{1}{2}")])
def test_a_full_stop_is_not_part_of_the_answer(task, text, gold):
    assert task.score(task.extract_answer(text), {"gold": gold}) == 1.0
    assert task.score(text, {"gold": gold}) == 1.0
    assert task.normalize(text) == task.normalize(gold)


@pytest.mark.parametrize("a, b", [
    ("2^{10}", "1024"), (r"10\%", "0.1"), (r"\sqrt{18}", r"3\sqrt{2}"), (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"),
    ("x^2+2x+1", "(x+1)^2"),
])
def test_equivalent_answers_share_a_vote_key(task, a, b):
    assert task.score(a, {"gold": b}) == 1.0  # math-verify calls them equal ...
    assert task.normalize(a) == task.normalize(b) is not None  # ... so they vote together


def test_different_answers_keep_different_vote_keys(task):
    keys = {task.normalize(a) for a in ["1024", "1023", r"\sqrt{2}", r"\sqrt{3}", r"\pi", "x+1", "x-1"]}
    assert len(keys) == 7
