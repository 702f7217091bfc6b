"""Progress of an evaluation: one bar for everything, one per (task, mode, budget) with its running accuracy.

Episodes loaded from an earlier run count as done from the start, so a
resumed run shows where it stands rather than starting from zero.
"""

from __future__ import annotations

from collections.abc import Iterable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from asyncthink.episode import Episode
from asyncthink.eval.stats import is_correct


class EvalProgress:
    """Rich bars; ``enabled=False`` makes every call a no-op display-wise."""

    def __init__(self, total: int, done: int, enabled: bool = True) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[acc]}"), TimeElapsedColumn(), disable=not enabled,
        )
        self.total = self.bar.add_task("all runs", total=total, completed=done, acc="")
        self.counts: dict[TaskID, list[int]] = {}  # run bar -> [correct, finished]

    def __enter__(self) -> EvalProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def start_run(self, name: str, total: int, done: Iterable[Episode]) -> TaskID:
        done = list(done)
        bar = self.bar.add_task(name, total=total, completed=len(done), acc="")
        self.counts[bar] = [sum(is_correct(ep) for ep in done), len(done)]
        self._show(bar)
        return bar

    def finished(self, bar: TaskID, ep: Episode) -> None:
        counts = self.counts[bar]
        counts[0] += is_correct(ep)
        counts[1] += 1
        self.bar.advance(bar)
        self.bar.advance(self.total)
        self._show(bar)

    def _show(self, bar: TaskID) -> None:
        correct, n = self.counts[bar]
        self.bar.update(bar, acc=f"acc {correct / n:.3f}" if n else "acc -")
