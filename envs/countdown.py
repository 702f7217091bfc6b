"""Multi-solution countdown: reach a target with the given numbers, in ``required`` distinct ways.

A problem gives ``n_numbers`` integers and a target. A solution is an
expression over ``+ - * /`` and parentheses that uses every given number
exactly once (as a multiset: a number given twice is used twice) and equals
the target in exact rational arithmetic (fractions may appear midway).

**Distinct solutions.** Two expressions are the same solution iff their
canonical forms are equal. The canonical form of a number is the number. For
an operator node, ``+``/``-`` chains are flattened into one *sum*: the multiset
of its signed terms, where ``a - b`` adds ``b``'s terms with their signs
flipped; ``*``/``/`` chains are flattened into one *product*: the multiset of
its factors with exponent +1 or -1, where ``a / b`` adds ``b``'s factors with
their exponents flipped. Terms and factors are themselves canonical forms
(a product inside a sum, a sum inside a product), and each multiset is kept
sorted. So ``(3+5)*3``, ``3*(5+3)`` and ``3*(3+5)`` are one solution, so are
``8-(2-1)`` and ``8-2+1`` (associativity across ``-``), and ``a/(b/c)`` and
``a*c/b``. Nothing beyond commutativity and associativity is applied: ``x*1``
and ``x/1`` differ, and so do ``x-y*(a-b)`` and ``x+y*(b-a)`` (no sign pulling,
no distribution).

A sum always holds at least one positive term and a product at least one
factor with exponent +1 (the leftmost leaf is never flipped), so every
canonical form renders back to an expression without unary minus:
``render(canonical(tree))`` is the representative string the solver returns.

**Generation.** Numbers are drawn uniformly (with repetition) from
``[min_number, max_number]``; the solver enumerates every canonical class over
them; the target is drawn uniformly among the integers in
``[min_target, max_target]`` that at least ``required`` classes reach, so each
problem has at least ``required`` distinct solutions. A multiset of numbers
belongs to the test split iff its hash falls in the first ``test_fraction`` of
buckets (``sampling.hash_split``), so train and test never share a problem,
nor even a set of numbers, whatever the seeds. Problems on one number set are
related (much of their search is shared), so a problem's ``cluster`` is its
number multiset and confidence intervals resample number sets.

**Answer form.** Expressions separated by newlines or ``;``, each optionally
followed by ``= target`` and optionally numbered (``1.``, ``2)``, ``-``). Only
the first ``max_expressions`` entries (default: the problem row's ``required``) are checked: an
answer cannot win by listing guesses. Score ``min(distinct correct,
required) / required``.
"""

from __future__ import annotations

import functools
import json
import random
import re
from dataclasses import dataclass
from fractions import Fraction

from asyncthink.config_io import require
from asyncthink.envs import arith, sampling
from asyncthink.task import Problem, Task

Canon = tuple  # ("n", int) | ("S", ((sign, Canon), ...)) | ("P", ((sign, Canon), ...))

MAX_ANSWER_CHARS = 20_000  # the whole answer text; longer answers score 0 unread
EXPR_LIMITS = arith.Limits(max_chars=400, max_tokens=120, max_depth=32, max_digits=9, max_abs=10**18)


# -- canonical forms


def canonical(tree: arith.Expr) -> Canon:
    """The canonical form of an ``arith`` tree (see the module docstring); hashable and sortable."""
    if isinstance(tree, arith.Num):
        return ("n", tree.value)
    return combine_canonical(tree.op, canonical(tree.left), canonical(tree.right))


def combine_canonical(op: str, a: Canon, b: Canon) -> Canon:
    """The canonical form of ``a op b`` from the forms of ``a`` and ``b``."""
    kind = "S" if op in "+-" else "P"
    right = _items(b, kind)
    if op in "-/":
        right = tuple((_FLIP[sign], c) for sign, c in right)
    return (kind, tuple(sorted(_items(a, kind) + right)))


_FLIP = {"+": "-", "-": "+", "*": "/", "/": "*"}


def _items(c: Canon, kind: str) -> tuple[tuple[str, Canon], ...]:
    """``c`` as signed items of a sum/product: its own items if it is one, else itself."""
    return c[1] if c[0] == kind else (("+" if kind == "S" else "*", c),)


def render(c: Canon) -> str:
    """An expression string of a canonical form: positive items first, minimal parentheses."""
    kind, body = c
    if kind == "n":
        return str(body)
    parts = []
    for k, (sign, item) in enumerate(body):
        text = render(item)
        if kind == "P" and item[0] == "S":
            text = f"({text})"
        parts.append(text if k == 0 else f"{sign} {text}")
    return " ".join(parts)


def canonical_str(expr: str) -> str:
    """The representative string of an expression's class; raises ``arith.ArithError``."""
    return render(canonical(arith.parse(expr, EXPR_LIMITS)))


# -- solver


def reachable(numbers: list[int] | tuple[int, ...]) -> dict[Fraction, list[str]]:
    """Every value reachable using each of ``numbers`` exactly once, with one representative
    expression per distinct canonical class (values ascending, expressions sorted)."""
    groups = _by_value(tuple(sorted(numbers)))
    return {v: sorted(map(render, groups[v])) for v in sorted(groups)}


def solutions(numbers: list[int] | tuple[int, ...], target: int | Fraction) -> list[str]:
    """One expression per distinct solution class, sorted."""
    t = Fraction(target)
    keep = (t.numerator, t.numerator) if t.denominator == 1 else None
    return sorted(map(render, _by_value(tuple(sorted(numbers)), keep).get(t, [])))


@functools.lru_cache(maxsize=64)
def _by_value(numbers: tuple[int, ...], keep: tuple[int, int] | None = None) -> dict[Fraction, list[Canon]]:
    groups: dict[Fraction, list[Canon]] = {}
    for c, v in _classes(numbers, keep).items():
        groups.setdefault(v, []).append(c)
    return groups


def _classes(numbers: tuple[int, ...], keep: tuple[int, int] | None = None) -> dict[Canon, Fraction]:
    """Canonical class -> value over all expressions using every number once; with ``keep =
    (lo, hi)``, only the classes whose value is an integer in ``lo..hi``.

    Dynamic programme over subsets (bitmasks of positions): the classes of a
    subset combine the classes of each split into two non-empty halves.
    """
    n = len(numbers)
    full = (1 << n) - 1
    table: dict[int, dict[Canon, Fraction]] = {1 << i: {("n", x): Fraction(x)} for i, x in enumerate(numbers)}
    for mask in sorted(range(1, full + 1), key=lambda m: m.bit_count()):
        if mask.bit_count() > 1:
            table[mask] = _combine_subsets(mask, table, keep if mask == full else None)
    if keep and n == 1:
        return {c: v for c, v in table[full].items() if v.denominator == 1 and keep[0] <= v <= keep[1]}
    return table[full] if n else {}


def _combine_subsets(mask: int, table: dict[int, dict[Canon, Fraction]],
                     keep: tuple[int, int] | None) -> dict[Canon, Fraction]:
    out: dict[Canon, Fraction] = {}
    low = mask & -mask
    sub = (mask - 1) & mask
    while sub:
        if sub & low:  # each unordered split once: the half holding the lowest bit comes first
            for ca, va in table[sub].items():
                for cb, vb in table[mask ^ sub].items():
                    for op, x, y, cx, cy in _candidates(va, vb, ca, cb):
                        if keep:  # a value outside the range skips the costlier canonical form
                            v = _try_apply(op, x, y)
                            if v is not None and v.denominator == 1 and keep[0] <= v.numerator <= keep[1]:
                                out.setdefault(combine_canonical(op, cx, cy), v)
                            continue
                        c = combine_canonical(op, cx, cy)
                        if c not in out:  # a class's value is known once computed
                            v = _try_apply(op, x, y)
                            if v is not None:  # failures are not cached: a/(b/c) fails at c = 0, a*c/b not
                                out[c] = v
        sub = (sub - 1) & mask
    return out


def _try_apply(op: str, x: Fraction, y: Fraction) -> Fraction | None:
    try:
        return arith.apply(op, x, y, EXPR_LIMITS)
    except arith.ArithError:
        return None


def _candidates(va, vb, ca, cb):
    yield "+", va, vb, ca, cb
    yield "*", va, vb, ca, cb
    yield "-", va, vb, ca, cb
    yield "-", vb, va, cb, ca
    yield "/", va, vb, ca, cb
    yield "/", vb, va, cb, ca


# -- checking answers


@dataclass(frozen=True)
class Checked:
    """One answer entry and what the verifier made of it."""

    text: str
    canon: Canon | None
    correct: bool
    reason: str


def split_answer(answer: str | None, max_expressions: int) -> list[str]:
    """The first ``max_expressions`` non-empty entries, numbering stripped."""
    if not answer or len(answer) > MAX_ANSWER_CHARS:
        return []
    entries = []
    for raw in re.split(r"[\n;]", answer):
        # a valid expression never starts with '-', '*', '•' or '<digits>.' / '<digits>)'
        text = re.sub(r"^\s*(?:\d{1,3}[.)]|[-*•])\s+", "", raw).strip()
        if text:
            entries.append(text)
        if len(entries) == max_expressions:
            break
    return entries


def check_entry(text: str, numbers: list[int], target: int) -> Checked:
    """Parse one entry (``expr`` or ``expr = target``) and check it against the problem."""
    expr, sep, claimed = text.partition("=")
    try:
        if sep and arith.evaluate(claimed, EXPR_LIMITS) != target:
            return Checked(text, None, False, f"claims {claimed.strip()!r}, target is {target}")
        tree = arith.parse(expr, EXPR_LIMITS)
    except arith.ArithError as exc:
        return Checked(text, None, False, str(exc))
    canon = canonical(tree)
    if sorted(arith.leaves(tree)) != sorted(numbers):
        return Checked(text, canon, False, f"uses {sorted(arith.leaves(tree))}, must use {sorted(numbers)}")
    if tree.value != target:
        return Checked(text, canon, False, f"equals {tree.value}, not {target}")
    return Checked(text, canon, True, "ok")


def distinct_correct(answer: str | None, numbers: list[int], target: int, max_expressions: int) -> int:
    entries = split_answer(answer, max_expressions)
    return len({c.canon for c in (check_entry(t, numbers, target) for t in entries) if c.correct})


# -- the task


@dataclass(frozen=True)
class CountdownConfig:
    """Options of ``make("countdown", ...)``."""

    n_numbers: int = 4
    """Numbers per problem, 2..5 (the solver enumerates every expression: ~12 ms a problem with 4,
    ~0.3 s with 5)."""
    min_number: int = 1
    """Smallest number drawn."""
    max_number: int = 20
    """Largest number drawn."""
    min_target: int = 10
    """Smallest target."""
    max_target: int = 100
    """Largest target."""
    required: int = 4
    """Distinct solutions asked for; every generated problem has at least this many."""
    max_expressions: int | None = None
    """Answer entries checked, in order; ``None`` means ``required``."""
    test_fraction: float = 0.1
    """Share of number-multiset hash buckets that belong to the test split."""
    default_size: int = 1000
    """Problems per split when ``dataset`` gets no ``n``."""

    def __post_init__(self):
        require(
            (2 <= self.n_numbers <= 5, f"n_numbers must be in 2..5, got {self.n_numbers!r}"),
            (
                1 <= self.min_number <= self.max_number,
                f"need 1 <= min_number <= max_number, got {self.min_number!r}, {self.max_number!r}",
            ),
            (
                self.min_target <= self.max_target,
                f"min_target {self.min_target!r} is above max_target {self.max_target!r}",
            ),
            (self.required >= 1, f"required must be >= 1, got {self.required!r}"),
            (
                self.max_expressions is None or self.max_expressions >= 1,
                f"max_expressions must be >= 1 or None, got {self.max_expressions!r}",
            ),
            (0 < self.test_fraction < 1, f"test_fraction must be in (0, 1), got {self.test_fraction!r}"),
        )

    @property
    def checked(self) -> int:
        return self.max_expressions or self.required


def number_key(numbers: list[int] | tuple[int, ...]) -> str:
    """The multiset of numbers as text (``"3,5,8"``): what the split hashes and the problem's cluster."""
    return ",".join(map(str, sorted(numbers)))


def number_split(numbers: list[int], test_fraction: float) -> str:
    """"test" or "train", fixed by the multiset of numbers, so the splits never share a problem
    (nor even a set of numbers), whatever the seeds."""
    return sampling.hash_split(number_key(numbers), test_fraction)


def generate(cfg: CountdownConfig, rng: random.Random, split: str = "train", attempts: int = 500) -> Problem:
    """One problem of ``split`` with at least ``cfg.required`` distinct solutions; ``attempts``
    bounds the number sets solved before giving up."""
    for _ in range(50 * attempts):
        numbers = [rng.randint(cfg.min_number, cfg.max_number) for _ in range(cfg.n_numbers)]
        if number_split(numbers, cfg.test_fraction) != split:
            continue
        attempts -= 1
        if attempts < 0:
            break
        groups = _by_value(tuple(sorted(numbers)), (cfg.min_target, cfg.max_target))
        targets = sorted(v.numerator for v, classes in groups.items() if len(classes) >= cfg.required)
        if targets:
            target = rng.choice(targets)
            gold = sorted(rng.sample(sorted(map(render, groups[Fraction(target)])), cfg.required))
            return {"numbers": numbers, "target": target, "gold": json.dumps(gold), "required": cfg.required}
    raise ValueError(f"no {split} problem with {cfg.required} solutions found for {cfg}")


def question(numbers: list[int], target: int, required: int) -> str:
    listed = ", ".join(str(x) for x in numbers)
    return f"Numbers: {listed}\nTarget: {target}\nFind {required} distinct expressions that each equal {target}."


class CountdownTask(Task):
    name = "countdown"

    def __init__(self, cfg: CountdownConfig):
        self.cfg = cfg

    def dataset(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"countdown has splits 'train' and 'test', got {split!r}")
        rng = random.Random(f"countdown-{split}-{seed}")
        size = self.cfg.default_size if n is None else n
        drawn = sampling.draw_distinct(lambda: generate(self.cfg, rng, split),
                                       lambda p: (number_key(p["numbers"]), p["target"]), size,
                                       f"{split} problems for {self.cfg}")
        return [{"id": f"countdown-{split}-{seed}-{k}", "question": question(p["numbers"], p["target"], p["required"]),
                 "gold": p["gold"], "numbers": p["numbers"], "target": p["target"], "required": p["required"],
                 "cluster": number_key(p["numbers"])} for k, p in enumerate(drawn)]

    def cluster(self, problem: Problem) -> str:
        """The number multiset: problems on one set of numbers share most of their search (and their split)."""
        return number_key(problem["numbers"])

    def instruction(self) -> str:
        r = self.cfg.required
        return (
            f"Combine the given numbers with + - * / and parentheses to reach the target, in {r} distinct ways.\n"
            "Rules: each given number is used exactly once in every expression (a number listed twice is used "
            "twice); no other numbers; only + - * / and parentheses, no unary minus, no powers or "
            "concatenation; arithmetic is exact, so fractions are allowed along the way. Two expressions that "
            "differ only by reordering or regrouping the operands of + and - (or of * and /) count as one.\n"
            f"Answer form: inside <ANSWER>...</ANSWER> write exactly {r} expressions, one per line (or "
            "separated by ';'), each optionally followed by '= target'; ASCII digits and + - * / ( ) only, "
            "nothing else. The form, for numbers 1, 2, 3, 4 and target 10 with two expressions:\n"
            "<ANSWER>\n1 + 2 + 3 + 4 = 10\n4 * 3 - 2 * 1 = 10\n</ANSWER>"
        )

    def worker_instruction(self) -> str:
        return (
            "Search the sub-problem you are given. Return the expressions you found, one per line as "
            "'expression = value', inside <RETURN>...</RETURN>."
        )

    def extract_answer(self, answer_text: str | None) -> str | None:
        if answer_text is None:
            return None
        return answer_text.strip() or None

    def _count(self, answer: str | None, problem: Problem) -> tuple[int, int]:
        """(distinct correct solutions, required); (0, required) for a malformed problem row."""
        try:
            required = max(1, int(problem.get("required", self.cfg.required)))
            numbers, target = [int(x) for x in problem["numbers"]], int(problem["target"])
        except Exception:  # a malformed problem row must not crash a batch
            return 0, self.cfg.required
        # the row's own count decides how many entries are read (a row may ask for more than the task default)
        checked = self.cfg.max_expressions or required
        return distinct_correct(answer, numbers, target, checked), required

    def score(self, answer: str | None, problem: Problem) -> float:
        k, required = self._count(answer, problem)
        return min(k, required) / required

    def details(self, answer: str | None, problem: Problem) -> dict[str, float]:
        k, required = self._count(answer, problem)
        out = {f"at_least_{a}": float(k >= a) for a in range(1, required + 1)}
        out["distinct_correct"] = float(k)
        return out

    def normalize(self, answer: str | None) -> str | None:
        """Sorted distinct canonical forms of the entries that parse, joined by '; '.

        Correctness needs the problem, which a vote key does not see; answers to
        one problem vote together iff they list the same solution classes.
        """
        keys = set()
        for text in split_answer(answer, self.cfg.checked):
            try:
                keys.add(canonical_str(text.partition("=")[0]))
            except arith.ArithError:
                continue
        return "; ".join(sorted(keys)) or None


def make(**options) -> CountdownTask:
    """The countdown task; options are the fields of ``CountdownConfig``."""
    return CountdownTask(CountdownConfig(**options))
