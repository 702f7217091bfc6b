"""Serve a model with ``asyncthink serve`` (in-process vLLM) and ask it one question (countdown by default) with
the official OpenAI client; print the answer, the episode's summary and the times (boot, request).

    python scripts/smollm2_serve_check.py --model runs/smollm2/sft
    python scripts/smollm2_serve_check.py --model runs/smollm2/math_rl-s0/final --question "Ann has ..." \
        --max-tokens 192 --max-worker-tokens 64
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

from asyncthink.engines.health import ServerExited, wait_healthy

QUESTION = "Numbers: 3, 5, 7\nTarget: 22\nFind 2 distinct expressions that each equal 22."


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--log", default="runs/smollm2/serve_check.log")
    p.add_argument("--boot-timeout", type=float, default=600)
    p.add_argument("--question", default=QUESTION, help="the user message (default: a countdown question)")
    p.add_argument("--max-tokens", type=int, default=320, help="the organizer's token budget")
    p.add_argument("--max-worker-tokens", type=int, default=128)
    args = p.parse_args()
    from openai import OpenAI

    port, started = _port(), time.perf_counter()
    Path(args.log).parent.mkdir(parents=True, exist_ok=True)
    log = open(args.log, "w")  # noqa: SIM115 - closed below
    proc = subprocess.Popen([sys.executable, "-m", "asyncthink", "serve", "--engine", "vllm", "--model", args.model,
                             "--dtype", "float32", "--max-model-len", "2048", "--served-model-name", "smollm2",
                             "--port", str(port), "--max-tokens", str(args.max_tokens),
                             "--max-worker-tokens", str(args.max_worker_tokens)],
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_healthy(url, args.boot_timeout, proc, args.log, name="asyncthink serve")
        except (ServerExited, TimeoutError) as exc:
            sys.exit(str(exc))
        booted = time.perf_counter()
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=300)
        resp = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": args.question}])
        done = time.perf_counter()
        info = resp.model_extra["asyncthink"]
        choice = resp.choices[0]
        print(json.dumps({"answer_text": choice.message.content, "finish_reason": choice.finish_reason,
                          "usage": resp.usage.model_dump(), "asyncthink": info,
                          "seconds": {"boot": round(booted - started, 1), "request": round(done - booted, 1)}},
                         indent=2, default=str))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


if __name__ == "__main__":
    main()
