"""``kill -9`` of ``asyncthink serve`` on in-process vLLM leaves no process behind (real vLLM, real HTTP)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from asyncthink.engines.health import wait_healthy
from asyncthink.engines.lifetime import _process_table, descendants
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def test_sigkill_of_serve_leaves_no_descendant(tiny_model_dir, tmp_path):
    port = free_port()
    cmd = [sys.executable, "-m", "asyncthink", "serve", "--engine", "vllm", "--model", str(tiny_model_dir),
           "--dtype", "float32", "--max-model-len", "1024", "--port", str(port), "--prompt-style", "compact"]
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with open(tmp_path / "serve.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_healthy(f"http://127.0.0.1:{port}", 300, proc, tmp_path / "serve.log", name="asyncthink serve")
        table = _process_table()
        tree = descendants({proc.pid: table[proc.pid][1]}, table)
        assert len(tree) >= 3  # serve, vLLM's EngineCore (and its worker), the watchdog
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        deadline = time.time() + 15
        while time.time() < deadline and (alive := descendants(tree, _process_table())):
            time.sleep(0.25)
        assert not alive, f"survived the SIGKILL of serve: {sorted(alive)}"
    finally:
        if proc.poll() is None:
            proc.kill()
        for pid in descendants(tree if "tree" in locals() else {}, _process_table()):
            os.kill(pid, signal.SIGKILL)
