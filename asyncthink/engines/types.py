"""Typed requests and responses of the token-level engine interface (DESIGN section 7).

A request is prompt token ids plus ``SamplingParams``. A response is a stream
of ``Delta`` items (new token ids and their sampling logprobs); the last one
carries ``Final``: why generation ended, the stop that matched, and how many
prompt tokens the engine served from its prefix cache. Failures raise
``EngineError`` with an ``EngineErrorKind``, never a bare exception.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from asyncthink.config_io import require


class FinishReason(StrEnum):
    """Why a request ended."""

    STOP = "stop"  # end of sequence, a stop token id or a stop string
    LENGTH = "length"  # max_tokens or the model's context
    ABORT = "abort"  # cancelled by the caller
    ERROR = "error"  # the engine failed


class EngineErrorKind(StrEnum):
    """Classified engine failures, so callers can tell retryable from fatal."""

    CONNECTION = "connection"  # server unreachable or connection dropped
    TIMEOUT = "timeout"  # no response within the configured time
    CONTEXT_LENGTH = "context_length"  # prompt does not fit the model's context
    BAD_REQUEST = "bad_request"  # the engine rejected the request (4xx)
    NOT_FOUND = "not_found"  # a server has no such path or model (404): a wrong base URL or model, never retried
    SERVER = "server"  # the engine failed (5xx, dead engine process)
    CLOSED = "closed"  # the engine was shut down
    ABORTED = "aborted"  # the engine ended a request itself (finish reason ``abort``: preempted, aborted elsewhere)


class EngineError(RuntimeError):
    """A classified failure of one request; ``partial_tokens`` arrived before it."""

    def __init__(self, kind: EngineErrorKind, message: str, partial_tokens: int = 0) -> None:
        super().__init__(f"[{kind}] {message}")
        self.kind = kind
        self.partial_tokens = partial_tokens


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings shared by every engine."""

    max_tokens: int = 256
    """Upper bound on generated tokens; engines also clamp it to the model's context."""
    temperature: float = 1.0
    """0 means greedy."""
    top_p: float = 1.0
    """Nucleus sampling mass in (0, 1]."""
    top_k: int = 0
    """Keep the k most likely tokens; 0 disables."""
    seed: int | None = None
    """Per-request seed for reproducible sampling."""
    stop_token_ids: tuple[int, ...] = ()
    """Generation ends after any of these tokens (the token is returned). EOS always stops."""
    stop: tuple[str, ...] = ()
    """Generation ends at the token that completes any of these strings (the token is returned)."""
    logprobs: bool = True
    """Return the logprob of each sampled token under the distribution it was sampled from."""

    def __post_init__(self) -> None:
        if self.max_tokens >= 1 and self.temperature >= 0 and 0 < self.top_p <= 1 and self.top_k >= 0:
            return  # every request builds one: the messages are formatted only when a check fails
        require(
            (self.max_tokens >= 1, f"max_tokens must be >= 1, got {self.max_tokens}"),
            (self.temperature >= 0, f"temperature must be >= 0, got {self.temperature}"),
            (0 < self.top_p <= 1, f"top_p must be in (0, 1], got {self.top_p}"),
            (self.top_k >= 0, f"top_k must be >= 0, got {self.top_k}"),
        )


@dataclass(frozen=True)
class GenerateRequest:
    """One generation: prompt ids, sampling, and an id unique among in-flight requests."""

    prompt_ids: list[int]
    sampling: SamplingParams
    request_id: str


@dataclass
class Final:
    """How a request ended (on the last ``Delta``)."""

    finish_reason: FinishReason
    stop: int | str | None = None
    """The stop token id or stop string that matched; the EOS id when it ended on EOS."""
    cached_tokens: int | None = None
    """Prompt tokens served from the prefix cache, when the engine can tell."""
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass
class Delta:
    """Newly generated tokens; ``final`` is set on the last delta of a request."""

    token_ids: list[int] = field(default_factory=list)
    logprobs: list[float] | None = None
    final: Final | None = None
