"""Runtime overhead against the physical limit, on a simulated engine.

The simulated engine's clock is the wall-clock: every ``d`` ms every live
stream has one more token, the way a batched engine in another process steps
all sequences together, and a consumer that lags gets the tokens it missed in
one delta (as from vLLM). Scripted organizer/worker outputs have known DAGs, so
each episode's critical-path latency in tokens is known; the ideal wall-clock
of an episode is ``latency x d``. Two tables:

1. ``wall / (latency x d)`` for 1, 64, 1,024 and 4,096 concurrent episodes,
   with and without forks (the goal is at most 1.05, and 1.15 at 4,096), the
   tokens per delta the load produced, and the runtime's CPU per generated
   token: the process's CPU minus that of the same engine replaying the same
   deltas to a consumer that only counts them. Each size runs twice: deltas
   pushed to the rows from the engine's clock loop (``Engine.stream_to``, as
   vLLM's output loop does for the executor) and pulled by one task per stream
   (``generate``; ``--no-pulled`` skips it). Then each size with forks split
   over ``--processes`` child processes (``asyncthink.shards``), each with its
   own clocked engine for its share.
2. The runtime's CPU per token and per fork (with its join and worker row) on
   each path (token-id tags, tags as text, every delta token by token), on an
   engine with no clock and a fixed number of tokens per delta, best of a few
   runs, so the figures do not move with the load.
3. The executor's consumer of one delta of plain text, timed alone (one and
   eight tokens a delta): the steadiest per-token figure.

Every episode must end ``ok`` (the status counts are printed).

The engine runs on its own clock, like an engine in another process. Its
clock starts at the first request, and a request joins at the step the
wall-clock has reached, even while this process is busy. To find a
request's script it decodes only the prompt's tail, so taking a request costs
it about what handing a request to a real engine costs its client.

    python benchmarks/runtime_overhead.py [--d-ms 20] [--sizes 1 64 1024 4096] [--per-delta 1 8] [--no-pulled]
                                          [--processes 2]
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import resource
import statistics
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from asyncthink.batch import BatchItem, make_items, run_batch
from asyncthink.detok import IncrementalDetokenizer
from asyncthink.engines.base import clamp_to_context
from asyncthink.engines.scripted import CharTokenizer, ScriptedEngine
from asyncthink.engines.types import Delta, Final, FinishReason, GenerateRequest
from asyncthink.executor import EpisodeExecutor
from asyncthink.gc_tuning import serving_gc
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.shards import ShardSpec, run_sharded

TAIL_TOKENS = 400  # enough for a row's user message and all it generated, in these scripts


class _Stream:
    """One request's scripted tokens, how many the engine has produced, and when the consumer read them."""

    __slots__ = ("ids", "k0", "due", "sent", "ready", "reads", "plan", "push")

    def __init__(self, ids: list[int], k0: int, plan: list[tuple[int, int]] | None, push: _Push | None = None) -> None:
        self.ids, self.k0, self.due, self.sent, self.ready = ids, k0, 0, 0, asyncio.Event()
        self.reads: list[tuple[int, int]] = []  # (ticks since admission, tokens produced) at each read
        self.plan = plan
        self.push = push  # pushed streams are handed their deltas by the clock loop itself


class _Push:
    """A pushed stream's consumer, how to make its final delta, and the future its caller waits on."""

    __slots__ = ("on_delta", "final", "done")

    def __init__(self, on_delta: Callable[[Delta], bool], final: Final) -> None:
        self.on_delta, self.final = on_delta, final
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()


class ClockEngine(ScriptedEngine):
    """``ScriptedEngine`` whose streams advance together, one token per tick of ``d`` seconds of wall-clock.

    The engine's clock is the wall-clock, as for an engine in another process or on a GPU: after ``t``
    seconds a stream admitted at tick ``k0`` has ``t / d - k0`` tokens, whether or not its consumer kept
    up, and a consumer that lags gets every token produced since its last read in one delta (as vLLM's
    output collector merges them). So a runtime that is slow per token sees bigger chunks, never a slower
    engine. ``per_delta`` fixes the chunking instead (tokens come ``per_delta`` at a time, as to a consumer
    that always lags that much), so a CPU cost per token does not depend on the load. ``plans`` (request id ->
    reads of an earlier run) replays another run's chunking: the same deltas at the same ticks, so its cost
    can be subtracted from that run's. With ``push`` (the default), ``stream_to`` is served by the clock loop
    itself, one pass over the streams per tick calling each consumer, as vLLM's output handler does; without
    it, by one task per stream iterating ``generate``.
    """

    def __init__(self, scripts: dict[str, str], d: float, plans: dict[str, list[tuple[int, int]]] | None = None,
                 text_tags: bool = False, per_delta: int | None = None, push: bool = True) -> None:
        super().__init__(scripts, max_model_len=1 << 30)  # no clamping: the budgets are the runtime's
        self.per_delta, self.push = per_delta, push
        self.tokenizer = CharTokenizer(text_tags=text_tags)
        self.d, self.plans = d, plans
        self.streams: set[_Stream] = set()
        self.reads: dict[str, list[tuple[int, int]]] = {}
        self._clock: asyncio.Task | None = None
        self.epoch: float | None = None  # when the first request came: tick 0 of the engine's clock
        self.tick = 0
        self.tokens = self.deltas = 0

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(max(0.0, self.epoch + (self.tick + 1) * self.d - loop.time()))
            self.tick = max(self.tick + 1, self._wall_tick())  # ticks missed while we were busy
            self._advance()

    def _wall_tick(self) -> int:
        """The engine's step now: it runs on its own, like an engine in another process, even while the event
        loop is busy, so a request is admitted at the step the wall-clock has reached, not at the last step
        this process saw."""
        return int((asyncio.get_running_loop().time() - self.epoch) / self.d)

    def _advance(self) -> None:
        """One engine step: every stream's new tokens, pushed to its consumer or flagged for its reader."""
        for s in list(self.streams):  # a consumer may fork: new streams join at the next step
            due = self._due(s, self.tick - s.k0)
            if due > s.due:
                s.due = due
                if s.push is None:
                    s.ready.set()
                else:
                    self._deliver(s, s.push)

    def _deliver(self, s: _Stream, push: _Push) -> None:
        if push.done.done():
            return  # stopped or cancelled: the stream is dropped when its caller wakes
        chunk, s.sent = s.ids[s.sent : s.due], s.due
        last = s.sent == len(s.ids)
        s.reads.append((self.tick - s.k0, s.sent))
        self.tokens += len(chunk)
        self.deltas += 1
        try:
            stop = push.on_delta(Delta(chunk, [-0.1] * len(chunk), push.final if last else None))
        except Exception as exc:
            push.done.set_exception(exc)
            return
        if stop or last:
            push.done.set_result(None)

    def _due(self, s: _Stream, ticks: int) -> int:
        if s.plan is None:
            produced = min(len(s.ids), ticks)
            if self.per_delta is None or produced == len(s.ids):
                return produced
            return produced // self.per_delta * self.per_delta
        due = s.due
        while s.plan and s.plan[0][0] <= ticks:
            due = s.plan.pop(0)[1]
        return due if s.plan else len(s.ids)  # a request the run aborted early ends here too

    def _completion(self, request: GenerateRequest) -> tuple[list[int], Final]:
        """The scripted ids this request produces (up to its stops and max_tokens), and its final info."""
        # kept for the baseline's replay with the prompt as a tuple: ints only, so the garbage collector
        # stops scanning it (the engine's own memory is not the runtime's collection work)
        self.requests.append(GenerateRequest(tuple(request.prompt_ids), request.sampling, request.request_id))
        sp = clamp_to_context(request, self.max_model_len)
        text = self._segment(request)
        cut = min((text.find(s) + len(s) for s in sp.stop if s in text), default=None)  # stop strings, if any
        ids = self.tokenizer.encode(text[:cut]) + ([] if cut else [self.tokenizer.eos_token_id])
        stops = set(sp.stop_token_ids) | {self.tokenizer.eos_token_id}
        end = next((n for n, tok in enumerate(ids[: sp.max_tokens], 1) if tok in stops), len(ids) if cut else None)
        reason = FinishReason.STOP if end is not None else FinishReason.LENGTH
        ids = ids[: end or sp.max_tokens]
        return ids, Final(reason, ids[-1], 0, len(request.prompt_ids), len(ids))

    def _segment(self, request: GenerateRequest) -> str:
        """``ScriptedEngine._segment`` on the prompt's tail when it holds the row's user message and all the row
        generated: decoding whole prompts would make taking a request cost the engine more than handing a
        request to a real engine costs its client."""
        tail = request.prompt_ids[-TAIL_TOKENS:]
        if len(tail) < len(request.prompt_ids):
            head = self.tokenizer.decode(tail).rpartition("Assistant:")[0]
            if "User: " in head:
                return super()._segment(GenerateRequest(tail, request.sampling, request.request_id))
        return super()._segment(request)

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        ids, final = self._completion(request)
        async for chunk, last in self.stream_ids(ids, request.request_id):
            yield Delta(chunk, [-0.1] * len(chunk), final if last else None)

    async def stream_to(self, request: GenerateRequest, on_delta: Callable[[Delta], bool]) -> None:
        if not self.push:
            return await super().stream_to(request, on_delta)
        ids, final = self._completion(request)
        self._start_clock()
        plan = list(self.plans[request.request_id]) if self.plans is not None else None
        s = _Stream(ids, self._admit_tick(), plan, _Push(on_delta, final))
        self.streams.add(s)
        self.reads[request.request_id] = s.reads
        try:
            await s.push.done
        finally:
            self.streams.discard(s)

    def _start_clock(self) -> None:
        if self._clock is None or self._clock.done():
            self.epoch = self.epoch if self.epoch is not None else asyncio.get_running_loop().time()
            self._clock = asyncio.get_running_loop().create_task(self._run_clock())

    def _admit_tick(self) -> int:
        return self._wall_tick() if self.plans is None else self.tick  # a replay admits where the plan says

    async def stream_ids(self, ids: list[int], request_id: str) -> AsyncIterator[tuple[list[int], bool]]:
        """The clocked stream of ``ids``: (chunk, is_last) pairs; what the engine itself costs."""
        self._start_clock()
        plan = list(self.plans[request_id]) if self.plans is not None else None
        s, sent = _Stream(ids, self._admit_tick(), plan), 0
        self.streams.add(s)
        self.reads[request_id] = s.reads
        try:
            while sent < len(ids):
                await s.ready.wait()
                s.ready.clear()
                chunk, sent = ids[sent : s.due], s.due
                s.reads.append((self.tick - s.k0, sent))
                self.tokens += len(chunk)
                self.deltas += 1
                yield chunk, sent == len(ids)
        finally:
            self.streams.discard(s)

    async def close(self) -> None:
        if self._clock:
            self._clock.cancel()
            await asyncio.gather(self._clock, return_exceptions=True)


class InstantEngine(ClockEngine):
    """No clock: every request streams ``per_delta`` tokens a delta, one event-loop round apart, at once.

    For CPU costs only: the chunking is fixed and nothing waits on time, so the process CPU of a run is
    the same from run to run, and the best of a few repeats is a stable figure. Pushed streams get theirs
    from a loop that steps every stream by ``per_delta`` tokens per event-loop round.
    """

    def _due(self, s: _Stream, ticks: int) -> int:
        return min(len(s.ids), ticks * (self.per_delta or 1))

    def _admit_tick(self) -> int:
        return self.tick

    async def _run_clock(self) -> None:
        while self.streams:
            await asyncio.sleep(0)
            self.tick += 1
            self._advance()

    async def stream_ids(self, ids: list[int], request_id: str) -> AsyncIterator[tuple[list[int], bool]]:
        k = self.per_delta or 1
        for start in range(0, len(ids), k):
            await asyncio.sleep(0)
            chunk = ids[start : start + k]
            self.tokens += len(chunk)
            self.deltas += 1
            yield chunk, start + k >= len(ids)


def dag_scripts(n: int, forks: int, worker_len: int, org_len: int) -> dict[str, str]:
    """Problem ``n``: the organizer forks ``forks`` workers early, thinks, then joins them all."""
    subs = [f"p{n} sub {k}" for k in range(1, forks + 1)]
    org = "".join(f"<FORK-{k}>{s}</FORK-{k}>" for k, s in enumerate(subs, 1))
    org += "t" * org_len + "".join(f"<JOIN-{k}>" for k in range(1, forks + 1)) + "<ANSWER>1</ANSWER>"
    scripts = {f"q{n}": org}
    for s in subs:
        scripts[s] = "w" * worker_len + "<RETURN>ok</RETURN>"
    return scripts


def workload(size: int, forks: int, worker_len: int, org_len: int) -> tuple[dict[str, str], RuntimeConfig,
                                                                           list[BatchItem]]:
    """``size`` episodes of ``dag_scripts``: their scripts, a runtime config that lets them run, their items."""
    scripts: dict[str, str] = {}
    for n in range(size):
        scripts.update(dag_scripts(n, forks, worker_len, org_len))
    cfg = RuntimeConfig(capacity=max(2, forks + 1), max_organizer_tokens=100_000, max_worker_tokens=100_000,
                        max_forks=64)
    return scripts, cfg, make_items([{"id": f"p{n}", "question": f"q{n}"} for n in range(size)])


@dataclass(frozen=True)
class RuntimePath:
    """How the runtime meets the tokens: tags as single tokens or as text, plain deltas whole or not, and
    deltas pushed by the engine's output loop or pulled by one task per stream."""

    name: str
    text_tags: bool = False
    bulk: bool = True
    push: bool = True


PATHS = (RuntimePath("token-id tags"), RuntimePath("text tags", text_tags=True),
         RuntimePath("per-token (bulk off)", bulk=False), RuntimePath("token-id, pulled", push=False))
PULLED = PATHS[3]


async def measure(size: int, d: float, forks: int, worker_len: int, org_len: int,
                  path: RuntimePath = PATHS[0], per_delta: int | None = None) -> dict[str, Any]:
    """Run ``size`` episodes at once; then the same streams as plain requests (the engine's own cost)."""
    scripts, cfg, items = workload(size, forks, worker_len, org_len)
    engine = ClockEngine(scripts, d, text_tags=path.text_tags, per_delta=per_delta, push=path.push)
    IncrementalDetokenizer.bulk = path.bulk
    try:
        t0, cpu0 = time.perf_counter(), time.process_time()
        episodes = await run_batch(EpisodeExecutor(engine, cfg), items, max_in_flight=size, progress=False)
        total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    finally:
        IncrementalDetokenizer.bulk = True
    await engine.close()
    figures = wall_figures(episodes, size, forks, d, total)
    engine_cpu = await plain_requests_cpu(scripts, d, engine.requests, engine.reads, path)
    runtime_cpu = cpu - engine_cpu
    return figures | {"tokens": engine.tokens, "tokens_per_delta": engine.tokens / engine.deltas,
                      "runtime_cpu_s": runtime_cpu, "runtime_us_per_token": 1e6 * runtime_cpu / engine.tokens,
                      "cpu_s": cpu, "engine_cpu_s": engine_cpu}


def wall_figures(episodes: list, size: int, forks: int, d: float, batch_wall_s: float) -> dict[str, Any]:
    """Every episode ``ok`` (else the run is refused), and wall-clock against each one's ideal."""
    statuses = Counter(str(e.status) for e in episodes)
    assert statuses == {"ok": size}, statuses
    ratios = [e.wall_s / (e.metrics["latency"] * d) for e in episodes]
    return {"size": size, "forks": forks, "latency": episodes[0].metrics["latency"], "statuses": dict(statuses),
            "ratio_mean": statistics.mean(ratios), "ratio_max": max(ratios), "batch_wall_s": batch_wall_s,
            "episode_wall_s": statistics.mean(e.wall_s for e in episodes)}


async def measure_sharded(size: int, d: float, forks: int, worker_len: int, org_len: int,
                          processes: int) -> dict[str, Any]:
    """``size`` episodes at once split over ``processes`` children (``asyncthink.shards``), each with its own
    clocked engine for its share: the engine is another process either way, and the runtime gets a core per
    child. The children's CPU (all of it, engine included) comes from the kernel's account of them."""
    scripts, cfg, items = workload(size, forks, worker_len, org_len)
    spec = ShardSpec(functools.partial(ClockEngine, scripts, d), cfg, max_in_flight=size)
    cpu0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
    episodes = await run_sharded(spec, items, processes)
    total, cpu1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall_figures(episodes, size, forks, d, total) | {
        "children_cpu_s": (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)}


async def plain_requests_cpu(scripts: dict[str, str], d: float, requests: list[GenerateRequest],
                             plans: dict[str, list[tuple[int, int]]], path: RuntimePath) -> float:
    """CPU seconds of the same engine serving the same requests, all at once, in the same deltas, to a consumer
    that only drains them: everything the engine costs (prompt lookup, deltas, the clock, and for pulled
    streams a task per stream), so the rest is the runtime's."""
    engine = ClockEngine(scripts, d, plans, text_tags=path.text_tags, push=path.push)
    with serving_gc():  # as run_batch does for the episodes
        cpu0 = time.process_time()
        await asyncio.gather(*(engine.stream_to(r, _drain) for r in requests))
        cpu = time.process_time() - cpu0
    await engine.close()
    return cpu


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Print the three tables; return their figures (each row with its episodes' status counts)."""
    wall = [row for d_ms in args.d_ms for row in await wall_grid(args, d_ms / 1000)]
    return {"wall": wall, "cpu": await cpu_costs(args), "delta": await delta_costs(args.deltas, args.repeats)}


class ConsumerTimer(ScriptedEngine):
    """Times the consumer an engine's output loop calls (``Engine.stream_to``'s ``on_delta``): the organizer's
    first request gets ``count`` deltas of ``ids`` back to back, timed, then the row's answer and its end."""

    def __init__(self, ids: list[int], count: int) -> None:
        super().__init__({}, max_model_len=1 << 30)
        self.ids, self.count, self.elapsed = ids, count, 0.0

    async def stream_to(self, request: GenerateRequest, on_delta: Callable[[Delta], bool]) -> None:
        logprobs = [-0.1] * len(self.ids)
        t0 = time.perf_counter()
        for _ in range(self.count):
            on_delta(Delta(self.ids, logprobs, None))
        self.elapsed = time.perf_counter() - t0
        end = self.tokenizer.encode("<ANSWER>1</ANSWER>")
        final = Final(FinishReason.STOP, end[-1], 0, len(request.prompt_ids), self.count * len(self.ids) + len(end))
        on_delta(Delta(end, [-0.1] * len(end), final))


async def delta_costs(deltas: int = 100_000, repeats: int = 5) -> dict[str, Any]:
    """What one delta of plain text costs the executor, timed alone: the consumer an engine's output loop calls
    (``Engine.stream_to``), on one organizer row of a real episode, best of ``repeats``. No clock and nothing
    else running: the figure does not move with the load, unlike the differences of whole runs above."""
    print(f"\nthe executor's consumer alone, plain text deltas, best of {repeats}")
    per_token, statuses = {}, Counter()
    for n in (1, 8):
        count, best = max(1, deltas // n), float("inf")
        for _ in range(repeats):
            engine = ConsumerTimer(CharTokenizer().encode("w" * n), count)
            cfg = RuntimeConfig(max_organizer_tokens=count * n + 100)  # the row's budget never stops the deltas
            episode = await EpisodeExecutor(engine, cfg).run({"question": "q"}, seed=0, episode_id="delta")
            statuses[str(episode.status)] += 1
            best = min(best, engine.elapsed)
        per_token[n] = 1e6 * best / (count * n)
        print(f"  {n} token{'s' if n > 1 else ''} a delta: {per_token[n]:.2f} us per token")
    assert set(statuses) == {"ok"}, statuses  # a row that ended early would time less than every delta
    return {"us_per_token": per_token, "statuses": dict(statuses)}


async def wall_grid(args: argparse.Namespace, d: float) -> list[dict[str, Any]]:
    print(f"\nsimulated engine: one token per stream every {d * 1000:g} ms; token-id tags, plain deltas whole; "
          "deltas pushed by the engine's loop, or pulled by a task per stream")
    print(f"{'delivery':>8} {'episodes':>8} {'forks':>5} {'latency':>7} {'wall/ideal mean':>15} {'max':>6} "
          f"{'batch wall s':>12} {'runtime us/token':>16} {'tokens/delta':>12} {'statuses':>14}")
    rows, sharded = {}, []
    for size in args.sizes:
        for path in (PATHS[0], PULLED) if args.pulled else (PATHS[0],):
            delivery = "push" if path.push else "pull"
            for forks in (0, args.forks):
                r = await measure(size, d, forks, args.worker_len, args.org_len, path)
                rows[(delivery, size, forks)] = r | {"delivery": delivery}
                print(f"{delivery:>8} {size:>8} {forks:>5} {r['latency']:>7.0f} {r['ratio_mean']:>15.4f} "
                      f"{r['ratio_max']:>6.3f} {r['batch_wall_s']:>12.2f} {r['runtime_us_per_token']:>16.1f} "
                      f"{r['tokens_per_delta']:>12.2f} {r['statuses']!s:>14}")
    for processes in args.processes:
        for size in args.sizes:
            r = await measure_sharded(size, d, args.forks, args.worker_len, args.org_len, processes)
            sharded.append(r | {"delivery": f"push/{processes}p"})
            cpu = f"CPU {r['children_cpu_s']:.1f} s"  # all the children's CPU: no engine baseline to subtract
            print(f"{f'push/{processes}p':>8} {size:>8} {args.forks:>5} {r['latency']:>7.0f} "
                  f"{r['ratio_mean']:>15.4f} {r['ratio_max']:>6.3f} {r['batch_wall_s']:>12.2f} {cpu:>16} "
                  f"{'':>12} {r['statuses']!s:>14}")
    for (delivery, size, forks), r in rows.items():
        if forks:
            extra = r["episode_wall_s"] - r["latency"] * d
            base = rows[(delivery, size, 0)]["episode_wall_s"] - rows[(delivery, size, 0)]["latency"] * d
            per = (extra - base) / (2 * forks) * 1000
            print(f"{delivery:>8} {size:>8} episodes: wall-clock overhead per fork or join ~ {per:.2f} ms")
    return list(rows.values()) + sharded


async def cpu_costs(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runtime's CPU per generated token and per fork (with its join and worker row), on each path.

    On ``InstantEngine``: fixed tokens per delta and no clock, so the cost per token does not depend on how
    loaded the process was; each figure is the best of ``--repeats`` runs less the best of as many runs of
    the engine alone on the same requests. Per token: episodes with no forks and 1x or 8x the organizer's
    tokens; per fork: the same episodes with ``--cpu-forks`` forks of 2-token workers, less their tokens' cost.
    """
    size, forks, org = args.cpu_size, args.cpu_forks, args.org_len + args.worker_len
    print(f"\nruntime CPU, {size} episodes, no clock, fixed tokens per delta, best of {args.repeats} (process CPU "
          f"minus the same engine serving the same requests)")
    print(f"{'path':>22} {'tokens/delta':>12} {'us/token':>9} {'us/fork+join':>12} {'statuses':>14}")
    rows = []
    for per_delta in args.per_delta:
        for path in PATHS:
            runs = [await cpu_run(size, f, worker, k * org, path, per_delta, args.repeats)
                    for f, worker, k in ((0, 0, 1), (0, 0, 8), (forks, 2, 1))]
            (a, ta, _), (b, tb, _), (c, tc, _) = runs
            per_token = (b - a) / (tb - ta)
            per_fork = (c - a - per_token * (tc - ta)) / (size * forks)
            statuses = dict(sum((r[2] for r in runs), Counter()))
            print(f"{path.name:>22} {per_delta:>12} {1e6 * per_token:>9.2f} {1e6 * per_fork:>12.1f} "
                  f"{statuses!s:>14}")
            rows.append({"path": path.name, "per_delta": per_delta, "us_per_token": 1e6 * per_token,
                         "us_per_fork": 1e6 * per_fork, "episodes": 3 * size * args.repeats, "statuses": statuses})
    return rows


async def cpu_run(size: int, forks: int, worker_len: int, org_len: int, path: RuntimePath, per_delta: int,
                  repeats: int) -> tuple[float, int, Counter]:
    """(runtime CPU seconds, tokens, statuses) of ``size`` episodes on ``InstantEngine``, best of ``repeats``."""
    scripts, cfg, items = workload(size, forks, worker_len, org_len)
    best, best_engine, statuses = float("inf"), float("inf"), Counter()
    for _ in range(repeats):
        engine = InstantEngine(scripts, 0.0, text_tags=path.text_tags, per_delta=per_delta, push=path.push)
        IncrementalDetokenizer.bulk = path.bulk
        try:
            cpu0 = time.process_time()
            episodes = await run_batch(EpisodeExecutor(engine, cfg), items, max_in_flight=size, progress=False)
            best = min(best, time.process_time() - cpu0)
        finally:
            IncrementalDetokenizer.bulk = True
            await engine.close()
        statuses += Counter(str(e.status) for e in episodes)
        best_engine = min(best_engine, await plain_requests_cpu_instant(scripts, engine.requests, path, per_delta))
    assert set(statuses) == {"ok"}, statuses
    return best - best_engine, engine.tokens, statuses


async def plain_requests_cpu_instant(scripts: dict[str, str], requests: list[GenerateRequest], path: RuntimePath,
                                     per_delta: int) -> float:
    engine = InstantEngine(scripts, 0.0, text_tags=path.text_tags, per_delta=per_delta, push=path.push)
    with serving_gc():
        cpu0 = time.process_time()
        await asyncio.gather(*(engine.stream_to(r, _drain) for r in requests))
        cpu = time.process_time() - cpu0
    await engine.close()
    return cpu


def _drain(delta: Delta) -> bool:
    return False


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-ms", type=float, nargs="+", default=[20.0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--cpu-size", type=int, default=256, help="Episodes in the runs that split the CPU cost.")
    parser.add_argument("--cpu-forks", type=int, default=8, help="Forks per episode in those runs.")
    parser.add_argument("--per-delta", type=int, nargs="+", default=[1, 8], help="Tokens per delta in those runs.")
    parser.add_argument("--repeats", type=int, default=5, help="Runs per figure in those runs (the best counts).")
    parser.add_argument("--deltas", type=int, default=100_000, help="Deltas per timing of the consumer alone.")
    parser.add_argument("--forks", type=int, default=3)
    parser.add_argument("--worker-len", type=int, default=60)
    parser.add_argument("--org-len", type=int, default=40)
    parser.add_argument("--pulled", action=argparse.BooleanOptionalAction, default=True,
                        help="Also run the wall-clock grid with one task per stream pulling its deltas.")
    parser.add_argument("--processes", type=int, nargs="*", default=[2],
                        help="Also run each size with forks split over this many processes (asyncthink.shards).")
    parser.add_argument("--uvloop", action="store_true", help="Run on uvloop instead of asyncio's default loop.")
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
