"""The engine interface the runtime sees: async, token-level, streaming, cancellable.

``generate`` is an async generator of ``Delta``; closing it early (``aclose``,
``break`` inside ``contextlib.aclosing``, or cancelling the task that iterates
it) aborts the request and frees the engine's slot. ``stream_to`` is the same
stream pushed into a callback: an engine with a batched output loop calls it
from that loop, so a consumer that only appends tokens costs no task switch per
delta (the runtime's hot path at thousands of streams). Each engine owns the
tokenizer the runtime uses to build prompts and decode text for display and
parsing; ids are never re-tokenized.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from asyncthink.engines.types import (
    Delta,
    EngineError,
    EngineErrorKind,
    Final,
    GenerateRequest,
    SamplingParams,
)


class Engine(ABC):
    """An inference backend behind one async token-level interface."""

    kind: str = ""
    tokenizer: Any = None
    max_model_len: int = 0

    @abstractmethod
    def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        """Stream the completion of ``request``; the last ``Delta`` carries ``final``."""

    async def stream_to(self, request: GenerateRequest, on_delta: Callable[[Delta], bool]) -> None:
        """Stream ``request`` into ``on_delta``, called synchronously once per delta; return when it has ended.

        ``on_delta`` returns True to stop early (the request is aborted, as when ``generate`` is closed); an
        exception it raises aborts the request too and comes out of this call. Cancelling the caller aborts
        the request. Engines whose outputs arrive in batches override this to call ``on_delta`` from their
        own output loop; this default iterates ``generate``.
        """
        from contextlib import aclosing

        async with aclosing(self.generate(request)) as stream:
            async for delta in stream:
                if on_delta(delta):
                    return

    async def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Replace the served weights (RL weight sync) and drop cached prefixes."""
        raise EngineError(EngineErrorKind.BAD_REQUEST, f"the {self.kind} engine cannot load weights")

    async def ready(self) -> bool:
        """Whether the engine can serve requests now (a server's ``/health`` reports it)."""
        return True

    def not_ready_reason(self) -> str | None:
        """Why the last ``ready`` check failed, in one line (None when it did not, or the engine cannot say)."""
        return None

    async def close(self) -> None:  # noqa: B027 - engines without resources need not override it
        """Abort in-flight requests and release processes, sessions and memory."""

    async def __aenter__(self) -> Engine:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def eos_token_id(self) -> int | None:
        return getattr(self.tokenizer, "eos_token_id", None)


def clamp_to_context(request: GenerateRequest, max_model_len: int) -> SamplingParams:
    """Sampling with max_tokens cut to what fits; a prompt that does not fit is an error."""
    room = max_model_len - len(request.prompt_ids)
    if room < 1:
        raise EngineError(
            EngineErrorKind.CONTEXT_LENGTH,
            f"prompt of {len(request.prompt_ids)} tokens leaves no room in the {max_model_len}-token context",
        )
    if request.sampling.max_tokens <= room:
        return request.sampling
    from dataclasses import replace

    return replace(request.sampling, max_tokens=room)


async def generate_all(engine: Engine, request: GenerateRequest) -> tuple[list[int], list[float], Final]:
    """Run a request to the end; return all ids, the logprobs the engine sent, and the final info."""
    from contextlib import aclosing

    ids: list[int] = []
    logprobs: list[float] = []
    final: Final | None = None
    async with aclosing(engine.generate(request)) as stream:
        async for delta in stream:
            ids += delta.token_ids
            logprobs += delta.logprobs or []  # never a made-up number: missing ones stay missing
            final = delta.final or final
    if final is None:
        raise EngineError(EngineErrorKind.SERVER, f"request {request.request_id} ended without a final result")
    return ids, logprobs, final
