"""Generated math word problems that a tiny model can learn, scored by the math task's own scorer.

A problem is a sum of groups, each "a <containers> of b <items>", less an
optional number given away::

    Ana has 3 boxes of 4 pens and 5 bags of 2 pens. She gives away 6 pens.
    How many pens does she have now?                                  (gold 16)

Each group is a sub-question a worker can answer alone ("3 boxes of 4 pens"
-> 12), and the organizer adds up what its workers return, so the task has
the fork/join shape of real math at a size a few-million-parameter model can
learn on a CPU. Answers are written ``\\boxed{16}`` inside ``<ANSWER>`` and go
through ``MathTask``'s extraction and scoring (plain numbers compared as exact
fractions), the same path as AIME or GSM8K.

A problem's content is its groups (as a multiset) and the number given away;
its wording (name, item, container words, order of the groups) is decoration.
Train and test never share content: a problem belongs to the test split iff
the hash of its content falls in the first ``test_fraction``
(``sampling.hash_split``), whatever the seeds or wording. A split holds each
content once (``distinct="content"``, the default), and the content is the
problem's cluster for confidence intervals; ``distinct="wording"`` keeps the
first shipped tiny math organizer's training sets, which ask for more problems
than a split holds contents and so repeat sums under other words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from asyncthink.envs import sampling
from asyncthink.envs.math_task import MathConfig, MathTask
from asyncthink.task import Problem

NAMES = ("Ana", "Ben", "Cy", "Dee")
CONTAINERS = ("boxes", "bags", "packs", "rows")
ITEMS = ("pens", "eggs", "cards", "apples")
DISTINCT = ("content", "wording")


@dataclass(frozen=True)
class MathGenConfig:
    """Options of ``make_task("math_gen", ...)``: how hard the generated problems are."""

    min_groups: int = 2
    """Fewest groups (sub-questions) in a problem."""
    max_groups: int = 3
    """Most groups; at most ``len(CONTAINERS)`` (each group has its own container word)."""
    min_factor: int = 2
    """Smallest count of containers and of items per container."""
    max_factor: int = 5
    """Largest count of containers and of items per container."""
    p_give_away: float = 0.5
    """Chance that some items are given away at the end (a subtraction)."""
    max_give_away: int = 9
    """Most items given away (always fewer than the total)."""
    test_fraction: float = 0.2
    """Share of problem hashes that belong to the test split."""
    distinct: str = "content"
    """What two problems of a split must differ in: ``"content"`` (the groups and give-away) or ``"wording"``
    (the question text; one sum may recur under other words, as in the shipped tiny math organizer's training
    configs, which ask for more problems than a split has contents)."""
    default_size: int = 200
    """Problems in a split when ``n`` is not given."""
    timeout_s: float = 5.0
    """Hard limit on a math-verify call (only non-numeric answers reach it)."""

    def __post_init__(self) -> None:
        checks = [
            (1 <= self.min_groups <= self.max_groups <= len(CONTAINERS),
             f"need 1 <= min_groups <= max_groups <= {len(CONTAINERS)}, "
             f"got {self.min_groups}, {self.max_groups}"),
            (1 <= self.min_factor <= self.max_factor,
             f"need 1 <= min_factor <= max_factor, got {self.min_factor}, {self.max_factor}"),
            (0 <= self.p_give_away <= 1, f"p_give_away must be in [0, 1], got {self.p_give_away}"),
            (self.max_give_away >= 1, f"max_give_away must be >= 1, got {self.max_give_away}"),
            (0 < self.test_fraction < 1, f"test_fraction must be in (0, 1), got {self.test_fraction}"),
            (self.distinct in DISTINCT, f"distinct must be one of {DISTINCT}, got {self.distinct!r}"),
            (self.default_size >= 1, f"default_size must be >= 1, got {self.default_size}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)


def content_key(groups: list[tuple[int, int]] | list[list[int]], give_away: int) -> str:
    """The problem's content as text, ``"[(2, 3), (4, 5)]|6"``: groups as a sorted multiset, then the give-away.
    The split hashes this exact text, so its form is fixed."""
    return f"{sorted(tuple(g) for g in groups)}|{give_away}"


def problem_split(groups: list[tuple[int, int]], give_away: int, test_fraction: float) -> str:
    """"test" or "train", fixed by the groups (as a multiset) and the number given away."""
    return sampling.hash_split(content_key(groups, give_away), test_fraction)


def group_text(count: int, container: str, per: int, item: str) -> str:
    return f"{count} {container} of {per} {item}"


def question_text(name: str, item: str, groups: list[tuple[int, int]], containers: list[str],
                  give_away: int) -> str:
    parts = [group_text(a, c, b, item) for (a, b), c in zip(groups, containers, strict=True)]
    listed = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    text = f"{name} has {listed}."
    if give_away:
        return text + f" {name} gives away {give_away} {item}. How many {item} are left?"
    return text + f" How many {item} in all?"


def generate(cfg: MathGenConfig, rng: random.Random, split: str) -> Problem:
    """One problem of ``split`` (with its groups, give-away and gold as metadata)."""
    for _ in range(10_000):
        k = rng.randint(cfg.min_groups, cfg.max_groups)
        groups = [(rng.randint(cfg.min_factor, cfg.max_factor), rng.randint(cfg.min_factor, cfg.max_factor))
                  for _ in range(k)]
        total = sum(a * b for a, b in groups)
        give = rng.randint(1, min(cfg.max_give_away, total - 1)) if rng.random() < cfg.p_give_away else 0
        if problem_split(groups, give, cfg.test_fraction) != split:
            continue
        name, item = rng.choice(NAMES), rng.choice(ITEMS)
        containers = rng.sample(CONTAINERS, k)
        return {"question": question_text(name, item, groups, containers, give), "gold": str(total - give),
                "groups": [list(g) for g in groups], "containers": containers, "item": item,
                "give_away": give}
    raise ValueError(f"no {split} problem found for {cfg}")


class MathGenTask(MathTask):
    """Generated word problems; extraction, scoring and vote keys are ``MathTask``'s."""

    name = "math_gen"

    def __init__(self, gen: MathGenConfig):
        super().__init__(MathConfig(timeout_s=gen.timeout_s))
        self.gen = gen

    def dataset(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        if split not in ("train", "test"):
            raise ValueError(f"math_gen has splits 'train' and 'test', got {split!r}")
        rng = random.Random(f"math_gen-{split}-{seed}")
        size = self.gen.default_size if n is None else n
        key = self.cluster if self.gen.distinct == "content" else (lambda p: p["question"])
        drawn = sampling.draw_distinct(lambda: generate(self.gen, rng, split), key, size,
                                       f"{split} problems (by {self.gen.distinct}) for {self.gen}")
        return [{"id": f"math_gen-{split}-{seed}-{k}", **p, "cluster": self.cluster(p)} for k, p in enumerate(drawn)]

    def cluster(self, problem: Problem) -> str:
        """The content (groups and give-away): the same sum in other words is the same problem."""
        return content_key(problem["groups"], problem["give_away"])

    def instruction(self) -> str:
        return "Answer with the number in <ANSWER>\\boxed{...}</ANSWER>."

    def worker_instruction(self) -> str:
        return "Multiply, and return the product in <RETURN>...</RETURN>."


def make(**options: Any) -> MathGenTask:
    """The generated math task; options are the fields of ``MathGenConfig``."""
    return MathGenTask(MathGenConfig(**options))
