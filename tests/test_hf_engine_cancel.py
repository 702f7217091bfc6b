"""The transformers engine under cancellation, on the real tiny organizer.

A request cancelled while the engine prefills it (or while a decode step
runs) must leave the batch without disturbing anyone else: every request that
was not cancelled ends normally, none fails with an engine error, and no
request stays live afterwards.
"""

from __future__ import annotations

import asyncio
import random
import threading
from pathlib import Path

import pytest

from asyncthink.engines.hf_engine import HFEngine
from asyncthink.engines.types import EngineError, GenerateRequest, SamplingParams

MODEL = Path(__file__).resolve().parents[1] / "models" / "tiny-organizer"


@pytest.fixture(scope="module")
def organizer_engine_parts():
    engine = HFEngine.from_pretrained(str(MODEL), dtype="float32")
    return engine.model, engine.tokenizer


def request(tokenizer, k: int, max_tokens: int = 24) -> GenerateRequest:
    prompt = tokenizer.encode(f"Use 3 5 {k % 9 + 1} to make {k + 10}")
    return GenerateRequest(prompt, SamplingParams(max_tokens=max_tokens, temperature=1.0, seed=k), f"r{k}")


async def consume(engine: HFEngine, req: GenerateRequest) -> list[int]:
    tokens: list[int] = []
    async for delta in engine.generate(req):
        tokens += delta.token_ids
    return tokens


async def outcomes(tasks: dict[int, asyncio.Task]) -> dict[str, int]:
    counts = {"ok": 0, "cancelled": 0, "engine_error": 0}
    for result in await asyncio.gather(*tasks.values(), return_exceptions=True):
        if isinstance(result, asyncio.CancelledError):
            counts["cancelled"] += 1
        elif isinstance(result, EngineError):
            counts["engine_error"] += 1
        elif isinstance(result, BaseException):
            raise result
        else:
            counts["ok"] += 1
    return counts


async def test_cancel_during_prefill_does_not_fail_the_batch(organizer_engine_parts):
    """Cancel one request while its prefill runs (held open until the cancel lands)."""
    model, tokenizer = organizer_engine_parts
    engine = HFEngine(model, tokenizer, max_batch=8)
    real_prefill, victim_prompt = engine._prefill, request(tokenizer, 99).prompt_ids
    entered, release = asyncio.Event(), threading.Event()
    loop = asyncio.get_running_loop()

    def held_prefill(prompt_ids):
        if prompt_ids == victim_prompt:
            loop.call_soon_threadsafe(entered.set)
            release.wait(10)
        return real_prefill(prompt_ids)

    engine._prefill = held_prefill
    try:
        # queued together: the others are prefilled first, then the victim's prefill is held open
        others = {k: asyncio.create_task(consume(engine, request(tokenizer, k))) for k in range(4)}
        victim = asyncio.create_task(consume(engine, request(tokenizer, 99)))
        await entered.wait()
        victim.cancel()
        await asyncio.gather(victim, return_exceptions=True)
        release.set()
        counts = await outcomes(others)
        assert counts == {"ok": 4, "cancelled": 0, "engine_error": 0}
        await asyncio.sleep(0.05)
        assert not engine._active and not engine._pending
    finally:
        release.set()
        await engine.close()


async def test_random_cancellations_leave_no_errors_and_no_live_requests(organizer_engine_parts):
    model, tokenizer = organizer_engine_parts
    engine = HFEngine(model, tokenizer, max_batch=16)
    rng = random.Random(0)
    try:
        tasks = {k: asyncio.create_task(consume(engine, request(tokenizer, k))) for k in range(48)}
        for k in rng.sample(sorted(tasks), 20):  # cancelled at random times: while queued, prefilled or decoding
            await asyncio.sleep(rng.uniform(0, 0.05))
            tasks[k].cancel()
        counts = await outcomes(tasks)
        assert counts["engine_error"] == 0, counts
        assert counts["ok"] + counts["cancelled"] == 48
        await asyncio.sleep(0.05)
        assert not engine._active and not engine._pending
    finally:
        await engine.close()


async def test_a_failed_prefill_answers_every_request_instead_of_hanging(organizer_engine_parts):
    model, tokenizer = organizer_engine_parts
    engine = HFEngine(model, tokenizer)
    calls = 0
    real_prefill = engine._prefill

    def failing_prefill(prompt_ids):
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("out of memory (simulated)")
        return real_prefill(prompt_ids)

    engine._prefill = failing_prefill
    try:
        tasks = {k: asyncio.create_task(consume(engine, request(tokenizer, k))) for k in range(3)}
        done, pending = await asyncio.wait(tasks.values(), timeout=60)
        assert not pending, "a request admitted with the failed prefill never finished"
        assert sum(isinstance(t.exception(), EngineError) for t in done) >= 1
    finally:
        await engine.close()
