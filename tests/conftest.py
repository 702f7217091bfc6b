"""Shared fixtures: one tiny model, one in-process vLLM engine and one vLLM server per test session.

Starting vLLM on CPU takes ~30 s, so the engines are session-scoped and every
async test runs on the one session event loop (pyproject sets the loop scope).
The OpenAI-compatible server is launched as soon as the tiny model exists, in
the background, so it boots while other tests run.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

SERVER_BOOT_TIMEOUT_S = 300


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class VLLMServer:
    """A real ``vllm.entrypoints.openai.api_server`` subprocess on 127.0.0.1."""

    def __init__(self, model_dir: Path, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--host", "127.0.0.1", "--port", str(self.port), "--dtype", "float32", "--max-model-len", "2048",
            "--enforce-eager", "--logprobs-mode", "processed_logprobs", "--enable-prompt-tokens-details",
            "--enable-prefix-caching", "--seed", "0", "--no-enable-chunked-prefill",
        ]
        env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_SERVER_DEV_MODE": "1"}  # dev: weight reload
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.log_path = log_path

    def wait_ready(self) -> str:
        from asyncthink.engines.health import wait_healthy

        wait_healthy(self.url, SERVER_BOOT_TIMEOUT_S, self.proc, self.log_path, name="vLLM server")
        return self.url

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


_SERVER: VLLMServer | None = None


def _wants(session: pytest.Session, fixture: str) -> bool:
    return any(fixture in getattr(item, "fixturenames", ()) for item in session.items)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory, request) -> Path:
    """A tiny random Llama + tokenizer (float32, head_dim 64), built once per session."""
    global _SERVER
    from asyncthink.tiny_model import build_tiny_model

    path = build_tiny_model(tmp_path_factory.mktemp("tiny") / "model", seed=0)
    if _wants(request.session, "vllm_server"):
        _SERVER = VLLMServer(path, tmp_path_factory.mktemp("logs") / "vllm_server.log")
        request.addfinalizer(_SERVER.stop)
    return path


@pytest.fixture(scope="session")
def vllm_server(tiny_model_dir) -> str:
    """Base URL of the session's vLLM OpenAI-compatible server."""
    assert _SERVER is not None
    return _SERVER.wait_ready()


@pytest.fixture(scope="session")
async def vllm_engine(tiny_model_dir):
    """The session's in-process vLLM engine."""
    from asyncthink.engines.vllm_engine import VLLMEngine

    engine = VLLMEngine.create(str(tiny_model_dir), dtype="float32", max_model_len=2048, seed=0, kv_cache_gib=1)
    yield engine
    await engine.close()


@pytest.fixture(scope="session")
async def http_engine(vllm_server, tiny_model_dir):
    """The HTTP engine on the session's vLLM server."""
    from asyncthink.engines.openai_engine import OpenAIEngine

    engine = await OpenAIEngine.create([vllm_server], tokenizer=str(tiny_model_dir))
    yield engine
    await engine.close()


@pytest.fixture(scope="session")
async def hf_engine(tiny_model_dir):
    """The session's transformers engine on the same tiny model."""
    from asyncthink.engines.hf_engine import HFEngine

    engine = HFEngine.from_pretrained(str(tiny_model_dir), dtype="float32")
    yield engine
    await engine.close()
