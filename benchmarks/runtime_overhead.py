"""Runtime overhead against the physical limit, on a simulated engine.

The simulated engine is a clock: every ``d`` ms it gives every live stream its
next scripted token, the way a batched engine steps all sequences together,
and a consumer that lags gets the tokens it missed in one delta (as from
vLLM). Scripted organizer/worker outputs have known DAGs, so each episode's
critical-path latency in tokens is known; the ideal wall-clock of an episode
is ``latency x d``. We report ``wall / (latency x d)`` for 1, 64, 1,024 (and
4,096) concurrent episodes (the goal is at most 1.05), the runtime's CPU
microseconds per generated token (the process's CPU time minus that of the
same engine streaming the same requests to a consumer that only counts
them), and the per-fork and per-join overhead measured as the extra
wall-clock of a many-fork episode over a no-fork episode with the same
critical path. Every episode must end ``ok`` (the status counts are printed).

    python benchmarks/runtime_overhead.py [--d-ms 20 100] [--sizes 1 64 1024]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from asyncthink.batch import make_items, run_batch  # noqa: E402
from asyncthink.engines.base import clamp_to_context  # noqa: E402
from asyncthink.engines.types import Delta, Final, FinishReason, GenerateRequest  # noqa: E402
from asyncthink.executor import EpisodeExecutor  # noqa: E402
from asyncthink.runtime_config import RuntimeConfig  # noqa: E402
from tests.fakes import ScriptedEngine  # noqa: E402


class _Stream:
    """One request's scripted tokens and how many the clock has produced so far."""

    __slots__ = ("ids", "due", "ready")

    def __init__(self, ids: list[int]) -> None:
        self.ids, self.due, self.ready = ids, 0, asyncio.Event()


class ClockEngine(ScriptedEngine):
    """``ScriptedEngine`` whose streams advance together, one token per tick of ``d`` seconds.

    One clock task steps every live stream, the way a batched engine steps all sequences. Like vLLM's
    output collector, a stream whose consumer lags gets every token produced since its last read in one
    delta, so a slow consumer is never held back by ticks it missed.
    """

    def __init__(self, scripts: dict[str, str], d: float) -> None:
        super().__init__(scripts)
        self.d = d
        self.streams: set[_Stream] = set()
        self._clock: asyncio.Task | None = None
        self.tokens = 0

    async def _run_clock(self) -> None:
        # ticks at absolute times, so a slow tick does not delay every later one
        loop = asyncio.get_running_loop()
        start, k = loop.time(), 0
        while True:
            k += 1
            await asyncio.sleep(max(0.0, start + k * self.d - loop.time()))
            for s in self.streams:
                if s.due < len(s.ids):
                    s.due += 1
                    s.ready.set()

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        self.requests.append(request)
        sp = clamp_to_context(request, self.max_model_len)
        ids = self.tokenizer.encode(self._segment(request)) + [self.tokenizer.eos_token_id]
        stops = set(sp.stop_token_ids) | {self.tokenizer.eos_token_id}
        end = next((n for n, tok in enumerate(ids[: sp.max_tokens], 1) if tok in stops), None)
        reason = FinishReason.STOP if end is not None else FinishReason.LENGTH
        ids = ids[: end or sp.max_tokens]
        async for chunk, last in self.stream_ids(ids):
            yield Delta(chunk, [-0.1] * len(chunk), Final(reason, ids[-1], 0, len(request.prompt_ids), len(ids))
                        if last else None)

    async def stream_ids(self, ids: list[int]) -> AsyncIterator[tuple[list[int], bool]]:
        """The clocked stream of ``ids``: (chunk, is_last) pairs; what the engine itself costs."""
        if self._clock is None:
            self._clock = asyncio.get_running_loop().create_task(self._run_clock())
        s, sent = _Stream(ids), 0
        self.streams.add(s)
        try:
            while sent < len(ids):
                await s.ready.wait()
                s.ready.clear()
                chunk, sent = ids[sent : s.due], s.due
                self.tokens += len(chunk)
                yield chunk, sent == len(ids)
        finally:
            self.streams.discard(s)

    async def close(self) -> None:
        if self._clock:
            self._clock.cancel()
            await asyncio.gather(self._clock, return_exceptions=True)


def dag_scripts(n: int, forks: int, worker_len: int, org_len: int) -> dict[str, str]:
    """Problem ``n``: the organizer forks ``forks`` workers early, thinks, then joins them all."""
    subs = [f"p{n} sub {k}" for k in range(1, forks + 1)]
    org = "".join(f"<FORK-{k}>{s}</FORK-{k}>" for k, s in enumerate(subs, 1))
    org += "t" * org_len + "".join(f"<JOIN-{k}>" for k in range(1, forks + 1)) + "<ANSWER>1</ANSWER>"
    scripts = {f"q{n}": org}
    for s in subs:
        scripts[s] = "w" * worker_len + "<RETURN>ok</RETURN>"
    return scripts


async def measure(size: int, d: float, forks: int, worker_len: int, org_len: int) -> dict[str, float]:
    """Run ``size`` episodes at once; then the same streams as plain requests (the engine's own cost)."""
    scripts: dict[str, str] = {}
    for n in range(size):
        scripts.update(dag_scripts(n, forks, worker_len, org_len))
    engine = ClockEngine(scripts, d)
    cfg = RuntimeConfig(capacity=max(2, forks + 1), max_organizer_tokens=100_000, max_worker_tokens=100_000,
                        max_forks=64)
    items = make_items([{"id": f"p{n}", "question": f"q{n}"} for n in range(size)])
    t0, cpu0 = time.perf_counter(), time.process_time()
    episodes = await run_batch(EpisodeExecutor(engine, cfg), items, max_in_flight=size, progress=False)
    total, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    await engine.close()
    statuses = Counter(str(e.status) for e in episodes)
    assert statuses == {"ok": size}, statuses
    engine_cpu = await plain_requests_cpu(scripts, d, engine.requests)
    ratios = [e.wall_s / (e.metrics["latency"] * d) for e in episodes]
    return {"size": size, "forks": forks, "latency": episodes[0].metrics["latency"], "statuses": dict(statuses),
            "ratio_mean": statistics.mean(ratios), "ratio_max": max(ratios), "batch_wall_s": total,
            "episode_wall_s": statistics.mean(e.wall_s for e in episodes), "tokens": engine.tokens,
            "runtime_us_per_token": 1e6 * (cpu - engine_cpu) / engine.tokens, "cpu_s": cpu, "engine_cpu_s": engine_cpu}


async def plain_requests_cpu(scripts: dict[str, str], d: float, requests: list[GenerateRequest]) -> float:
    """CPU seconds of the same engine serving the same requests, all at once, to a consumer that only drains
    them: everything the engine costs (prompt lookup, deltas, the clock), so the rest is the runtime's."""
    engine = ClockEngine(scripts, d)

    async def drain(request: GenerateRequest) -> None:
        async for _ in engine.generate(request):
            pass

    cpu0 = time.process_time()
    await asyncio.gather(*(drain(r) for r in requests))
    cpu = time.process_time() - cpu0
    await engine.close()
    return cpu


async def main(args: argparse.Namespace) -> None:
    for d_ms in args.d_ms:
        await grid(args, d_ms)


async def grid(args: argparse.Namespace, d_ms: float) -> None:
    d = d_ms / 1000
    print(f"\nsimulated engine: one token per stream every {d_ms} ms")
    print(f"{'episodes':>8} {'forks':>5} {'latency':>7} {'wall/ideal mean':>15} {'max':>6} {'batch wall s':>12} "
          f"{'runtime us/token':>16} {'statuses':>12}")
    rows = {}
    for size in args.sizes:
        for forks in (0, args.forks):
            r = await measure(size, d, forks, args.worker_len, args.org_len)
            rows[(size, forks)] = r
            print(f"{size:>8} {forks:>5} {r['latency']:>7.0f} {r['ratio_mean']:>15.4f} {r['ratio_max']:>6.3f} "
                  f"{r['batch_wall_s']:>12.2f} {r['runtime_us_per_token']:>16.1f} {r['statuses']!s:>12}")
    for size in args.sizes:
        extra = rows[(size, args.forks)]["episode_wall_s"] - rows[(size, args.forks)]["latency"] * d
        base = rows[(size, 0)]["episode_wall_s"] - rows[(size, 0)]["latency"] * d
        per = (extra - base) / (2 * args.forks) * 1000
        print(f"{size:>8} episodes: overhead per fork or join ~ {per:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d-ms", type=float, nargs="+", default=[20.0, 100.0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024])
    parser.add_argument("--forks", type=int, default=3)
    parser.add_argument("--worker-len", type=int, default=60)
    parser.add_argument("--org-len", type=int, default=40)
    parser.add_argument("--uvloop", action="store_true", help="Run on uvloop instead of asyncio's default loop.")
    args = parser.parse_args()
    if args.uvloop:
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
