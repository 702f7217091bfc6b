"""The three reasoning modes, each defined once: its top rows, what a row's failure does, how it answers.

Every place that behaves differently by mode (the executor, replay, metrics,
viewers, the server, synthesis and the configs' checks) asks the mode (its
``spec``, ``top_row_ids``, ``content_row``, ``top_messages``), never compares its
name: ``tests/test_modes.py`` scans the source for such comparisons, so adding a
mode means adding one ``ModeSpec`` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from asyncthink.prompts import organizer_messages, sequential_messages

if TYPE_CHECKING:
    from asyncthink.prompts import PromptConfig

ORGANIZER_ROW = "0"
"""The id of the organizer's row (and of the one sequential trace); its workers are ``0.1``, ``0.2``, ..."""


class _Sizes(Protocol):
    capacity: int
    parallel_traces: int


@dataclass(frozen=True)
class ModeSpec:
    """What makes a mode."""

    forks: bool
    """The top row gets the organizer prompt and may fork workers (else it gets the sequential prompt)."""
    traces: bool
    """Several independent top rows (``t0``, ``t1``, ...): one failing does not stop the others, the
    latency is the longest one, and the answer is their majority vote."""
    label: str
    """How reports name the mode."""
    top_role: str
    """How viewers name a top row."""
    color: str
    """Its colour in plots."""


class Mode(StrEnum):
    SEQUENTIAL = "sequential"  # one trace, no forks
    PARALLEL = "parallel"  # N independent traces, majority vote
    ASYNCTHINK = "asyncthink"  # organizer with forked workers

    @property
    def spec(self) -> ModeSpec:
        return _SPECS[self]

    def top_row_ids(self, sizes: _Sizes) -> list[str]:
        """The ids of the rows the episode starts with."""
        return [f"t{k}" for k in range(sizes.parallel_traces)] if self.spec.traces else [ORGANIZER_ROW]

    def content_row(self) -> str | None:
        """The row whose text is the answer's as it streams; ``None`` when only the traces' vote at the end says."""
        return None if self.spec.traces else ORGANIZER_ROW

    def top_messages(self, prompts: PromptConfig, question: str, instruction: str,
                     capacity: int) -> list[dict[str, str]]:
        """The chat messages every top row starts from: the organizer prompt if the mode forks, else the
        sequential one."""
        if self.spec.forks:
            return organizer_messages(prompts, question, instruction, capacity)
        return sequential_messages(prompts, question, instruction)

    @property
    def trains(self) -> bool:
        """Its episodes are training data, row by row (RL, SFT, synthesis); voted traces are not."""
        return not self.spec.traces

    def capacity(self, sizes: _Sizes) -> int:
        """Agents that may generate at once: the pool, or the number of traces."""
        return sizes.parallel_traces if self.spec.traces else sizes.capacity


_SPECS = {
    Mode.SEQUENTIAL: ModeSpec(forks=False, traces=False, label="sequential", top_role="organizer", color="#7f7f7f"),
    Mode.PARALLEL: ModeSpec(forks=False, traces=True, label="parallel", top_role="trace", color="#1f77b4"),
    Mode.ASYNCTHINK: ModeSpec(forks=True, traces=False, label="AsyncThink", top_role="organizer", color="#d62728"),
}


def untrainable(names: list[str]) -> list[str]:
    """Those of ``names`` that are not modes whose episodes train (a config's check quotes them)."""
    return [name for name in names if name not in _SPECS or not Mode(name).trains]
