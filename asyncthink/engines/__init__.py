"""Engines: one async token-level interface over vLLM, OpenAI-compatible HTTP and transformers."""

from asyncthink.engines.base import Engine
from asyncthink.engines.factory import EngineConfig, EngineKind, build_engine
from asyncthink.engines.types import (
    Delta,
    EngineError,
    EngineErrorKind,
    Final,
    FinishReason,
    GenerateRequest,
    SamplingParams,
)

__all__ = [
    "Delta", "Engine", "EngineConfig", "EngineError", "EngineErrorKind", "EngineKind", "Final", "FinishReason",
    "GenerateRequest", "SamplingParams", "build_engine",
]
