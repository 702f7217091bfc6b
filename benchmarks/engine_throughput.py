"""Engine throughput: generated tokens/s for 1, 4, 16 and 64 concurrent streams, per engine.

Builds the tiny model (or takes ``--model``), then measures the in-process
vLLM engine, the HTTP engine against a local vLLM OpenAI server, and the
transformers engine, each on the same prompts and lengths. The HTTP figures
beside the in-process ones are the cost of going through the server.

    python benchmarks/engine_throughput.py [--model DIR] [--tokens 128] [--engines vllm openai hf]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")

from asyncthink.engines import GenerateRequest, SamplingParams  # noqa: E402
from asyncthink.engines.base import generate_all  # noqa: E402

CONCURRENCY = (1, 4, 16, 64)


async def throughput(engine, streams: int, tokens: int, tag: str) -> float:
    prompts = [[5 + (i * 13 + k) % 400 for k in range(64)] for i in range(streams)]
    reqs = [GenerateRequest(p, SamplingParams(max_tokens=tokens, seed=i, stop_token_ids=()), f"{tag}-{streams}-{i}")
            for i, p in enumerate(prompts)]
    t0 = time.perf_counter()
    outs = await asyncio.gather(*[generate_all(engine, r) for r in reqs])
    elapsed = time.perf_counter() - t0
    return sum(len(ids) for ids, _, _ in outs) / elapsed


def start_server(model: str) -> tuple[subprocess.Popen, str]:
    from tests.conftest import VLLMServer

    server = VLLMServer(Path(model), Path(tempfile.mkdtemp()) / "server.log")
    return server, server.wait_ready()


async def bench_engine(kind: str, model: str, tokens: int) -> dict[int, float]:
    from asyncthink.engines import EngineConfig, build_engine

    server = None
    if kind == "openai":
        server, url = start_server(model)
        cfg = EngineConfig(kind="openai", base_urls=[url], tokenizer=model)
    else:
        cfg = EngineConfig(kind=kind, model=model, dtype="float32", max_model_len=2048, kv_cache_gib=2)
    engine = await build_engine(cfg)
    try:
        await throughput(engine, 2, 8, f"{kind}-warmup")
        return {n: await throughput(engine, n, tokens, kind) for n in CONCURRENCY}
    finally:
        await engine.close()
        if server is not None:
            server.stop()


async def main(args: argparse.Namespace) -> None:
    model = args.model
    if model is None:
        from asyncthink.tiny_model import build_tiny_model

        model = str(build_tiny_model(Path(tempfile.mkdtemp()) / "tiny", seed=0))
    results = {}
    for kind in args.engines:
        results[kind] = await bench_engine(kind, model, args.tokens)
        print(f"{kind}: " + ", ".join(f"{n} streams {tps:,.0f} tok/s" for n, tps in results[kind].items()), flush=True)
    print(f"\ngenerated tokens/s ({args.tokens} tokens per stream, model {model})")
    print(f"{'streams':>8} " + " ".join(f"{k:>10}" for k in results))
    for n in CONCURRENCY:
        print(f"{n:>8} " + " ".join(f"{results[k][n]:>10,.0f}" for k in results))
    if "vllm" in results and "openai" in results:
        print("\nHTTP engine / in-process vLLM: " + ", ".join(
            f"{n}: {results['openai'][n] / results['vllm'][n]:.2f}x" for n in CONCURRENCY))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="Model folder (default: build the tiny model).")
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--engines", nargs="+", default=["vllm", "openai", "hf"])
    asyncio.run(main(parser.parse_args()))
