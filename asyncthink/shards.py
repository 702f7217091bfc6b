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
for them to exit; if this process is killed, the engine watchdog kills them.
"""

from __future__ import annotations

import asyncio
import inspect
import multiprocessing as mp
import multiprocessing.connection as mp_connection
import pickle
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from asyncthink.batch import BatchItem, run_batch
from asyncthink.engines.base import Engine
from asyncthink.engines.lifetime import ensure_watchdog
from asyncthink.episode import Episode
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.task import Task

POLL_S = 0.5  # the longest a reader thread waits, so a cancelled batch is not held up by it
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
    ids = [item.episode_id for item in items]
    if len(set(ids)) != len(ids):
        raise ValueError("episode ids must be unique across the batch: records are matched to items by id")
    ensure_watchdog()  # children (and any engine processes they start) die with us, even after a kill -9
    shards = [_Shard(k, items[k::processes]) for k in range(processes) if items[k::processes]]
    finished = False
    try:
        await asyncio.to_thread(_start, spec, shards)  # spawning pickles each share and waits for the child
        done = await _collect(shards, on_episode)
        finished = True
    finally:
        await asyncio.to_thread(_stop, shards, finished)
    if len(done) != len(items):
        raise ShardError(f"{len(items) - len(done)} of {len(items)} records never came back")
    by_id = {ep.episode_id: ep for ep in done}
    return [by_id[i] for i in ids]


class _Shard:
    """One child: its share, its process, and the read end of its own pipe (a child that dies mid-message
    is an end of file there, never a reader blocked on a lock another child holds)."""

    def __init__(self, index: int, items: list[BatchItem]) -> None:
        self.index, self.items = index, items
        self.process: Any = None
        self.reader: Any = None
        self.finished = False
        self.closed = False


def _start(spec: ShardSpec, shards: list[_Shard]) -> None:
    ctx = mp.get_context("spawn")  # a fork would copy the parent's event loop, threads and engine
    for shard in shards:
        shard.reader, writer = ctx.Pipe(duplex=False)
        # not a daemon: a daemon may not start processes, and an in-process vLLM engine starts its own
        shard.process = ctx.Process(target=_child_main, args=(spec, shard.items, writer, shard.index),
                                    name=f"asyncthink-shard-{shard.index}")
        shard.process.start()
        writer.close()  # the child holds the only write end: its death is an end of file here


async def _collect(shards: list[_Shard], on_episode: Callable[[Episode], None] | None) -> list[Episode]:
    """Read records until every child said it finished; a child that failed or died raises."""
    done: list[Episode] = []
    while not all(shard.finished for shard in shards):
        for shard, message in await asyncio.to_thread(_read_ready, shards):
            kind, payload = message
            if kind == "episode":
                done.append(payload)
                if on_episode is not None:
                    on_episode(payload)
            elif kind == "finished":
                shard.finished = True
            else:
                raise ShardError(f"shard {shard.index} failed: {payload}")
    return done


def _read_ready(shards: list[_Shard]) -> list[tuple[_Shard, tuple[str, Any]]]:
    """The messages waiting now (waits up to ``POLL_S`` for one); a pipe that ended before its child said
    it finished is that child's death, reported with its exit code."""
    open_readers = {shard.reader: shard for shard in shards if not shard.closed}
    messages = []
    for reader in mp_connection.wait(list(open_readers), timeout=POLL_S):
        shard = open_readers[reader]
        try:
            messages.append((shard, pickle.loads(reader.recv_bytes())))
        except EOFError:
            shard.closed = True
            if not shard.finished:
                shard.process.join(timeout=EXIT_WAIT_S)
                messages.append((shard, ("failed", f"exited with code {shard.process.exitcode} before its "
                                                   "share was done")))
    return messages


def _stop(shards: list[_Shard], finished: bool) -> None:
    """Every child exits: after a finished batch on its own; after a failure or a cancellation terminated
    (all at once), and killed if it lingers."""
    started = [shard.process for shard in shards if shard.process is not None]
    if finished:
        for process in started:
            process.join(timeout=EXIT_WAIT_S)
    for process in started:
        if process.is_alive():
            process.terminate()
    for process in started:
        process.join(timeout=EXIT_WAIT_S)
        if process.is_alive():
            process.kill()
            process.join()
    # the read ends close with their shards: a reader thread of a cancelled batch may still be polling them


def _child_main(spec: ShardSpec, items: list[BatchItem], writer: Any, shard: int) -> None:
    """A child's whole life: its engine, its share of the batch, each record sent home as it ends."""
    def send(kind: str, payload: Any) -> None:
        writer.send_bytes(pickle.dumps((kind, payload)))  # pickled here: a record that cannot be fails loudly

    try:
        asyncio.run(_run_share(spec, items, send))
    except BaseException as exc:  # the parent must hear why, whatever it was
        send("failed", f"{type(exc).__name__}: {exc}")
        raise
    send("finished", None)


async def _run_share(spec: ShardSpec, items: list[BatchItem], send: Callable[[str, Any], None]) -> None:
    made = spec.engine_factory()
    engine = await made if inspect.isawaitable(made) else made
    try:
        task = spec.task_factory() if spec.task_factory is not None else None
        executor = EpisodeExecutor(engine, spec.runtime, task)
        await run_batch(executor, items, spec.max_in_flight, progress=False,
                        on_episode=lambda ep: send("episode", ep))
    finally:
        await engine.close()
