"""The three reasoning modes, each defined once: its top rows, what a row's failure does, how it answers.

Every place that behaves differently by mode (the executor, metrics, viewers,
the server's summary) asks the mode, never compares its name, so adding a mode
means adding one ``ModeSpec`` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


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
        return [f"t{k}" for k in range(sizes.parallel_traces)] if self.spec.traces else ["0"]

    def capacity(self, sizes: _Sizes) -> int:
        """Agents that may generate at once: the pool, or the number of traces."""
        return sizes.parallel_traces if self.spec.traces else sizes.capacity


_SPECS = {
    Mode.SEQUENTIAL: ModeSpec(forks=False, traces=False, label="sequential", top_role="organizer", color="#7f7f7f"),
    Mode.PARALLEL: ModeSpec(forks=False, traces=True, label="parallel", top_role="trace", color="#1f77b4"),
    Mode.ASYNCTHINK: ModeSpec(forks=True, traces=False, label="AsyncThink", top_role="organizer", color="#d62728"),
}
