"""Throughput and latency of ``asyncthink serve``, and its overhead over calling the runtime directly.

For 1, 16 and 64 concurrent clients, the same requests (question, seed) go
three ways: through the HTTP server as JSON requests, through it as SSE
streams, and straight into ``EpisodeExecutor.run`` with the same
concurrency. Reported: requests/s, p50/p99 latency (and time to the first
content chunk for streams), generated tokens per request (equal across the
three when the episodes are the same), CPU time of this process per request
(the server, or the direct caller; vLLM's engine core is another process)
and of the load generator, and the server's overhead against direct calls.
On a small shared machine wall-clock figures move with other load; the CPU
time per request is the steadier measure of what the server adds.

The server runs in this process on 127.0.0.1; the load generator (aiohttp)
runs in a separate process so its HTTP work does not share the server's event
loop. Engines: ``vllm`` (in-process vLLM on the tiny random model; on that
model most AsyncThink episodes end early in format errors, so a second
workload decodes greedily for a fixed number of tokens) and ``scripted`` (the
package's scripted engine, ``asyncthink.engines.scripted``, with no delay: the runtime and the server are
all the work, so the difference is the server's own cost per request).

    python benchmarks/serve_throughput.py [--engines vllm scripted] [--clients 1 16 64] [--requests 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = "tiny"


@dataclass(frozen=True)
class Workload:
    name: str
    runtime: dict[str, Any]  # ServeConfig.runtime, also the direct executor's RuntimeConfig
    temperature: float


WORKLOADS = {
    "vllm": [
        Workload("asyncthink T=1 (random model: mostly short format-error episodes)",
                 {"mode": "asyncthink", "max_organizer_tokens": 64, "max_worker_tokens": 32}, 1.0),
        Workload("sequential greedy, 64 tokens per request", {"mode": "sequential", "max_organizer_tokens": 64}, 0.0),
    ],
    "scripted": [Workload("asyncthink, 2 forks + 2 joins, 140 tokens per episode", {"mode": "asyncthink"}, 1.0)],
}
SCRIPT = {
    "organizer": "plan <FORK-1>s1</FORK-1> and <FORK-2>s2</FORK-2> think <JOIN-1> then <JOIN-2> so <ANSWER>42</ANSWER>",
    "s1": "a" * 20 + "<RETURN>r1</RETURN>",
    "s2": "b" * 40 + "<RETURN>r2</RETURN>",
}


MIN_REQUESTS = 32  # per point; --requests lowers it for a smoke run


def requests_for(clients: int, least: int = MIN_REQUESTS) -> int:
    return max(least, 4 * clients)


def question(k: int) -> str:
    return f"Use {k % 7 + 1} {k % 5 + 2} {k % 3 + 4} to make {k % 23 + 10}"


# ------------------------------------------------------------------ load generator (separate process)


async def client_main(spec: dict[str, Any]) -> dict[str, Any]:
    import aiohttp

    connector = aiohttp.TCPConnector(limit=spec["clients"])
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        await one_request(session, spec, 0)  # warm the connection path
        todo = iter(range(spec["requests"]))
        results: list[dict[str, Any]] = []
        t0, cpu0 = time.perf_counter(), time.process_time()
        await asyncio.gather(*(client_loop(session, spec, todo, results) for _ in range(spec["clients"])))
        wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    return {"wall_s": wall, "client_cpu_s": cpu, "results": results}


async def client_loop(session, spec, todo, results) -> None:
    for k in todo:
        results.append(await one_request(session, spec, k))


async def one_request(session, spec: dict[str, Any], k: int) -> dict[str, Any]:
    body = {"model": MODEL, "messages": [{"role": "user", "content": spec["questions"][k]}], "seed": k,
            "temperature": spec["temperature"], "stream": spec["stream"]}
    if spec["stream"]:
        body["stream_options"] = {"include_usage": True}
    t0 = time.perf_counter()
    first, episode = None, "none"  # the episode's status, from the response's asyncthink field
    async with session.post(spec["url"] + "/v1/chat/completions", json=body) as resp:
        if not spec["stream"]:
            data = await resp.json()
            tokens = data.get("usage", {}).get("completion_tokens", 0)
            episode = data.get("asyncthink", {}).get("status", episode)
        else:
            tokens = 0
            async for line in resp.content:
                if first is None and b'"content":"' in line and b'"content":""' not in line:
                    first = time.perf_counter() - t0
                if line.startswith(b'data: {"id"') and b'"usage"' in line:
                    tokens = json.loads(line[6:])["usage"]["completion_tokens"]
                if line.startswith(b"data: {") and b'"event":"done"' in line.replace(b" ", b""):
                    episode = json.loads(line[6:])["asyncthink"].get("status", episode)
    return {"status": resp.status, "latency": time.perf_counter() - t0, "ttft": first, "tokens": tokens,
            "episode": episode}


# ------------------------------------------------------------------ server and direct runs (this process)


async def run_clients(url: str, clients: int, stream: bool, questions: list[str], temperature: float,
                      least: int = MIN_REQUESTS) -> dict:
    spec = {"url": url, "clients": clients, "requests": requests_for(clients, least), "stream": stream,
            "questions": questions, "temperature": temperature}
    proc = await asyncio.create_subprocess_exec(sys.executable, __file__, "--client", json.dumps(spec),
                                                stdout=subprocess.PIPE)
    cpu0 = time.process_time()
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"load generator failed with exit code {proc.returncode}")
    # the client's warm-up and start-up are in this window too; both are idle time for the server
    return {**json.loads(out), "server_cpu_s": time.process_time() - cpu0}


async def run_direct(executor, clients: int, questions: list[str], least: int = MIN_REQUESTS) -> dict:
    todo = iter(range(requests_for(clients, least)))
    results: list[dict[str, Any]] = []

    async def loop() -> None:
        for k in todo:
            t0 = time.perf_counter()
            ep = await executor.run({"question": questions[k]}, seed=k, episode_id=f"direct-{k}")
            results.append({"status": 200, "latency": time.perf_counter() - t0, "ttft": None,
                            "tokens": sum(r.generated_tokens for r in ep.rows), "episode": str(ep.status)})

    await executor.run({"question": questions[0]}, seed=0, episode_id="warm")
    t0, cpu0 = time.perf_counter(), time.process_time()
    await asyncio.gather(*(loop() for _ in range(clients)))
    return {"wall_s": time.perf_counter() - t0, "server_cpu_s": time.process_time() - cpu0, "results": results}


def figures(run: dict) -> dict[str, Any]:
    res = run["results"]
    lat = sorted(r["latency"] for r in res)
    ttft = sorted(r["ttft"] for r in res if r["ttft"] is not None)
    return {
        "n": len(res), "errors": sum(r["status"] != 200 for r in res), "rps": len(res) / run["wall_s"],
        "p50": pct(lat, 50) * 1e3, "p99": pct(lat, 99) * 1e3,
        "ttft50": pct(ttft, 50) * 1e3 if ttft else float("nan"),
        "tokens": statistics.mean(r["tokens"] for r in res),
        "cpu_ms": run["server_cpu_s"] / len(res) * 1e3,
        "client_cpu_ms": run.get("client_cpu_s", 0.0) / len(res) * 1e3,
        "statuses": dict(Counter(r["episode"] for r in res)),
    }


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))] if xs else float("nan")


async def bench_workload(engine, workload: Workload, clients_list: list[int], questions: list[str],
                         least: int = MIN_REQUESTS) -> list[dict[str, Any]]:
    """Each client count three ways; prints the table and returns its rows (figures and episode statuses)."""
    from asyncthink.executor import EpisodeExecutor
    from asyncthink.runtime_config import RuntimeConfig
    from asyncthink.serve import ServeConfig, create_app, start_server

    runtime = {**workload.runtime, "temperature": workload.temperature, "wall_time_s": 600.0,
               "prompts": {"style": "compact"}}
    cfg = ServeConfig(runtime=RuntimeConfig(**runtime), limits={"max_concurrent_episodes": 64, "max_queued": 256})
    runner, port = await start_server(create_app(engine, cfg, model_name=MODEL), "127.0.0.1", 0)
    executor = EpisodeExecutor(engine, RuntimeConfig(**runtime))
    print(f"\n== {workload.name}")
    print(f"{'clients':>7} {'path':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ttft50':>7} {'tok/req':>7} "
          f"{'cpu ms/req':>10} {'client cpu':>10} {'err':>4} statuses")
    out = []
    try:
        for clients in clients_list:
            rows = {"direct": figures(await run_direct(executor, clients, questions, least))}
            for stream in (False, True):
                run = await run_clients(f"http://127.0.0.1:{port}", clients, stream, questions, workload.temperature,
                                        least)
                rows["stream" if stream else "json"] = figures(run)
            for path, f in rows.items():
                print(f"{clients:>7} {path:>7} {f['rps']:>8.1f} {f['p50']:>8.1f} {f['p99']:>8.1f} "
                      f"{f['ttft50']:>7.1f} {f['tokens']:>7.1f} {f['cpu_ms']:>10.2f} {f['client_cpu_ms']:>10.2f} "
                      f"{f['errors']:>4} {f['statuses']}")
                out.append({"workload": workload.name, "clients": clients, "path": path, **f})
            print_overhead(clients, rows)
    finally:
        await runner.cleanup()
    return out


def print_overhead(clients: int, rows: dict[str, dict[str, float]]) -> None:
    d = rows["direct"]
    parts = [f"{path} p50 {f['p50'] - d['p50']:+.1f} ms, {f['rps'] / d['rps']:.2f}x req/s, "
             f"{f['cpu_ms'] - d['cpu_ms']:+.2f} server-CPU ms/req" for path, f in rows.items() if path != "direct"]
    print(f"{clients:>7} vs direct: " + "; ".join(parts))


async def make_engine(kind: str, model_dir: str | None):
    if kind == "scripted":
        from asyncthink.engines.scripted import ScriptedEngine

        scripts = {"s1": SCRIPT["s1"], "s2": SCRIPT["s2"]}
        return ScriptedEngine(scripts, default=SCRIPT["organizer"])
    from asyncthink.engines.vllm_engine import VLLMEngine
    from asyncthink.tiny_model import build_tiny_model

    path = model_dir or str(build_tiny_model(Path(tempfile.mkdtemp(prefix="asyncthink-bench-")) / "model", seed=0))
    return VLLMEngine.create(path, dtype="float32", max_model_len=2048, seed=0, kv_cache_gib=1)


async def main(args: argparse.Namespace, engines: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Every workload of every engine kind in ``args.engines``; ``engines`` (kind -> engine) lends engines that
    the caller owns (they are not closed), the rest are built here. Returns every row of every table."""
    questions = [question(k) for k in range(requests_for(max(args.clients), args.requests))]
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"machine: {os.cpu_count()} CPU cores, load average {load} before the run; clients run in a separate "
          f"process; requests per point: {[requests_for(c, args.requests) for c in args.clients]}")
    rows = []
    for kind in args.engines:
        lent = (engines or {}).get(kind)
        engine = lent or await make_engine(kind, args.model)
        print(f"\n##### engine: {kind}")
        try:
            for workload in WORKLOADS[kind]:
                rows += [{"engine": kind, **r} for r in await bench_workload(engine, workload, args.clients,
                                                                             questions, args.requests)]
        finally:
            if lent is None:
                await engine.close()
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--engines", nargs="+", default=["vllm", "scripted"], choices=["vllm", "scripted"])
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--requests", type=int, default=MIN_REQUESTS,
                        help="Requests per point at least (each point sends max(this, 4 x clients)).")
    parser.add_argument("--model", default=None, help="Model folder (default: build the tiny model).")
    parser.add_argument("--client", default=None, help=argparse.SUPPRESS)  # internal: run the load generator
    return parser.parse_args(argv)


if __name__ == "__main__":
    args = parse_args()
    if args.client:
        print(json.dumps(asyncio.run(client_main(json.loads(args.client)))))
    else:
        asyncio.run(main(args))
