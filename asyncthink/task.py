"""The task protocol: what the runtime, evaluator and trainer need from a task.

It lives in the core because the executor uses it (instructions, answer
extraction, scoring, voting keys); tasks implement it in ``envs/``, each as
one module with one factory. A task gives a list of problems (plain dicts,
each with at least ``id``, ``question`` and ``gold``), the
instruction that tells organizer, worker and sequential prompts the answer
form, an answer extractor from the organizer's ``<ANSWER>`` text, a scorer in
[0, 1], and a normaliser that makes equal answers equal for majority voting.
A task also says which problems are related (``cluster``: countdown problems
on one number set, math_gen problems with one sum), so confidence intervals
resample clusters rather than treating related problems as independent.
Nothing here knows about engines or training: adding a task never edits them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

Problem = dict[str, Any]


class Task(ABC):
    """One task family (countdown, math, sudoku) with its options bound."""

    name: str = ""

    @abstractmethod
    def dataset(self, split: str = "test", n: int | None = None, seed: int = 0) -> list[Problem]:
        """Problems with ``id``, ``question``, ``gold`` and task metadata; the same for the same arguments."""

    @abstractmethod
    def instruction(self) -> str:
        """The rules and the answer form, shown to the organizer (and sequential/parallel traces)."""

    def worker_instruction(self) -> str:
        """Extra guidance for workers; empty by default (workers see only their sub-query)."""
        return ""

    @abstractmethod
    def extract_answer(self, answer_text: str | None) -> str | None:
        """The answer from the text inside ``<ANSWER>...</ANSWER>``; ``None`` if nothing usable."""

    @abstractmethod
    def score(self, answer: str | None, problem: Problem) -> float:
        """Accuracy in [0, 1]; never raises, whatever the answer holds."""

    @abstractmethod
    def normalize(self, answer: str | None) -> str | None:
        """A canonical key: two answers vote together iff their keys are equal."""

    def details(self, answer: str | None, problem: Problem) -> dict[str, float]:
        """Extra per-episode figures (countdown reports ``at_least_a``); empty by default."""
        return {}

    def cluster(self, problem: Problem) -> str:
        """The key shared by problems related to this one; each problem is its own cluster by default.

        A task that overrides it also stores it in each ``dataset`` row as ``cluster`` (a string), so the
        episode records keep it (``info["problem"]``) and intervals computed from records alone
        (``asyncthink.eval.stats.cluster_keys``) resample whole clusters.
        """
        return str(problem["id"])
