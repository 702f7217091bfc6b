"""Math problems (AIME, AMC, MATH-500, GSM8K) with answers checked by math-verify.

The problems are JSON Lines files kept offline (see the README of the data
directory). The directory is the ``data_dir`` option, else the
``ASYNCTHINK_MATH_DATA`` environment variable, else ``data/math`` inside this
package (the files ship with it). Each file has a loader that maps its rows to ``id``,
``question``, ``gold`` and ``source``, keeping the file's other fields
(solution, url, difficulty, ...) as metadata. Gold answers are the file's
``answer``; AMC's floats become plain numbers (27.0 -> "27") and GSM8K's gold
is the number after ``####`` without thousands separators.

The extracted answer is the content of the last brace-balanced ``\\boxed{...}``
in the answer text, else the whole text, stripped. Scoring is 1/0: when gold
and answer are both plain decimal numbers they are compared exactly as
fractions, in-process ("025" = "25" = "25.0"); anything else goes to
math-verify in a child process under a hard time limit (``envs.math_check``),
and a check that runs out of time scores 0. ``normalize`` gives a vote key:
the number as ``"27"`` or ``"3/4"``, else math-verify's sympy normal form
("p - q", "{1, 2}"), else the text with its whitespace collapsed; it is
bounded by the same limit.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from asyncthink.config_io import require
from asyncthink.envs.math_check import MathChecker, get_checker, number_key
from asyncthink.task import Problem, Task

log = logging.getLogger(__name__)

MAX_ANSWER_CHARS = 2_000  # a longer final answer is not an answer: score 0 without parsing
MAX_SCAN_CHARS = 50_000  # \boxed{...} is searched in this tail of the answer text
MAX_BRACE_DEPTH = 12  # deeper nesting is not a final answer; math-verify's parser misreads it (false positives)
DEFAULT_DATA_DIR = Path(__file__).resolve().parent / "data" / "math"


# -- loaders: raw row -> task row


def _aime24(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"aime24-{r['id']}", "question": r["problem"], "gold": str(r["answer"]),
            "solution": r.get("solution", ""), "url": r.get("url", "")}


def _amc23(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"amc23-{r['id']}", "question": r["problem"], "gold": _plain(r["answer"]),
            "url": r.get("url", "")}


def _math500(r: dict[str, Any]) -> dict[str, Any]:
    uid = r["unique_id"]  # "test/precalculus/807.json"
    return {"id": f"math500-{uid.removesuffix('.json')}", "question": r["problem"], "gold": str(r["answer"]),
            "subject": uid.split("/")[1] if uid.count("/") >= 2 else "", "difficulty": float(r["difficulty"])}


def _gsm8k(r: dict[str, Any]) -> dict[str, Any]:
    gold = r["answer"].rsplit("####", 1)[-1].strip().replace(",", "")
    return {"id": f"gsm8k-{r['idx']}", "question": r["question"], "gold": gold, "solution": r["answer"]}


def _aime_train(r: dict[str, Any]) -> dict[str, Any]:
    return {"id": f"aime-{r['year']}-{r['aime_number']}-{r['problem_number']}", "question": r["problem"],
            "gold": str(r["answer"]), "solution": r.get("solution", ""), "year": int(r["year"]),
            "difficulty": float(r.get("difficulty") or 0.0)}


def _plain(x: Any) -> str:
    """27.0 -> "27"; other values as text."""
    if isinstance(x, float) and x.is_integer():
        return str(int(x))
    return str(x)


SOURCES: dict[str, tuple[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "aime24": ("aime24.jsonl", _aime24),
    "amc23": ("amc23.jsonl", _amc23),
    "math500": ("math500.jsonl", _math500),
    "gsm8k_test": ("gsm8k_test.jsonl", _gsm8k),
    "aime_1983_2023_train": ("aime_1983_2023_train.jsonl", _aime_train),
}


def data_dir(option: str | os.PathLike | None = None) -> Path:
    return Path(option or os.environ.get("ASYNCTHINK_MATH_DATA") or DEFAULT_DATA_DIR)


def load_rows(name: str, directory: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """The rows of one source, in file order."""
    if name not in SOURCES:
        raise ValueError(f"unknown math dataset {name!r}; known: {sorted(SOURCES)}")
    file, to_row = SOURCES[name]
    path = data_dir(directory) / file
    if not path.is_file():
        raise FileNotFoundError(f"math dataset {name!r} not found at {path} (set data_dir or ASYNCTHINK_MATH_DATA)")
    with open(path, encoding="utf-8") as f:
        return [{**to_row(json.loads(line)), "source": name} for line in f if line.strip()]


# -- answers


_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")


def plain_number(text: str) -> Fraction | None:
    """The value of a plain decimal ("1,000", "-2.50", "$18"); None for anything else."""
    t = text.strip().removeprefix("\\$").strip("$ ")
    if len(t) > 60 or not _NUMBER.fullmatch(t):  # no exponents: "1e999999999" is not plain
        return None
    return Fraction(t.replace(",", ""))


_BRACES = re.compile(r"\\[{}]|\\(?:boxed|fbox)\s*\{|[{}]")


def last_boxed(text: str) -> str | None:
    r"""The content of the last completed ``\boxed{...}`` (or ``\fbox``), braces balanced; one pass."""
    text = text[-MAX_SCAN_CHARS:]
    found, stack = None, []  # stack: (content start, is a \boxed opener)
    for m in _BRACES.finditer(text):
        tok = m.group()
        if tok in ("\\{", "\\}"):
            continue  # an escaped, literal brace: \{1, 2\}
        if tok == "}":
            if stack:
                start, boxed = stack.pop()
                if boxed:
                    found = text[start:m.start()]
        else:
            stack.append((m.end(), tok != "{"))
    return found


def brace_depth(text: str) -> int:
    """The deepest nesting of unescaped ``{`` in ``text``."""
    depth = deepest = 0
    for m in _BRACES.finditer(text):
        tok = m.group()
        if tok in ("\\{", "\\}"):
            continue
        depth = max(0, depth - 1) if tok == "}" else depth + 1
        deepest = max(deepest, depth)
    return deepest


def extract(answer_text: str | None) -> str | None:
    if answer_text is None:
        return None
    boxed = last_boxed(answer_text)
    text = (answer_text if boxed is None else boxed).strip()
    if text.startswith("$") and text.endswith("$"):
        text = text.strip("$").strip()
    return strip_full_stop(text) or None


def strip_full_stop(text: str) -> str:
    """A sentence's full stop is not part of the answer ("42." is 42); ``\\.`` and ``...`` are kept."""
    text = text.strip()
    if text.endswith(".") and not text.endswith(("\\.", "..")):
        return text[:-1].rstrip()
    return text


def acceptable(answer: str | None) -> bool:
    """Worth checking at all: non-empty, not too long, not nested deeper than ``MAX_BRACE_DEPTH``."""
    return bool(answer and answer.strip()) and len(answer) <= MAX_ANSWER_CHARS and (
        brace_depth(answer) <= MAX_BRACE_DEPTH)


# -- the task


@dataclass(frozen=True)
class MathConfig:
    """Options of ``make("math", ...)``."""

    dataset: str | dict[str, Any] = "aime24"
    """The test split's source: aime24, amc23, math500, gsm8k_test or aime_1983_2023_train, or your own
    Hugging Face dataset as a mapping of ``envs.math_data.MathDataSpec`` fields (path, question_field,
    answer_field, split, extractor)."""
    train_dataset: str | dict[str, Any] = "aime_1983_2023_train"
    """The train split's source (same forms)."""
    data_dir: str | None = None
    """Directory of the JSON Lines files; None: $ASYNCTHINK_MATH_DATA, else the package's data/math."""
    timeout_s: float = 5.0
    """Hard limit on each math-verify call (score or normalize), seconds."""

    def __post_init__(self):
        from asyncthink.envs.math_data import check_source

        for name in (self.dataset, self.train_dataset):
            check_source(name)
        require(
            (self.timeout_s > 0, f"timeout_s must be > 0, got {self.timeout_s!r}"),
        )


class MathTask(Task):
    name = "math"

    def __init__(self, cfg: MathConfig, checker: MathChecker | None = None):
        self.cfg = cfg
        self.checker = checker or get_checker(cfg.timeout_s)

    def dataset(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        """``split`` is "test" (``cfg.dataset``, file order), "train" (``cfg.train_dataset``,
        shuffled by ``seed``) or a source name (file order); ``n`` keeps the first n."""
        if split not in ("train", "test") and split not in SOURCES:
            raise ValueError(f"math splits are 'train', 'test' or one of {sorted(SOURCES)}, got {split!r}")
        name = {"train": self.cfg.train_dataset, "test": self.cfg.dataset}.get(split, split)
        from asyncthink.envs.math_data import load_source

        rows = load_source(name, self.cfg.data_dir)
        if split == "train":
            random.Random(f"math-{name}-{seed}").shuffle(rows)
        return rows if n is None else rows[:n]

    def instruction(self) -> str:
        return (
            "Solve the problem. Put only the final answer inside <ANSWER>...</ANSWER>: a number or a "
            "LaTeX expression (such as \\frac{3}{4} or 2\\sqrt{3}), without words or units; \\boxed{...} "
            "inside the tags is accepted. Example: <ANSWER>42</ANSWER>"
        )

    def worker_instruction(self) -> str:
        return ("Work out the sub-problem you are given. Return its result (a value, or a short fact the "
                "organizer can use) inside <RETURN>...</RETURN>.")

    def extract_answer(self, answer_text: str | None) -> str | None:
        return extract(answer_text)

    def score(self, answer: str | None, problem: Problem) -> float:
        try:
            answer = strip_full_stop(answer or "")
            if not acceptable(answer):
                return 0.0
            gold = str(problem["gold"])
            a, g = plain_number(answer), plain_number(gold)
            if a is not None and g is not None:
                return float(a == g)
            return float(self.checker.verify(gold, answer) is True)
        except Exception:  # never crash a batch; the checker itself does not raise
            log.exception("math score failed for problem %r", problem.get("id"))
            return 0.0

    def normalize(self, answer: str | None) -> str | None:
        answer = strip_full_stop(answer or "")
        if not acceptable(answer):
            return None
        number = plain_number(answer)
        if number is not None:
            return number_key(number)
        return self.checker.normalize(answer) or " ".join(answer.split())


def make(**options) -> MathTask:
    """The math task; options are the fields of ``MathConfig``."""
    return MathTask(MathConfig(**options))
