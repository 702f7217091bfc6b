"""The OpenAI-compatible HTTP engine: against a real vLLM server, and fault injection with small aiohttp servers."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import aclosing

import pytest
from aiohttp import web

from asyncthink.engines import EngineError, EngineErrorKind, FinishReason, GenerateRequest, SamplingParams
from asyncthink.engines.base import generate_all
from asyncthink.engines.openai_engine import HTTPOptions, OpenAIEngine
from tests.conftest import free_port
from tests.fakes import LoopbackServer

PROMPT = list(range(10, 60))
LONG_PROMPT = [5 + (i * 7) % 400 for i in range(300)]


def req(prompt, rid, **sp):
    return GenerateRequest(list(prompt), SamplingParams(**sp), rid)


# ------------------------------------------------------------ the real vLLM server


@pytest.mark.slow
async def test_http_matches_in_process_vllm(http_engine, vllm_engine):
    assert http_engine.max_model_len == 2048
    h, hl, hf = await generate_all(http_engine, req(PROMPT, "h1", max_tokens=20, temperature=0))
    v, vl, _ = await generate_all(vllm_engine, req(PROMPT, "v1", max_tokens=20, temperature=0))
    assert h == v and max(abs(a - b) for a, b in zip(hl, vl, strict=True)) < 1e-3
    assert hf.finish_reason == FinishReason.LENGTH and hf.completion_tokens == 20


@pytest.mark.slow
async def test_http_streams_and_seeds(http_engine):
    deltas = []
    async with aclosing(http_engine.generate(req(PROMPT, "h2", max_tokens=10, seed=5))) as stream:
        async for d in stream:
            deltas.append(d)
    assert len(deltas) >= 3 and deltas[-1].final is not None
    again, _, _ = await generate_all(http_engine, req(PROMPT, "h3", max_tokens=10, seed=5))
    assert [t for d in deltas for t in d.token_ids] == again


@pytest.mark.slow
async def test_http_stop_token_and_prefix_cache(http_engine):
    greedy, _, _ = await generate_all(http_engine, req(LONG_PROMPT, "h4", max_tokens=20, temperature=0))
    stop = greedy[4]
    ids, _, final = await generate_all(
        http_engine, req(LONG_PROMPT, "h5", max_tokens=20, temperature=0, stop_token_ids=(stop,))
    )
    assert ids == greedy[: greedy.index(stop) + 1] and final.finish_reason == FinishReason.STOP
    _, _, resumed = await generate_all(http_engine, req(LONG_PROMPT + ids + [9, 9], "h6", max_tokens=3))
    assert resumed.cached_tokens is not None and resumed.cached_tokens >= 256


@pytest.mark.slow
async def test_http_cancel_and_sixteen_concurrent(http_engine):
    async with aclosing(http_engine.generate(req(PROMPT, "h7", max_tokens=1500))) as stream:
        async for _ in stream:
            break
    assert http_engine.in_flight[http_engine.base_urls[0]] == 0
    outs = await asyncio.gather(
        *[generate_all(http_engine, req(PROMPT[i:], f"hc{i}", max_tokens=30, seed=i)) for i in range(16)]
    )
    assert all(f.finish_reason in (FinishReason.LENGTH, FinishReason.STOP) for _, _, f in outs)


@pytest.mark.slow
async def test_http_prompt_too_long_is_classified(vllm_server, tiny_model_dir):
    engine = await OpenAIEngine.create([vllm_server], tokenizer=str(tiny_model_dir))
    engine.max_model_len = 0  # skip the local check: the server must refuse it
    try:
        with pytest.raises(EngineError) as err:
            await generate_all(engine, req([5] * 3000, "long", max_tokens=5))
        assert err.value.kind == EngineErrorKind.CONTEXT_LENGTH
    finally:
        await engine.close()


# ------------------------------------------------------------ fault injection


class FakeServer(LoopbackServer):
    """A small OpenAI-style server whose misbehaviour each test chooses."""

    def __init__(self, behaviour: str, fail_first: int = 0, token_delay_s: float = 0.05) -> None:
        super().__init__()
        self.behaviour, self.fail_first, self.calls = behaviour, fail_first, 0
        self.token_delay_s = token_delay_s
        self.concurrent, self.max_concurrent = 0, 0

    async def completions(self, request: web.Request) -> web.StreamResponse:
        self.calls += 1
        if self.calls <= self.fail_first or self.behaviour == "always_503":
            return web.Response(status=503, text="overloaded")
        resp = web.StreamResponse()
        await resp.prepare(request)
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            for i in range(3):
                await resp.write(_sse({"choices": [{"text": "x", "token_ids": [40 + i], "finish_reason": None}]}))
                await asyncio.sleep(self.token_delay_s)
            if self.behaviour == "die_mid_stream":
                request.transport.close()
                return resp
            if self.behaviour == "hang":
                await asyncio.sleep(3)
            await resp.write(_sse({"choices": [{"text": "", "token_ids": [], "finish_reason": "length"}]}))
            await resp.write(b"data: [DONE]\n\n")
        finally:
            self.concurrent -= 1
        return resp

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/completions", self.completions)
        app.router.add_get("/health", lambda request: web.Response(text="ok"))


def _sse(obj) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def engine_for(urls, **opts) -> OpenAIEngine:
    options = HTTPOptions(**{"connect_timeout_s": 1.0, "read_timeout_s": 2.0, "retries": 2, "backoff_s": 0.05, **opts})
    return OpenAIEngine(urls, "fake", tokenizer=None, max_model_len=1024, options=options)


async def test_server_not_running_fails_fast_and_classified():
    engine = engine_for([f"http://127.0.0.1:{free_port()}"])
    t0 = time.time()
    with pytest.raises(EngineError) as err:
        await generate_all(engine, req([1, 2], "a", max_tokens=3))
    await engine.close()
    assert err.value.kind == EngineErrorKind.CONNECTION and time.time() - t0 < 5


async def test_5xx_before_first_token_is_retried():
    async with FakeServer("ok", fail_first=2) as server:
        engine = engine_for([server.url])
        ids, _, final = await generate_all(engine, req([1], "b", max_tokens=3))
        await engine.close()
    assert ids == [40, 41, 42] and final.finish_reason == FinishReason.LENGTH and server.calls == 3


async def test_5xx_after_last_retry_is_a_clear_error():
    async with FakeServer("always_503") as server:
        engine = engine_for([server.url])
        with pytest.raises(EngineError) as err:
            await generate_all(engine, req([1], "c", max_tokens=3))
        await engine.close()
    assert err.value.kind == EngineErrorKind.SERVER and "503" in str(err.value) and server.calls == 3


async def test_server_killed_mid_stream_is_not_retried():
    async with FakeServer("die_mid_stream") as server:
        engine = engine_for([server.url])
        with pytest.raises(EngineError) as err:
            await generate_all(engine, req([1], "d", max_tokens=3))
        await engine.close()
    assert err.value.kind == EngineErrorKind.CONNECTION and err.value.partial_tokens == 3 and server.calls == 1


async def test_silent_server_times_out():
    async with FakeServer("hang") as server:
        engine = engine_for([server.url], read_timeout_s=0.5)
        t0 = time.time()
        with pytest.raises(EngineError) as err:
            await generate_all(engine, req([1], "e", max_tokens=3))
        elapsed = time.time() - t0
        await engine.close()
    assert err.value.kind == EngineErrorKind.TIMEOUT and elapsed < 5


async def test_requests_spread_over_urls_by_load():
    async with FakeServer("ok") as a, FakeServer("ok") as b:
        engine = engine_for([a.url, b.url])
        await asyncio.gather(*[generate_all(engine, req([1], f"f{i}", max_tokens=3)) for i in range(8)])
        await engine.close()
    assert a.calls == 4 and b.calls == 4 and a.max_concurrent == 4


@pytest.mark.parametrize(("streams", "cap", "open_at_once"), [(150, 0, 150), (12, 4, 4)])
async def test_streams_beyond_a_connection_pool_wait_never_fail(streams, cap, open_at_once):
    """aiohttp allows 100 connections by default: stream 101 used to wait for one and fail after the connect
    timeout (256 episodes of a few rows each in flight). Now there is no cap, or ours, and the rest wait."""
    async with FakeServer("ok", token_delay_s=0.3) as server:
        engine = engine_for([server.url], connect_timeout_s=0.4, max_connections=cap)
        outs = await asyncio.gather(*[generate_all(engine, req([1], f"g{i}", max_tokens=3)) for i in range(streams)])
        await engine.close()
    assert all(ids == [40, 41, 42] for ids, _, _ in outs) and server.max_concurrent == open_at_once


async def test_health_checks_do_not_wait_behind_capped_streams():
    async with FakeServer("ok", token_delay_s=0.5) as server:
        engine = engine_for([server.url], connect_timeout_s=0.3, max_connections=2)
        streams = [asyncio.create_task(generate_all(engine, req([1], f"k{i}", max_tokens=3))) for i in range(2)]
        await asyncio.sleep(0.2)  # both streams hold the cap's two slots now
        assert server.concurrent == 2 and await engine.ready()
        await asyncio.gather(*streams)
        await engine.close()


def test_a_negative_connection_cap_is_refused():
    with pytest.raises(ValueError, match="max_connections must be an integer >= 0 .* got -1"):
        HTTPOptions(max_connections=-1)


async def test_text_without_token_ids_is_refused():
    async def handler(request):
        resp = web.StreamResponse()
        await resp.prepare(request)
        await resp.write(_sse({"choices": [{"text": "hello", "finish_reason": None}]}))
        return resp

    app = web.Application()
    app.router.add_post("/v1/completions", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    engine = engine_for([f"http://127.0.0.1:{port}"])
    try:
        with pytest.raises(EngineError) as err:
            await generate_all(engine, req([1], "g", max_tokens=3))
        assert err.value.kind == EngineErrorKind.BAD_REQUEST and "token ids" in str(err.value)
    finally:
        await engine.close()
        await runner.cleanup()
