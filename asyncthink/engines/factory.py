"""Build any engine from one config; every CLI command goes through ``build_engine``."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from asyncthink.config_io import require
from asyncthink.engines.base import Engine
from asyncthink.engines.upstream import normalize_base_url


class EngineKind(StrEnum):
    VLLM = "vllm"
    OPENAI = "openai"
    HF = "hf"


@dataclass
class EngineConfig:
    """Which engine to run and how."""

    kind: EngineKind = EngineKind.VLLM
    """``vllm`` (in-process AsyncLLM), ``openai`` (HTTP servers) or ``hf`` (transformers)."""
    model: str | None = None
    """Model folder or hub name. For ``openai``, the served model name (asked from the server if unset)."""
    base_urls: list[str] = field(default_factory=list)
    """``openai`` only: server base URLs, as the server root or ending in ``/v1`` (``http://127.0.0.1:8000`` and
    ``http://127.0.0.1:8000/v1`` are the same server); stored as the root."""
    tokenizer: str | None = None
    """Tokenizer folder or name; defaults to ``model``."""
    dtype: str = "auto"
    """Weights dtype for ``vllm`` and ``hf`` (``auto``, ``float32``, ``bfloat16``)."""
    max_model_len: int | None = None
    """Context length; defaults to the model's."""
    device: str = "cpu"
    """``hf`` only: ``cpu`` or ``cuda``."""
    seed: int = 0
    """Engine-level seed (requests carry their own seeds too)."""
    kv_cache_gib: int | None = None
    """``vllm`` on CPU: KV cache size in whole GiB (sets ``VLLM_CPU_KVCACHE_SPACE``)."""
    enforce_eager: bool = True
    """``vllm``: skip graph compilation (starts in ~30 s instead of ~90 s on CPU)."""
    gpu_memory_utilization: float = 0.85
    """``vllm`` on GPU: fraction of GPU memory the engine may take."""
    max_batch: int = 64
    """``hf``: most requests decoded together."""
    connect_timeout_s: float = 10.0
    """``openai``: seconds to connect."""
    max_connections: int = 0
    """``openai``: streams open at once over all servers, in each process; 0 for no limit (the rest wait)."""
    read_timeout_s: float = 300.0
    """``openai``: seconds without data before a request fails."""
    retries: int = 3
    """``openai``: retries on connection errors and 5xx before the first token."""
    api_key: str | None = None
    """``openai``: bearer token."""
    weights_dir: str | None = None
    """``openai``: folder shared with the servers, for RL weight sync (servers need VLLM_SERVER_DEV_MODE=1)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Extra keyword arguments for the backend (vLLM engine args, for example)."""

    def __post_init__(self) -> None:
        self.kind = EngineKind(self.kind)
        self.base_urls = [normalize_base_url(url) for url in self.base_urls]
        require(
            (
                not (self.kind == EngineKind.OPENAI and not self.base_urls),
                "engine kind 'openai' needs base_urls (e.g. ['http://127.0.0.1:8000'])",
            ),
            (
                not (self.kind != EngineKind.OPENAI and not self.model),
                f"engine kind {self.kind.value!r} needs a model path or name, got {self.model!r}",
            ),
            (self.max_connections >= 0, f"max_connections must be >= 0 (0: no limit), got {self.max_connections!r}"),
        )


async def build_engine(cfg: EngineConfig) -> Engine:
    """Start the engine ``cfg`` describes (vLLM takes ~30 s on CPU)."""
    if cfg.kind == EngineKind.VLLM:
        from asyncthink.engines.vllm_engine import VLLMEngine

        return VLLMEngine.create(
            cfg.model, dtype=cfg.dtype, max_model_len=cfg.max_model_len, seed=cfg.seed,
            enforce_eager=cfg.enforce_eager, kv_cache_gib=cfg.kv_cache_gib,
            gpu_memory_utilization=cfg.gpu_memory_utilization, **cfg.extra,
        )
    if cfg.kind == EngineKind.HF:
        from asyncthink.engines.hf_engine import HFEngine

        return HFEngine.from_pretrained(
            cfg.model, device=cfg.device, dtype=cfg.dtype, max_batch=cfg.max_batch, max_model_len=cfg.max_model_len
        )
    from asyncthink.engines.openai_engine import HTTPOptions, OpenAIEngine

    options = HTTPOptions(cfg.connect_timeout_s, cfg.read_timeout_s, cfg.retries, api_key=cfg.api_key,
                          weights_dir=cfg.weights_dir, max_connections=cfg.max_connections)
    return await OpenAIEngine.create(
        cfg.base_urls, cfg.model, cfg.tokenizer, max_model_len=cfg.max_model_len, options=options
    )
