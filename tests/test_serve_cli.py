"""``asyncthink serve`` as a real process: it answers the official client, then shuts down cleanly on SIGTERM."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from asyncthink.engines.health import wait_healthy
from tests.conftest import free_port

pytestmark = pytest.mark.slow


def test_serve_command_on_the_transformers_engine(tiny_model_dir, tmp_path):
    from openai import OpenAI

    port, log = free_port(), tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "asyncthink", "serve", "--engine", "hf", "--model", str(tiny_model_dir),
           "--dtype", "float32", "--served-model-name", "tiny", "--port", str(port), "--prompt-style", "compact",
           "--max-tokens", "24", "--max-worker-tokens", "16", "--set", "limits.max_concurrent_episodes=4"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, 180, proc, log, name="asyncthink serve")
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        resp = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "2 + 2?"}])
        assert resp.model_extra["asyncthink"]["organizer_tokens"] <= 24 and resp.usage.completion_tokens > 0
        chunks = list(client.completions.create(model="tiny", prompt="2 + 2?", stream=True))
        assert chunks[-1].model_extra["asyncthink"]["event"] == "done"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        assert "shutting down" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
