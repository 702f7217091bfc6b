"""The in-process vLLM engine on the tiny model, and the cross-engine greedy check against transformers."""

from __future__ import annotations

import asyncio
import math
import time
from contextlib import aclosing

import pytest

from asyncthink.engines import EngineError, EngineErrorKind, FinishReason, GenerateRequest, SamplingParams
from asyncthink.engines.base import generate_all

pytestmark = pytest.mark.slow

PROMPT = list(range(10, 60))
LONG_PROMPT = [5 + (i * 7) % 400 for i in range(300)]  # over two 128-token cache blocks


def req(prompt, rid, **sp):
    return GenerateRequest(list(prompt), SamplingParams(**sp), rid)


async def test_streams_deltas_with_logprobs(vllm_engine):
    deltas = []
    async with aclosing(vllm_engine.generate(req(PROMPT, "s1", max_tokens=12, seed=3))) as stream:
        async for d in stream:
            deltas.append(d)
    assert len(deltas) >= 2 and deltas[-1].final is not None
    ids = [t for d in deltas for t in d.token_ids]
    lps = [x for d in deltas for x in d.logprobs]
    assert len(ids) == 12 == len(lps) and all(math.isfinite(x) and x <= 0 for x in lps)
    assert deltas[-1].final.finish_reason == FinishReason.LENGTH and deltas[-1].final.completion_tokens == 12


async def test_seeded_sampling_is_reproducible(vllm_engine):
    a, _, _ = await generate_all(vllm_engine, req(PROMPT, "r1", max_tokens=20, seed=7))
    b, _, _ = await generate_all(vllm_engine, req(PROMPT, "r2", max_tokens=20, seed=7))
    c, _, _ = await generate_all(vllm_engine, req(PROMPT, "r3", max_tokens=20, seed=8))
    assert a == b and a != c


async def test_stop_token_id_ends_and_is_returned(vllm_engine):
    greedy, _, _ = await generate_all(vllm_engine, req(PROMPT, "g", max_tokens=30, temperature=0))
    stop = greedy[5]
    first = greedy.index(stop)
    ids, _, final = await generate_all(
        vllm_engine, req(PROMPT, "st", max_tokens=30, temperature=0, stop_token_ids=(stop,))
    )
    assert ids == greedy[: first + 1] and final.finish_reason == FinishReason.STOP and final.stop == stop


async def test_stop_string_ends_at_the_completing_token(vllm_engine):
    tok = vllm_engine.tokenizer
    greedy, _, _ = await generate_all(vllm_engine, req(PROMPT, "g2", max_tokens=30, temperature=0))
    text = tok.decode(greedy[:8])
    stop = text[-3:] if len(text.strip()) >= 3 else text
    ids, _, final = await generate_all(vllm_engine, req(PROMPT, "ss", max_tokens=30, temperature=0, stop=(stop,)))
    assert final.finish_reason == FinishReason.STOP and final.stop == stop
    assert stop in tok.decode(ids) and ids == greedy[: len(ids)]


async def test_prefix_cache_hit_on_resume(vllm_engine):
    ids, _, first = await generate_all(vllm_engine, req(LONG_PROMPT, "p1", max_tokens=10, seed=1))
    resume = LONG_PROMPT + ids + [11, 12, 13]
    _, _, final = await generate_all(vllm_engine, req(resume, "p2", max_tokens=5, seed=1))
    assert final.cached_tokens is not None and final.cached_tokens >= 256
    assert final.prompt_tokens == len(resume)


async def test_cancel_mid_stream_frees_the_slot(vllm_engine):
    seen = 0
    async with aclosing(vllm_engine.generate(req(PROMPT, "c1", max_tokens=1500, seed=2))) as stream:
        async for d in stream:
            seen += len(d.token_ids)
            if seen >= 3:
                break
    deadline = time.time() + 10
    while vllm_engine._llm.output_processor.get_num_unfinished_requests() and time.time() < deadline:
        await asyncio.sleep(0.05)
    assert vllm_engine._llm.output_processor.get_num_unfinished_requests() == 0
    ids, _, _ = await generate_all(vllm_engine, req(PROMPT, "c2", max_tokens=4))
    assert len(ids) == 4


async def test_cancelling_the_task_aborts_too(vllm_engine):
    task = asyncio.create_task(generate_all(vllm_engine, req(PROMPT, "c3", max_tokens=1500, seed=2)))
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0.2)
    assert vllm_engine._llm.output_processor.get_num_unfinished_requests() == 0


async def test_sixteen_concurrent_requests_complete(vllm_engine):
    outs = await asyncio.gather(
        *[generate_all(vllm_engine, req(PROMPT[i:], f"k{i}", max_tokens=40, seed=i)) for i in range(16)]
    )
    for ids, _, final in outs:  # a random model may sample EOS early
        assert final.finish_reason in (FinishReason.LENGTH, FinishReason.STOP)
        assert len(ids) == 40 if final.finish_reason == FinishReason.LENGTH else ids[-1] == vllm_engine.eos_token_id


async def test_prompt_longer_than_context_is_classified(vllm_engine):
    t0 = time.time()
    with pytest.raises(EngineError) as err:
        await generate_all(vllm_engine, req([5] * 3000, "long", max_tokens=5))
    assert err.value.kind == EngineErrorKind.CONTEXT_LENGTH and time.time() - t0 < 5


async def test_greedy_matches_transformers_engine(vllm_engine, hf_engine):
    prompts = [PROMPT, LONG_PROMPT[:77], list(range(100, 103))]
    for i, p in enumerate(prompts):
        v, vl, _ = await generate_all(vllm_engine, req(p, f"x{i}", max_tokens=24, temperature=0))
        h, hl, _ = await generate_all(hf_engine, req(p, f"x{i}", max_tokens=24, temperature=0))
        assert v == h, f"prompt {i}: vLLM {v} vs transformers {h}"
        assert max(abs(a - b) for a, b in zip(vl, hl, strict=True)) < 1e-3


# ------------------------------------------------------------ push: deltas from vLLM's own output loop


async def push_all(engine, request, stop_after=None, fail_after=None):
    """``stream_to`` into a list; stop (return True) or raise once ``stop_after``/``fail_after`` tokens came."""
    deltas = []

    def on_delta(d):
        deltas.append(d)
        seen = sum(len(x.token_ids) for x in deltas)
        if fail_after is not None and seen >= fail_after:
            raise LookupError("the consumer failed")
        return stop_after is not None and seen >= stop_after

    await engine.stream_to(request, on_delta)
    return deltas


async def unfinished_after_abort(engine) -> int:
    deadline = time.time() + 10
    while engine._llm.output_processor.get_num_unfinished_requests() and time.time() < deadline:
        await asyncio.sleep(0.05)
    return engine._llm.output_processor.get_num_unfinished_requests()


async def test_push_gives_what_generate_gives(vllm_engine):
    pulled, pulled_lps, pulled_final = await generate_all(vllm_engine, req(PROMPT, "pp1", max_tokens=20, seed=5))
    deltas = await push_all(vllm_engine, req(PROMPT, "pp2", max_tokens=20, seed=5))
    assert [t for d in deltas for t in d.token_ids] == pulled
    assert max(abs(a - b) for a, b in zip([x for d in deltas for x in d.logprobs], pulled_lps, strict=True)) < 1e-5
    assert deltas[-1].final is not None and deltas[-1].final.completion_tokens == pulled_final.completion_tokens
    assert all(d.final is None for d in deltas[:-1])


async def test_push_stop_aborts_mid_decode_and_frees_the_slot(vllm_engine):
    deltas = await push_all(vllm_engine, req(PROMPT, "ps1", max_tokens=1500, seed=2), stop_after=3)
    assert sum(len(d.token_ids) for d in deltas) < 1500 and deltas[-1].final is None
    assert await unfinished_after_abort(vllm_engine) == 0
    ids, _, _ = await generate_all(vllm_engine, req(PROMPT, "ps2", max_tokens=4))
    assert len(ids) == 4


async def test_push_consumer_error_comes_out_whole_and_aborts(vllm_engine):
    with pytest.raises(LookupError, match="consumer failed"):
        await push_all(vllm_engine, req(PROMPT, "pe1", max_tokens=1500, seed=2), fail_after=2)
    assert await unfinished_after_abort(vllm_engine) == 0


async def test_push_cancelled_mid_prefill_and_mid_decode_aborts(vllm_engine):
    for rid, wait_s in (("pc1", 0.0), ("pc2", 0.3)):
        task = asyncio.create_task(push_all(vllm_engine, req(LONG_PROMPT, rid, max_tokens=1500, seed=2)))
        await asyncio.sleep(wait_s)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await unfinished_after_abort(vllm_engine) == 0


async def test_push_many_streams_in_flight(vllm_engine):
    outs = await asyncio.gather(*[push_all(vllm_engine, req(PROMPT[i % 9:], f"pm{i}", max_tokens=30, seed=i))
                                  for i in range(48)])
    for deltas in outs:
        final = deltas[-1].final
        assert final is not None and final.completion_tokens == sum(len(d.token_ids) for d in deltas)


async def test_push_prompt_longer_than_context_is_classified(vllm_engine):
    with pytest.raises(EngineError) as err:
        await push_all(vllm_engine, req([5] * 3000, "plong", max_tokens=5))
    assert err.value.kind == EngineErrorKind.CONTEXT_LENGTH
