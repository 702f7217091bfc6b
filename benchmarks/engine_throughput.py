"""Engine throughput: generated tokens/s for 1, 4, 16 and 64 concurrent streams, per engine.

Builds the tiny model (or takes ``--model``), then measures the in-process
vLLM engine, the HTTP engine against a local vLLM OpenAI server, and the
transformers engine, each on the same prompts and lengths. The HTTP figures
beside the in-process ones are the cost of going through the server.

    python benchmarks/engine_throughput.py [--model DIR] [--tokens 128] [--engines vllm openai hf]
                                           [--concurrency 1 4 16 64] [--url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

from asyncthink.engines import GenerateRequest, SamplingParams  # noqa: E402
from asyncthink.engines.base import generate_all  # noqa: E402

CONCURRENCY = (1, 4, 16, 64)
SERVER_BOOT_TIMEOUT_S = 300


async def throughput(engine, streams: int, tokens: int, tag: str) -> float:
    prompts = [[5 + (i * 13 + k) % 400 for k in range(64)] for i in range(streams)]
    reqs = [GenerateRequest(p, SamplingParams(max_tokens=tokens, seed=i, stop_token_ids=()), f"{tag}-{streams}-{i}")
            for i, p in enumerate(prompts)]
    t0 = time.perf_counter()
    outs = await asyncio.gather(*[generate_all(engine, r) for r in reqs])
    elapsed = time.perf_counter() - t0
    return sum(len(ids) for ids, _, _ in outs) / elapsed


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    """A stock vLLM OpenAI server on the model, on a free local port, once its ``/health`` answers."""
    from asyncthink.engines.health import wait_healthy

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log, url = Path(tempfile.mkdtemp()) / "server.log", f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", model, "--host", "127.0.0.1",
           "--port", str(port), "--dtype", "float32", "--max-model-len", "2048", "--enforce-eager",
           "--logprobs-mode", "processed_logprobs", "--enable-prefix-caching", "--seed", "0",
           "--no-enable-chunked-prefill"]  # chunked prefill off: vLLM-CPU fails seeded chunked prefills
    with open(log, "w") as out:
        server = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                                  env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"})
    try:
        wait_healthy(url, SERVER_BOOT_TIMEOUT_S, server, log, name="vLLM server")
    except BaseException:
        server.terminate()
        raise
    return server, url


async def bench_engine(kind: str, model: str, tokens: int, url: str | None = None,
                       concurrency: tuple[int, ...] = CONCURRENCY) -> dict[int, float]:
    """Tokens/s at each concurrency on a fresh engine of ``kind``; ``openai`` uses the server at ``url``, or
    starts one on ``model`` for the run."""
    from asyncthink.engines import EngineConfig, build_engine

    server = None
    if kind == "openai":
        if url is None:
            server, url = start_server(model)
        cfg = EngineConfig(kind="openai", base_urls=[url], tokenizer=model)
    else:
        cfg = EngineConfig(kind=kind, model=model, dtype="float32", max_model_len=2048, kv_cache_gib=2)
    engine = await build_engine(cfg)
    try:
        return await measure(engine, kind, tokens, concurrency)
    finally:
        await engine.close()
        if server is not None:
            server.terminate()
            server.wait(timeout=60)


async def measure(engine: Any, kind: str, tokens: int, concurrency: tuple[int, ...]) -> dict[int, float]:
    await throughput(engine, 2, min(8, tokens), f"{kind}-warmup")
    return {n: await throughput(engine, n, tokens, kind) for n in concurrency}


async def main(args: argparse.Namespace, engines: dict[str, Any] | None = None) -> dict[str, dict[int, float]]:
    """Tokens/s per engine kind and concurrency; ``engines`` (kind -> engine) lends engines the caller owns."""
    model = args.model
    if model is None:
        from asyncthink.tiny_model import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", seed=0))
    concurrency, results = tuple(args.concurrency), {}
    for kind in args.engines:
        lent = (engines or {}).get(kind)
        results[kind] = (await measure(lent, kind, args.tokens, concurrency) if lent is not None
                         else await bench_engine(kind, model, args.tokens, args.url, concurrency))
        print(f"{kind}: " + ", ".join(f"{n} streams {tps:,.0f} tok/s" for n, tps in results[kind].items()), flush=True)
    print(f"\ngenerated tokens/s ({args.tokens} tokens per stream, model {model})")
    print(f"{'streams':>8} " + " ".join(f"{k:>10}" for k in results))
    for n in concurrency:
        print(f"{n:>8} " + " ".join(f"{results[k][n]:>10,.0f}" for k in results))
    if "vllm" in results and "openai" in results:
        print("\nHTTP engine / in-process vLLM: " + ", ".join(
            f"{n}: {results['openai'][n] / results['vllm'][n]:.2f}x" for n in concurrency))
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model folder (default: build the tiny model).")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--engines", nargs="+", default=["vllm", "openai", "hf"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=list(CONCURRENCY), help="Streams at once.")
    parser.add_argument("--url", default=None,
                        help="A running vLLM OpenAI server on the same model for the openai engine (default: start "
                             "one for the run).")
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
