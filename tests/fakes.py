"""Test-only engines and helpers; the scripted engine and character tokenizer are public.

``CharTokenizer``, ``ScriptedEngine`` and ``EOS`` live in
``asyncthink.engines.scripted`` (benchmarks and demos use them too) and are
re-exported here so tests import them from one place. What stays here is for
tests alone: ``loop_gaps`` measures how long the event loop was held, for tests
that something slow runs off it, and ``OutcomeEngine`` gives RL tests organizer
outcomes that vary with the request seed under a real tokenizer, and
``LoopbackServer`` puts a fake HTTP server on a free loopback port.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from asyncthink.engines.base import Engine
from asyncthink.engines.scripted import EOS, CharTokenizer, ScriptedEngine, joins_done, split_after_joins
from asyncthink.engines.types import Delta, Final, FinishReason, GenerateRequest

__all__ = ["EOS", "CharTokenizer", "LoopbackServer", "OutcomeEngine", "ScriptedEngine", "loop_gaps"]


@asynccontextmanager
async def loop_gaps(every_s: float = 0.005) -> AsyncIterator[list[float]]:
    """The gaps between wake-ups of a task that sleeps ``every_s`` at a time, while the block runs: a gap much
    longer than ``every_s`` is the event loop held by something else."""
    gaps: list[float] = []

    async def tick() -> None:
        loop = asyncio.get_running_loop()
        last = loop.time()
        while True:
            await asyncio.sleep(every_s)
            gaps.append(loop.time() - last)
            last = loop.time()

    ticker = asyncio.create_task(tick())
    try:
        yield gaps
    finally:
        ticker.cancel()
        await asyncio.gather(ticker, return_exceptions=True)


class OutcomeEngine(Engine):
    """For RL tests: a real tokenizer, and organizer outcomes that vary with the request seed.

    Organizer requests (recognised by ``organizer_marker`` in the prompt) answer with one of
    ``outcomes`` chosen by ``seed % len(outcomes)``; an outcome may fork ``<FORK-1>w</FORK-1>``
    and join it; the worker writes ``worker_text``. Logprobs are a fixed plausible value.
    """

    kind = "outcome"

    def __init__(self, tokenizer, outcomes: list[str], worker_text: str = "ok<RETURN>ok</RETURN>",
                 organizer_marker: str = "organizer", delay_s: float = 0.0) -> None:
        self.tokenizer, self.outcomes, self.worker_text = tokenizer, outcomes, worker_text
        self.marker, self.delay_s, self.max_model_len = organizer_marker, delay_s, 100_000

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        text = self.tokenizer.decode(request.prompt_ids, skip_special_tokens=False)
        if self.marker in text:
            text = text.rsplit("<|im_start|>assistant", 1)[-1]  # the prompt itself may mention the tags
            done = joins_done(text)
            if done == 0:
                script = self.outcomes[(request.sampling.seed or 0) % len(self.outcomes)]
            else:  # a resumed organizer: continue the outcome whose first segment it wrote
                script = next(o for o in self.outcomes if split_after_joins(o)[0] in text)
            segments = split_after_joins(script)
            body = segments[done] if done < len(segments) else ""
        else:
            body = self.worker_text
        ids = self.tokenizer.encode(body, add_special_tokens=False)[: request.sampling.max_tokens]
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        final = Final(FinishReason.STOP, ids[-1] if ids else None, 0, len(request.prompt_ids), len(ids))
        yield Delta(ids, [-1.0] * len(ids), final)


class LoopbackServer:
    """An aiohttp app on a free loopback port for the length of an ``async with``; subclasses add routes."""

    def __init__(self) -> None:
        from tests.conftest import free_port

        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"

    def routes(self, app: Any) -> None:
        raise NotImplementedError

    async def __aenter__(self):
        from aiohttp import web

        app = web.Application()
        self.routes(app)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.runner.cleanup()
