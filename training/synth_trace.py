"""What every trace synthesizer (countdown, sudoku, math_gen) shares: the written trace and how topologies vary.

A synthesizer writes a ``Trace`` (text, never token ids); ``training/replay.py``
turns it into the episode record the runtime would produce, and
``training/synth.py`` keeps it if that record passes and scores 1.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Trace:
    """One written episode: the organizer's generated text and each worker's, by fork index; ``topology``
    names its fork/join shape for the synthesis statistics."""

    organizer: str
    workers: dict[int, str] = field(default_factory=dict)
    """Each worker's generated text, by fork index."""
    subqueries: dict[int, str] = field(default_factory=dict)
    """The sub-query each worker was forked with, by fork index."""
    topology: str = ""

    def worker_texts(self) -> dict[str, str]:
        """Each worker's text by its sub-query: how replay finds a worker's row (by its prompt)."""
        return {self.subqueries[k]: text for k, text in self.workers.items()}


@dataclass
class TopologyOptions:
    """How organizer traces vary; probabilities are per trace."""

    capacity: int = 4
    """Pool size the traces respect: at most ``capacity - 1`` workers forked and not joined."""
    p_plan: float = 0.5
    """The organizer first writes how many branches there are."""
    p_self_search: float = 0.3
    """Per wave: the organizer searches one branch itself while its workers run."""
    p_stop_early: float = 0.6
    """Stop forking once ``required`` distinct solutions are in hand."""
    p_shuffle: float = 0.5
    """Explore branches in a random order (else in the natural order)."""
    p_full_waves: float = 0.5
    """Fill the pool in every wave (else waves of random size)."""
