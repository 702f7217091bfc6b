"""Run many episodes at once (problems x samples) under a global in-flight limit.

Each episode that raises (a bug, not a format error: those are records) is
recorded as an ``error`` episode of kind ``internal`` (``Episode.outcome``
``runtime_error``), its traceback logged once per distinct error and kept in
the record, and the batch goes on. A rich progress bar
shows episodes done and the running mean score. ``on_episode`` sees each
record as it finishes (the evaluator appends it to JSONL there, which is what
makes runs resumable). The batch runs under ``serving_gc``: full garbage
collection passes, each of which stalls every episode in flight, come ten
times less often while the records pile up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from asyncthink.episode import INTERNAL_ERROR, Episode, EpisodeStatus
from asyncthink.executor import EpisodeExecutor, report_runtime_error
from asyncthink.gc_tuning import serving_gc


@dataclass(frozen=True)
class BatchItem:
    """One episode to run: a problem, which sample of it, its seed and its id."""

    problem: dict[str, Any]
    sample: int
    seed: int
    episode_id: str


def make_items(
    problems: Iterable[dict[str, Any]], samples: int = 1, seed: int = 0, prefix: str = ""
) -> list[BatchItem]:
    """``samples`` items per problem with distinct, reproducible seeds and ids."""
    items = []
    for n, problem in enumerate(problems):
        pid = str(problem.get("id", n))
        for s in range(samples):
            items.append(BatchItem(problem, s, seed * 1_000_003 + n * 1009 + s, f"{prefix}{pid}#{s}"))
    return items


async def run_batch(
    executor: EpisodeExecutor,
    items: list[BatchItem],
    max_in_flight: int = 64,
    progress: bool = True,
    description: str = "episodes",
    on_episode: Callable[[Episode], None] | None = None,
) -> list[Episode]:
    """Run every item; results come back in item order."""
    limit = asyncio.Semaphore(max_in_flight)
    results: list[Episode | None] = [None] * len(items)
    scores: list[float] = []
    with _progress(progress) as bar, serving_gc():
        task_id = bar.add_task(description, total=len(items), score="-")

        async def one(k: int, item: BatchItem) -> None:
            async with limit:
                ep = await _run_one(executor, item)
            results[k] = ep
            if ep.score is not None:
                scores.append(ep.score)
            if on_episode is not None:
                on_episode(ep)
            bar.update(task_id, advance=1, score=f"{sum(scores) / len(scores):.3f}" if scores else "-")

        await asyncio.gather(*(one(k, item) for k, item in enumerate(items)))
    return [r for r in results if r is not None]


async def _run_one(executor: EpisodeExecutor, item: BatchItem) -> Episode:
    try:
        return await executor.run(item.problem, seed=item.seed, episode_id=item.episode_id)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # a bug in one episode must not stop the batch; the trainer counts it
        trace = report_runtime_error(exc, f"episode {item.episode_id}")
        return Episode(
            episode_id=item.episode_id, mode=str(executor.config.mode), question=str(item.problem.get("question")),
            problem_id=str(item.problem.get("id")), status=EpisodeStatus.ERROR, error=f"{type(exc).__name__}: {exc}",
            error_kind=INTERNAL_ERROR, task=getattr(executor.task, "name", None),
            info={"seed": item.seed, "traceback": trace},
        )


def _progress(enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("score {task.fields[score]}"), TimeElapsedColumn(), disable=not enabled, transient=False,
    )
