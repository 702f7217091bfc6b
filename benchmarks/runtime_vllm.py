"""The runtime on the real engine: in-process vLLM, the shipped tiny organizer, held-out countdown.

Three measurements, on one engine:

1. **Many episodes in flight.** ``--episodes`` (256) AsyncThink episodes at once. A sampling profiler reads
   the event-loop thread's stack every 2 ms and says whose code it was in: ours (``asyncthink``), vLLM's
   frontend, other libraries, the event loop itself, or idle. Then the engine's own limit: the same rows
   as plain requests (each row's prompt, exactly as many tokens as the row generated, no protocol, all at
   once). We report episodes/s for both and their ratio of tokens/s. Each run starts with vLLM's prefix
   cache emptied (else the plain rows would find the prompts the batch left cached). This machine's speed
   drifts by a tenth or more within minutes, so ``--rounds`` (4) rounds each run the batch and its plain
   rows back to back, in alternating order, and the ratio is the mean over rounds with a 95 % t interval.
2. **Prefix cache on resumes.** For every organizer request resumed after a join, the prompt tokens vLLM
   served from its prefix cache (its own ``num_cached_tokens``) over what the block size allows (the full
   blocks of the context the previous request had computed).
3. **Wall-clock against tokens.** ``--single`` problems run one episode at a time, sequential and
   AsyncThink: AsyncThink's wall-clock speedup over sequential against its critical-path token speedup,
   and where the difference goes (resume requests, time between requests, decode slower in a batch).

Every figure comes with its episodes' status counts.

    python benchmarks/runtime_vllm.py [--episodes 256] [--rounds 4] [--single 24] [--block-size 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

from asyncthink.batch import make_items, run_batch  # noqa: E402
from asyncthink.configs import config_path  # noqa: E402
from asyncthink.engines import EngineConfig, build_engine  # noqa: E402
from asyncthink.envs import make_task  # noqa: E402
from asyncthink.episode import Episode  # noqa: E402
from asyncthink.eval.config import load_eval_config  # noqa: E402
from asyncthink.eval.harness import warm_up  # noqa: E402
from asyncthink.executor import EpisodeExecutor  # noqa: E402
from asyncthink.models import shipped_model  # noqa: E402
from asyncthink.protocol import Role  # noqa: E402
from asyncthink.runtime_config import Mode  # noqa: E402

OURS = str(Path(__file__).resolve().parents[1] / "asyncthink")
IDLE = ("select", "poll", "epoll", "wait")


class StackSampler:
    """Samples one thread's stack; the innermost frame that is ours or vLLM's names the owner.

    The sampler needs the GIL, so while the event loop is busy it samples at the interpreter's switch
    interval (5 ms), at whatever point the loop was: shares among busy samples follow busy time.
    """

    def __init__(self, thread_id: int, interval_s: float = 0.002) -> None:
        self.thread_id, self.interval_s = thread_id, interval_s
        self.counts: Counter[str] = Counter()
        self.where: Counter[str] = Counter()  # innermost file:function of samples outside ours and vLLM's
        self.ours: Counter[str] = Counter()  # our innermost file:function
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> StackSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            frame = sys._current_frames().get(self.thread_id)
            if frame is not None:
                owner = self._owner(frame)
                if owner.startswith("asyncthink:"):
                    self.ours[owner.split(":", 1)[1]] += 1
                    owner = "asyncthink"
                self.counts[owner] += 1
                if owner in ("other libraries", "event loop"):
                    self.where[f"{Path(frame.f_code.co_filename).name}:{frame.f_code.co_name}"] += 1

    @staticmethod
    def _owner(frame: Any) -> str:
        """Ours or vLLM's by the innermost such frame (a tokenizer called by our code is ours); else a library's,
        or the event loop's own when the stack reaches the loop with nothing but asyncio on it."""
        if frame.f_code.co_name in IDLE and "selectors" in frame.f_code.co_filename:
            return "idle"
        library = False
        while frame is not None:
            path, name = frame.f_code.co_filename, frame.f_code.co_name
            if "/asyncthink/" in path or path.startswith(OURS):
                return f"asyncthink:{Path(path).name}:{name}"
            if "/vllm/" in path:
                return "vllm frontend"
            if name == "_run_once" and "/asyncio/" in path:
                break
            library = library or "/asyncio/" not in path
            frame = frame.f_back
        return "other libraries" if library else "event loop"

    def shares(self) -> dict[str, float]:
        busy = {k: v for k, v in self.counts.items() if k != "idle"}
        total = sum(busy.values()) or 1
        return {k: v / total for k, v in sorted(busy.items(), key=lambda kv: -kv[1])}


def children_cpu() -> float:
    """CPU seconds of our child processes (vLLM's engine core), alive or not."""
    import psutil

    total = 0.0
    for child in psutil.Process().children(recursive=True):
        try:
            t = child.cpu_times()
            total += t.user + t.system
        except psutil.Error:
            pass
    return total


async def many_in_flight(engine: Any, executor: EpisodeExecutor, problems: list[dict], n: int) -> dict[str, Any]:
    samples = -(-n // len(problems))
    items = make_items(problems, samples=samples, seed=1)[:n]
    await cold_cache(engine)
    t0, cpu0, loop0, core0 = time.perf_counter(), time.process_time(), time.thread_time(), children_cpu()
    with StackSampler(threading.get_ident()) as sampler:
        episodes = await run_batch(executor, items, max_in_flight=n, progress=False)
    wall = time.perf_counter() - t0
    busy = sum(v for k, v in sampler.counts.items() if k != "idle")
    return {"episodes": episodes, "wall_s": wall, "cpu_s": time.process_time() - cpu0,
            "loop_cpu_s": time.thread_time() - loop0, "core_cpu_s": children_cpu() - core0,
            "shares": sampler.shares(), "busy_samples": busy, "where": sampler.where, "ours": sampler.ours}


async def plain_rows(engine: Any, episodes: list[Episode]) -> dict[str, Any]:
    """Every row once, as a plain request with the row's prompt and exactly its generated token count."""
    from vllm import SamplingParams as VSP
    from vllm.sampling_params import RequestOutputKind

    async def one(k: int, prompt: list[int], tokens: int) -> int:
        sp = VSP(max_tokens=tokens, min_tokens=tokens, ignore_eos=True, temperature=0.7, logprobs=0,
                 detokenize=False, output_kind=RequestOutputKind.DELTA, seed=k)
        got = 0
        async for out in engine.llm.generate({"prompt_token_ids": prompt}, sp, request_id=f"plain-{k}"):
            got += len(out.outputs[0].token_ids)
        return got

    rows = [(r.prompt_ids, r.generated_tokens) for e in episodes for r in e.rows if r.generated_tokens > 0]
    await cold_cache(engine)
    t0, core0 = time.perf_counter(), children_cpu()
    got = await asyncio.gather(*(one(k, p, t) for k, (p, t) in enumerate(rows)))
    return {"wall_s": time.perf_counter() - t0, "tokens": sum(got), "requests": len(rows),
            "core_cpu_s": children_cpu() - core0}


async def cold_cache(engine: Any) -> None:
    """Empty vLLM's prefix cache: each run starts cold, not with the prompts the run before it left cached."""
    if not await engine.llm.reset_prefix_cache():
        raise RuntimeError("vLLM did not reset its prefix cache (requests still running?)")


def prefix_cache_share(episodes: list[Episode], block: int) -> dict[str, float]:
    """Cached prompt tokens of resumed organizer requests over the full blocks their context already had."""
    cached = allowed = resumes = 0
    for ep in episodes:
        for row in ep.rows:
            if row.role != Role.ORGANIZER:
                continue
            for prev, req in zip(row.requests, row.requests[1:], strict=False):
                if req.cached_tokens is None:
                    continue
                computed = len(row.prompt_ids) + prev.end - 1  # the last sampled token has no KV yet
                allowed += computed // block * block
                cached += req.cached_tokens
                resumes += 1
    return {"resumes": resumes, "cached": cached, "allowed": allowed, "share": cached / allowed if allowed else 0.0}


async def one_at_a_time(seq: EpisodeExecutor, asy: EpisodeExecutor,
                        problems: list[dict]) -> tuple[list[Episode], list[Episode]]:
    """Each problem in both modes, one episode at a time, back to back (in turns, sequential first on even
    problems), so the machine's drift falls on both modes alike; each starts with the prefix cache empty, so
    neither finds the problem's prompt cached by the other."""
    s_eps, a_eps = [], []
    for k, item in enumerate(make_items(problems, seed=2)):
        first, second = (seq, asy) if k % 2 == 0 else (asy, seq)
        await cold_cache(first.engine)
        one = await run_batch(first, [item], max_in_flight=1, progress=False)
        await cold_cache(second.engine)
        two = await run_batch(second, [item], max_in_flight=1, progress=False)
        s_ep, a_ep = (one, two) if first is seq else (two, one)
        s_eps += s_ep
        a_eps += a_ep
    return s_eps, a_eps


def ratio_interval(seq: list[Episode], asy: list[Episode], n_boot: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval over problems (paired) of wall-clock speedup over critical-path token speedup."""
    import numpy as np

    s_wall, a_wall = np.array([e.wall_s for e in seq]), np.array([e.wall_s for e in asy])
    s_lat, a_lat = (np.array([e.metrics["latency"] for e in eps]) for eps in (seq, asy))
    draws = np.random.default_rng(0).integers(0, len(seq), size=(n_boot, len(seq)))
    wall = s_wall[draws].sum(1) / a_wall[draws].sum(1)
    tokens = s_lat[draws].sum(1) / a_lat[draws].sum(1)
    lo, hi = np.percentile(wall / tokens, [2.5, 97.5])
    return float(lo), float(hi)


def speedup_table(seq: list[Episode], asy: list[Episode]) -> dict[str, float]:
    """Wall and critical-path token speedups of AsyncThink over sequential on the same problems, and where
    AsyncThink's wall-clock goes beyond its critical path at one-stream speed."""
    wall = statistics.mean(e.wall_s for e in seq) / statistics.mean(e.wall_s for e in asy)
    tokens = statistics.mean(e.metrics["latency"] for e in seq) / statistics.mean(e.metrics["latency"] for e in asy)
    s_per_token = sum(e.wall_s for e in seq) / sum(e.metrics["latency"] for e in seq)  # one stream, no protocol
    ideal = sum(e.metrics["latency"] for e in asy) * s_per_token
    orgs = [r for e in asy for r in e.rows if r.role == Role.ORGANIZER]
    workers = [(e, r) for e in asy for r in e.rows if r.role == Role.WORKER]
    resume = sum((q.end_s - q.start_s) - (q.end - q.start) * s_per_token for r in orgs for q in r.requests[1:])
    joins = sum(_join_overhead(r) for r in orgs)
    forks = sum(w.requests[0].start_s - _fork_time(e, w) for e, w in workers if w.requests)
    total = sum(e.wall_s for e in asy)
    return {"wall_speedup": wall, "token_speedup": tokens, "ratio": wall / tokens, "s_per_token": s_per_token,
            "asy_wall_s": total, "ideal_s": ideal, "resume_excess_s": resume, "join_s": joins, "fork_s": forks,
            "rest_s": total - ideal - resume - joins}


def _join_overhead(row: Any) -> float:
    """Time from a join being ready (the worker done, or already done) to the organizer's next request."""
    joins = [e for e in row.events if e.kind == "join"]
    return sum(max(0.0, b.start_s - a.end_s - j.wait_s) for j, a, b in zip(joins, row.requests, row.requests[1:],
                                                                             strict=False))


def _fork_time(ep: Episode, worker: Any) -> float:
    parent = next(r for r in ep.rows if r.row_id == worker.parent)
    return next(e.time_s for e in parent.events if e.kind == "fork" and e.child == worker.row_id)


def statuses(episodes: list[Episode]) -> dict[str, int]:
    return dict(Counter(str(e.status) for e in episodes))


async def main(args: argparse.Namespace, engine: Any = None) -> dict[str, Any]:
    """The three measurements on the shipped tiny organizer, or on ``engine`` (an in-process vLLM engine the
    caller owns, left open); returns their figures, each with its episodes' status counts."""
    cfg = load_eval_config(config_path("demo.yaml"))
    spec = cfg.tasks[0]
    task = make_task(spec.name, **spec.options)
    problems = task.dataset(spec.split, spec.n)
    extra = {"block_size": args.block_size} if args.block_size else {}
    lent = engine is not None
    engine = engine or await build_engine(EngineConfig(kind="vllm", model=str(shipped_model()), dtype="float32",
                                                       max_model_len=2048, kv_cache_gib=2, extra=extra))
    try:
        await warm_up(engine)
        budget = cfg.task_budgets(spec)[0]
        asy = EpisodeExecutor(engine, cfg.runtime_for(Mode.ASYNCTHINK, budget), task)
        seq = EpisodeExecutor(engine, cfg.runtime_for(Mode.SEQUENTIAL, budget), task)
        results = {"many": await report_many(engine, asy, problems, args.episodes, args.rounds)}
        if args.single:
            results["single"] = await report_single(asy, seq, problems[: args.single])
        return results
    finally:
        if not lent:
            await engine.close()


async def report_many(engine: Any, asy: EpisodeExecutor, problems: list[dict], n: int,
                      rounds: int) -> dict[str, Any]:
    """``rounds`` rounds of AsyncThink's batch and the same rows as plain requests, back to back, the batch first
    in even rounds and second in odd ones (the plain rows of the last batch: every round runs the same seeded
    episodes), so neither side always runs on the warmer machine. This machine's speed drifts by a tenth or
    more within minutes: a ratio is taken only within a round, and the figure is the mean over rounds with a
    t interval."""
    ratios, core_ratios, counts, run = [], [], Counter(), None
    for k in range(rounds):
        if k % 2 == 0:
            run = await many_in_flight(engine, asy, problems, n)
            plain = await plain_rows(engine, run["episodes"])
        else:
            plain = await plain_rows(engine, run["episodes"])
            run = await many_in_flight(engine, asy, problems, n)
        tokens = sum(r.generated_tokens for e in run["episodes"] for r in e.rows)
        ratios.append((tokens / run["wall_s"]) / (plain["tokens"] / plain["wall_s"]))
        core_ratios.append(run["core_cpu_s"] / plain["core_cpu_s"])
        counts.update(statuses(run["episodes"]))
        print_round(engine, k, n, run, plain)
    mean, half = t_interval(ratios)
    print(f"\nAsyncThink / plain throughput (tokens/s) over {rounds} rounds: {mean:.3f} [{mean - half:.3f}, "
          f"{mean + half:.3f}] (95 % t interval over rounds; rounds: {', '.join(f'{r:.3f}' for r in ratios)}); "
          f"engine core CPU AsyncThink / plain: {', '.join(f'{r:.2f}' for r in core_ratios)}")
    return {"ratio_mean": mean, "ratio_half_width": half, "ratios": ratios, "core_ratios": core_ratios,
            "episodes": n * rounds, "statuses": dict(counts)}


T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t_interval(values: list[float]) -> tuple[float, float]:
    """Mean and half-width of its 95 % Student t interval (a bootstrap of a handful of rounds is too narrow)."""
    n = len(values)
    t = T975.get(n - 1, 2.0 if n <= 30 else 1.96)  # beyond 10 rounds the table's tail is close enough
    return statistics.mean(values), t * statistics.stdev(values) / n**0.5


def print_round(engine: Any, index: int, n: int, run: dict[str, Any], plain: dict[str, Any]) -> None:
    eps = run["episodes"]
    tokens = sum(r.generated_tokens for e in eps for r in e.rows)
    print(f"\nround {index + 1}: {n} AsyncThink episodes in flight, tiny organizer, in-process vLLM (CPU): "
          f"statuses {statuses(eps)}")
    print(f"  episodes/s {n / run['wall_s']:.2f} (wall {run['wall_s']:.1f} s, {tokens} generated tokens, "
          f"{tokens / run['wall_s']:.0f} tok/s)")
    print(f"  plain rows: {plain['requests']} requests, {plain['tokens']} tokens in {plain['wall_s']:.1f} s -> "
          f"{n / plain['wall_s']:.2f} episodes/s, {plain['tokens'] / plain['wall_s']:.0f} tok/s")
    print(f"  AsyncThink / plain throughput: {plain['wall_s'] / run['wall_s']:.3f}")
    print(f"  our process: {run['cpu_s']:.2f} s CPU in {run['wall_s']:.1f} s wall, of which the event-loop thread "
          f"{run['loop_cpu_s']:.2f} s (the rest: vLLM's and ZMQ's threads); engine core {run['core_cpu_s']:.1f} s CPU "
          f"(plain rows: {plain['core_cpu_s']:.1f} s)")
    busy = run["shares"]
    shares = ", ".join(f"{k} {v:.1%}" for k, v in busy.items())
    print(f"  event-loop thread while busy ({run['busy_samples']} samples): {shares}; most common outside ours and "
          f"vLLM's (innermost): {dict(run['where'].most_common(4))}")
    print(f"  our code by function (samples): {dict(run['ours'].most_common(8))}")
    ours = busy.get("asyncthink", 0.0) * run["loop_cpu_s"]
    print(f"  our code: ~{ours:.2f} s CPU = {ours / run['cpu_s']:.1%} of our process's CPU, "
          f"{ours / (run['cpu_s'] + run['core_cpu_s']):.1%} of all CPU (ours + engine core), "
          f"{1e6 * ours / tokens:.1f} us per generated token")
    block = engine.llm.vllm_config.cache_config.block_size
    pc = prefix_cache_share(eps, block)
    print(f"  prefix cache on {pc['resumes']} resumes: {pc['cached']} of {pc['allowed']} cacheable prompt tokens "
          f"(block {block}) = {pc['share']:.3f}")


async def report_single(asy: EpisodeExecutor, seq: EpisodeExecutor, problems: list[dict]) -> dict[str, Any]:
    s_eps, a_eps = await one_at_a_time(seq, asy, problems)
    t = speedup_table(s_eps, a_eps)
    lo, hi = ratio_interval(s_eps, a_eps)
    print(f"\none episode at a time, {len(problems)} problems: sequential {statuses(s_eps)}, "
          f"AsyncThink {statuses(a_eps)}")
    print(f"  wall-clock speedup {t['wall_speedup']:.3f}, critical-path token speedup {t['token_speedup']:.3f}, "
          f"ratio {t['ratio']:.3f} [{lo:.3f}, {hi:.3f}] (95 % paired bootstrap over problems)")
    print(f"  AsyncThink wall {t['asy_wall_s']:.2f} s = critical path at one-stream speed "
          f"({1000 * t['s_per_token']:.2f} ms/token) {t['ideal_s']:.2f} s + resumed requests beyond their tokens "
          f"(prefill of the return, scheduling) {t['resume_excess_s']:.2f} s + from a ready join to the resumed "
          f"request {t['join_s']:.3f} s + the rest (decode slower with workers in the batch) {t['rest_s']:.2f} s")
    print(f"  from a fork to its worker's first request: {t['fork_s']:.3f} s in all")
    return t | {"ratio_low": lo, "ratio_high": hi, "episodes": len(s_eps) + len(a_eps),
                "statuses": dict(Counter(statuses(s_eps)) + Counter(statuses(a_eps)))}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=4,
                        help="Rounds of the batch and its plain rows (a ratio per round, a mean with an interval).")
    parser.add_argument("--single", type=int, default=24, help="Problems run one episode at a time.")
    parser.add_argument("--block-size", type=int, default=None,
                        help="vLLM's KV block size (CPU default 128): a resume recomputes its context's last, "
                             "partial block, so smaller blocks recompute less.")
    args = parser.parse_args(argv)
    if args.rounds < 2:
        parser.error(f"--rounds must be >= 2 (an interval needs two rounds), got {args.rounds}")
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
