"""Turn written traces into episode records by replaying them through the real executor.

A synthesized (or teacher-written) trace is text: the organizer's generated
text with ``<JOIN-i>`` where it waits, and each worker's text. ``ReplayEngine``
serves those texts as if a model generated them: a request is matched to its
row by prompt, and it emits that row's next segment (up to and including the
next ``<JOIN-i>``). Worker returns must not contain ``</JOIN-``. Running ``EpisodeExecutor`` on it yields exactly the
record inference would produce for the same text: the same prompt ids, the
same appended ids after each join, the same masks, forks and joins. SFT rows
built from these records therefore match inference token for token, and a
trace the runtime rejects (a format error) or the task scores below 1 is
dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from asyncthink.engines.base import Engine
from asyncthink.engines.scripted import joins_done, split_after_joins
from asyncthink.engines.types import Delta, Final, FinishReason, GenerateRequest
from asyncthink.episode import Episode
from asyncthink.executor import EpisodeExecutor
from asyncthink.prompts import render, worker_messages
from asyncthink.runtime_config import RuntimeConfig


class ReplayEngine(Engine):
    """Serves scripted row texts, keyed by the row's prompt ids; one engine per episode."""

    kind = "replay"

    def __init__(self, tokenizer: Any, scripts: dict[tuple[int, ...], str], max_model_len: int = 1_000_000) -> None:
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self._segments = {k: [self._encode(s) for s in split_after_joins(v) if s] for k, v in scripts.items()}

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))

    def _row_key(self, prompt_ids: list[int]) -> tuple[int, ...] | None:
        best = None
        for key in self._segments:
            if len(key) <= len(prompt_ids) and tuple(prompt_ids[: len(key)]) == key:
                best = key if best is None or len(key) > len(best) else best
        return best

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        key = self._row_key(request.prompt_ids)
        if key is None:
            ids: list[int] = [self.tokenizer.eos_token_id]  # an unscripted row ends at once (a format error)
        else:
            # a row resumed after k joins carries k close tags the runtime appended; rows with the
            # same prompt (two workers given the same sub-query) each start at segment 0
            tail = self.tokenizer.decode(request.prompt_ids[len(key):], skip_special_tokens=False)
            n = joins_done(tail)
            segments = self._segments[key]
            ids = segments[n] if n < len(segments) else [self.tokenizer.eos_token_id]
        ids = ids[: request.sampling.max_tokens]
        await asyncio.sleep(0)
        reason = FinishReason.STOP if len(ids) < request.sampling.max_tokens else FinishReason.LENGTH
        yield Delta(list(ids), [0.0] * len(ids), Final(reason, ids[-1] if ids else None, 0, len(request.prompt_ids),
                                                        len(ids)))


async def replay_episode(
    tokenizer: Any,
    runtime: RuntimeConfig,
    problem: dict[str, Any],
    organizer_text: str,
    worker_texts: dict[str, str] | None = None,
    task: Any = None,
    episode_id: str = "0",
) -> Episode:
    """The record the runtime produces when the organizer writes ``organizer_text`` and the worker
    forked with sub-query ``q`` writes ``worker_texts[q]``."""
    instruction = task.instruction() if task else ""
    question = str(problem["question"])
    messages = runtime.mode.top_messages(runtime.prompts, question, instruction, runtime.capacity)
    scripts = {tuple(render(tokenizer, messages, runtime.prompts)): organizer_text}
    worker_instruction = task.worker_instruction() if task else ""
    for subquery, text in (worker_texts or {}).items():
        wm = worker_messages(runtime.prompts, subquery, question, worker_instruction, runtime.may_fork(1),
                             runtime.capacity)
        scripts[tuple(render(tokenizer, wm, runtime.prompts))] = text
    engine = ReplayEngine(tokenizer, scripts)
    return await EpisodeExecutor(engine, runtime, task).run(problem, seed=None, episode_id=episode_id)
