"""One batch of episodes split over processes, each with its own event loop and engine client.

One event loop is one core. At a few thousand episodes in flight, the Python
work per token and per fork (parsing, bookkeeping, requests) needs more than
one core can give, and every episode waits on the loop. ``run_sharded`` gives
each of ``processes`` child processes a share of the items. A child builds
its own engine with ``engine_factory`` and runs ``run_batch`` on its share.
The engine can be an OpenAI-compatible client of one shared vLLM server (the
usual way to serve), or any engine a picklable factory builds.

Each record comes back to the caller's process when its episode ends
(``on_episode`` sees it there, so an evaluator can append it to its JSONL
file). At the end the records are returned in item order. A child that fails
(its engine would not start, or it died) raises ``ShardError`` with the
child's own message. Cancelling the call terminates the children and waits
for them to exit.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing as mp
import queue as queue_module
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asyncthink.batch import BatchItem, run_batch
from asyncthink.engines.base import Engine
from asyncthink.episode import Episode
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.task import Task

POLL_S = 0.5  # how often the reader checks that every child is still alive while no record comes
EXIT_WAIT_S = 10.0  # how long a finished or terminated child gets to exit before it is killed


class ShardError(RuntimeError):
    """A child process failed before its share of the batch was done."""


@dataclass(frozen=True)
class ShardSpec:
    """What every child needs to run its share (pickled to it, so factories must be importable callables)."""

    engine_factory: Callable[[], Engine | Awaitable[Engine]]
    """Builds the child's engine, or a coroutine that does: ``functools.partial(build_engine, EngineConfig(
    kind="openai", base_urls=[...]))`` gives each child a client of one shared server."""
    runtime: RuntimeConfig
    """The episodes' runtime settings, as for ``EpisodeExecutor``."""
    task_factory: Callable[[], Task | None] | None = None
    """Builds the task that scores episodes (``functools.partial(make_task, "countdown")``); None scores nothing."""
    max_in_flight: int = 64
    """Episodes in flight in each child."""


async def run_sharded(spec: ShardSpec, items: list[BatchItem], processes: int,
                      on_episode: Callable[[Episode], None] | None = None) -> list[Episode]:
    """Run every item over ``processes`` children; records come back in item order."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    ctx = mp.get_context("spawn")  # a fork would copy the parent's event loop, threads and engine
    records: Any = ctx.Queue()
    shares = [items[k::processes] for k in range(processes)]
    children = [ctx.Process(target=_child_main, args=(spec, share, records, k), name=f"asyncthink-shard-{k}",
                            daemon=True) for k, share in enumerate(shares) if share]
    for child in children:
        child.start()
    finished = False
    try:
        done = await _collect(records, children, on_episode)
        finished = True
    finally:
        await asyncio.to_thread(_stop, children, finished)
    by_id = {ep.episode_id: ep for ep in done}
    return [by_id[item.episode_id] for item in items if item.episode_id in by_id]


async def _collect(records: Any, children: list[Any], on_episode: Callable[[Episode], None] | None) -> list[Episode]:
    """Read records until every child said it finished; a child that failed or vanished raises."""
    done: list[Episode] = []
    finished: set[int] = set()
    while len(finished) < len(children):
        message = await asyncio.to_thread(_get, records)
        if message is None:
            _check_alive(children, finished)
            continue
        kind, shard, payload = message
        if kind == "episode":
            done.append(payload)
            if on_episode is not None:
                on_episode(payload)
        elif kind == "finished":
            finished.add(shard)
        else:
            raise ShardError(f"shard {shard} failed: {payload}")
    return done


def _get(records: Any) -> tuple[str, int, Any] | None:
    try:
        return records.get(timeout=POLL_S)
    except queue_module.Empty:
        return None


def _check_alive(children: list[Any], finished: set[int]) -> None:
    for k, child in enumerate(children):
        if k not in finished and not child.is_alive():
            raise ShardError(f"shard {k} exited with code {child.exitcode} before its share was done")


def _stop(children: list[Any], finished: bool) -> None:
    """Every child exits: after a finished batch on its own; after a failure or a cancellation terminated,
    and killed if it lingers."""
    for child in children:
        if finished:
            child.join(timeout=EXIT_WAIT_S)
        if child.is_alive():
            child.terminate()
            child.join(timeout=EXIT_WAIT_S)
        if child.is_alive():
            child.kill()
            child.join()


def _child_main(spec: ShardSpec, items: list[BatchItem], records: Any, shard: int) -> None:
    """A child's whole life: its engine, its share of the batch, each record sent home as it ends."""
    try:
        asyncio.run(_run_share(spec, items, records, shard))
    except BaseException as exc:  # the parent must hear why, whatever it was
        records.put(("failed", shard, f"{type(exc).__name__}: {exc}"))
        raise
    records.put(("finished", shard, None))


async def _run_share(spec: ShardSpec, items: list[BatchItem], records: Any, shard: int) -> None:
    made = spec.engine_factory()
    engine = await made if inspect.isawaitable(made) else made
    try:
        task = spec.task_factory() if spec.task_factory is not None else None
        executor = EpisodeExecutor(engine, spec.runtime, task)
        await run_batch(executor, items, spec.max_in_flight, progress=False,
                        on_episode=lambda ep: records.put(("episode", shard, ep)))
    finally:
        await engine.close()
