"""The server under bad input, overload, disconnects, engine failures, shutdown and load (scripted engine)."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp
import pytest

from asyncthink.engines import EngineError, EngineErrorKind
from asyncthink.serve import ServeConfig, ServeLimits
from tests.fakes import ScriptedEngine
from tests.test_serve_support import MODEL, chat_body, post, serving, wait_until

TWO = {
    "Q": "plan <FORK-1>s1</FORK-1> and <FORK-2>s2</FORK-2> think <JOIN-1> then <JOIN-2> so <ANSWER>42</ANSWER>",
    "s1": "a<RETURN>r1</RETURN>",
    "s2": "bbbbbbbbbbbbbbbbbbbb<RETURN>r2</RETURN>",
}
SLOW = {  # with a 10 ms delay per token: the organizer runs ~2 s, its worker ~3 s
    "Q": "<FORK-1>s1</FORK-1>" + "t" * 200 + "<JOIN-1><ANSWER>1</ANSWER>",
    "s1": "w" * 300 + "<RETURN>ok</RETURN>",
}
TEN_MB = b'{"model": "tiny", "messages": [{"role": "user", "content": "' + b"x" * 10_000_000 + b'"}]}'

BAD = [
    ("malformed JSON", {"raw": b"{not json"}, 400, "invalid_json"),
    ("JSON array", {"raw": b"[1, 2]"}, 400, "invalid_json"),
    ("not UTF-8", {"raw": b"\xff\xfe\x00"}, 400, "invalid_json"),
    ("NaN temperature", {"raw": b'{"messages": [{"role": "user", "content": "Q"}], "temperature": NaN}'}, 400, None),
    ("messages a string", {"body": {"messages": "hi"}}, 400, None),
    ("messages empty", {"body": {"messages": []}}, 400, None),
    ("unknown role", {"body": {"messages": [{"role": "wizard", "content": "Q"}]}}, 400, None),
    ("last message not the user's", {"body": {"messages": [{"role": "user", "content": "Q"},
                                                          {"role": "assistant", "content": "A"}]}}, 400, None),
    ("content a number", {"body": {"messages": [{"role": "user", "content": 5}]}}, 400, None),
    ("image content", {"body": {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]}}, 400, None),
    ("max_tokens a string", {"body": chat_body(max_tokens="10")}, 400, None),
    ("max_tokens negative", {"body": chat_body(max_tokens=-5)}, 400, None),
    ("max_tokens zero", {"body": chat_body(max_tokens=0)}, 400, None),
    ("max_tokens huge", {"body": chat_body(max_tokens=10**12)}, 400, None),
    ("max_tokens a float", {"body": chat_body(max_tokens=1.5)}, 400, None),
    ("max_tokens a boolean", {"body": chat_body(max_tokens=True)}, 400, None),
    ("max_completion_tokens over the limit", {"body": chat_body(max_completion_tokens=5000)}, 400, None),
    ("temperature a string", {"body": chat_body(temperature="hot")}, 400, None),
    ("temperature negative", {"body": chat_body(temperature=-1)}, 400, None),
    ("top_p zero", {"body": chat_body(top_p=0)}, 400, None),
    ("stream a string", {"body": chat_body(stream="yes")}, 400, None),
    ("n = 2", {"body": chat_body(n=2)}, 400, None),
    ("stop strings", {"body": chat_body(stop=["x"])}, 400, None),
    ("logprobs", {"body": chat_body(logprobs=True)}, 400, None),
    ("seed a string", {"body": chat_body(seed="abc")}, 400, None),
    ("model a number", {"body": chat_body(model=5)}, 400, None),
    ("unknown model", {"body": chat_body(model="gpt-4")}, 404, "model_not_found"),
    ("asyncthink a string", {"body": chat_body(asyncthink="fast")}, 400, None),
    ("unknown mode", {"body": chat_body(asyncthink={"mode": "bogus"})}, 400, None),
    ("capacity 1", {"body": chat_body(asyncthink={"capacity": 1})}, 400, None),
    ("capacity over the limit", {"body": chat_body(asyncthink={"capacity": 100})}, 400, None),
    ("unknown asyncthink field", {"body": chat_body(asyncthink={"turbo": True})}, 400, None),
    ("wall time over the limit", {"body": chat_body(asyncthink={"wall_time_s": 1e9})}, 400, None),
    ("negative worker budget", {"body": chat_body(asyncthink={"max_worker_tokens": -1})}, 400, None),
    ("token-id prompt", {"path": "/v1/completions", "body": {"prompt": [1, 2, 3]}}, 400, None),
    ("batch prompt", {"path": "/v1/completions", "body": {"prompt": ["a", "b"]}}, 400, None),
    ("no prompt", {"path": "/v1/completions", "body": {"model": MODEL}}, 400, None),
    ("10 MB body", {"raw": TEN_MB}, 413, "request_too_large"),
]


@pytest.mark.parametrize("name,request_,status,code", BAD, ids=[b[0] for b in BAD])
async def test_bad_input_gets_an_openai_error_and_the_server_keeps_serving(name, request_, status, code):
    async with serving(ScriptedEngine(TWO)) as s:
        path = request_.get("path", "/v1/chat/completions")
        got, body = await post(s.url, path, request_.get("body"), request_.get("raw"))
        assert got == status, (name, body)
        err = body["error"]
        assert err["message"] and err["type"] and (code is None or err["code"] == code), body
        got, body = await post(s.url, "/v1/chat/completions", chat_body())
        assert got == 200 and body["asyncthink"]["answer"] == "42"


async def test_a_large_chunked_body_without_content_length_is_413():
    async def chunks():
        yield b'{"model": "tiny", "messages": [{"role": "user", "content": "'
        for _ in range(40):
            yield b"x" * 65536

    async with serving(ScriptedEngine(TWO), limits={"max_body_bytes": 1_000_000}) as s:
        async with aiohttp.ClientSession() as session:
            async with session.post(s.url + "/v1/chat/completions", data=chunks()) as r:
                assert r.status == 413 and (await r.json())["error"]["code"] == "request_too_large"
        got, body = await post(s.url, "/v1/chat/completions", chat_body())
        assert got == 200


async def test_wrong_method_and_unknown_routes_are_json_errors():
    async with serving(ScriptedEngine(TWO)) as s, aiohttp.ClientSession() as session:
        async with session.get(s.url + "/v1/chat/completions") as r:
            assert r.status == 405 and (await r.json())["error"]["code"] == "method_not_allowed"
        async with session.post(s.url + "/v1/nothing", json={}) as r:
            assert r.status == 404 and "error" in await r.json()
        async with session.get(s.url + "/v1/models/gpt-4") as r:
            assert r.status == 404 and (await r.json())["error"]["code"] == "model_not_found"


def test_config_errors_quote_the_values():
    with pytest.raises(ValueError, match="max_concurrent_episodes must be > 0, got 0"):
        ServeLimits(max_concurrent_episodes=0)
    with pytest.raises(ValueError, match="runtime.capacity=9 exceeds limits.max_capacity=8"):
        ServeConfig(runtime={"capacity": 9})
    with pytest.raises(ValueError, match="port must be in 0..65535, got 70000"):
        ServeConfig(port=70000)


async def read_sse_until(resp: aiohttp.ClientResponse, predicate) -> list[dict]:
    seen = []
    async for line in resp.content:
        if line.startswith(b"data: {"):
            seen.append(json.loads(line[6:]))
            if predicate(seen[-1]):
                return seen
    raise AssertionError(f"stream ended first: {seen[-3:]}")


async def test_client_disconnect_mid_stream_cancels_the_episode_and_its_workers():
    engine = ScriptedEngine(SLOW, delay_s=0.01)
    async with serving(engine) as s:
        session = aiohttp.ClientSession()
        resp = await session.post(s.url + "/v1/chat/completions", json=chat_body(stream=True))
        await read_sse_until(resp, lambda c: (c.get("asyncthink") or {}).get("event") == "fork")
        await asyncio.sleep(0.05)
        assert engine.live == 2  # the organizer and its worker are generating
        resp.close()
        await session.close()
        assert await wait_until(lambda: engine.live == 0, timeout=5), engine.live
        assert engine.aborted == 2 and not s.server.admission.tasks
        assert s.server.admission.running == 0
        got, body = await post(s.url, "/v1/chat/completions", chat_body(asyncthink={"mode": "sequential"}))
        assert got == 200


async def test_client_disconnect_without_streaming_cancels_the_episode():
    engine = ScriptedEngine(SLOW, delay_s=0.01)
    async with serving(engine) as s:
        with pytest.raises(TimeoutError):
            await post(s.url, "/v1/chat/completions", chat_body(), timeout=0.5)
        assert await wait_until(lambda: engine.live == 0, timeout=5), engine.live
        assert engine.aborted == 2 and not s.server.admission.tasks


async def test_overload_queues_then_refuses_with_429():
    engine = ScriptedEngine(SLOW, delay_s=0.003)
    limits = {"max_concurrent_episodes": 1, "max_queued": 1}
    async with serving(engine, limits=limits) as s:
        adm = s.server.admission
        first = asyncio.create_task(post(s.url, "/v1/chat/completions", chat_body()))
        assert await wait_until(lambda: adm.running == 1)
        second = asyncio.create_task(post(s.url, "/v1/chat/completions", chat_body()))
        assert await wait_until(lambda: adm.waiting == 1)
        status, body = await post(s.url, "/v1/chat/completions", chat_body())
        assert status == 429 and body["error"]["code"] == "rate_limit_exceeded"
        assert [(await t)[0] for t in (first, second)] == [200, 200]


async def test_queue_timeout_is_a_429():
    engine = ScriptedEngine(SLOW, delay_s=0.003)
    async with serving(engine, limits={"max_concurrent_episodes": 1, "queue_timeout_s": 0.2}) as s:
        first = asyncio.create_task(post(s.url, "/v1/chat/completions", chat_body()))
        assert await wait_until(lambda: s.server.admission.running == 1)
        status, body = await post(s.url, "/v1/chat/completions", chat_body())
        assert status == 429 and "0.2s" in body["error"]["message"]
        assert (await first)[0] == 200


class FailingEngine(ScriptedEngine):
    def __init__(self, kind: EngineErrorKind) -> None:
        super().__init__(TWO)
        self.kind = kind

    async def generate(self, request):
        raise EngineError(self.kind, "boom")
        yield  # an async generator that fails on its first step


@pytest.mark.parametrize("kind,status,code", [(EngineErrorKind.SERVER, 500, "engine_error"),
                                              (EngineErrorKind.CONTEXT_LENGTH, 400, "context_length_exceeded")])
async def test_engine_failures_are_json_errors(kind, status, code):
    async with serving(FailingEngine(kind)) as s:
        got, body = await post(s.url, "/v1/chat/completions", chat_body())
        assert got == status and body["error"]["code"] == code and "boom" not in body["error"]["message"]
        got, text = await post(s.url, "/v1/chat/completions", chat_body(stream=True))
        assert got == 200 and f'"code":"{code}"' in text and text.rstrip().endswith("data: [DONE]")


class ClosingEngine(ScriptedEngine):
    closed = False

    async def close(self) -> None:
        self.closed = True


async def test_graceful_shutdown_finishes_in_flight_episodes_then_closes_the_engine():
    engine = ClosingEngine(SLOW, delay_s=0.002)
    async with serving(engine, owns_engine=True, shutdown_grace_s=10) as s:
        inflight = asyncio.create_task(post(s.url, "/v1/chat/completions", chat_body()))
        assert await wait_until(lambda: s.server.admission.running == 1)
        cleanup = asyncio.create_task(s.runner.cleanup())
        assert await wait_until(lambda: s.server.admission.draining)
        assert (await s.server.health(None)).status == 503  # the listener is closed; the handler says draining
        assert not inflight.done()
        await cleanup
        status, body = await inflight
        assert status == 200 and body["asyncthink"]["status"] == "ok"
        assert engine.closed and engine.live == 0
        with pytest.raises(aiohttp.ClientConnectionError):
            await post(s.url, "/v1/chat/completions", chat_body())


async def test_shutdown_past_the_grace_period_cancels_episodes_with_503():
    engine = ScriptedEngine(SLOW, delay_s=0.01)
    async with serving(engine, shutdown_grace_s=0.2) as s:
        plain = asyncio.create_task(post(s.url, "/v1/chat/completions", chat_body()))
        streamed = asyncio.create_task(post(s.url, "/v1/chat/completions", chat_body(stream=True)))
        assert await wait_until(lambda: s.server.admission.running == 2)
        t0 = time.perf_counter()
        await s.runner.cleanup()
        assert time.perf_counter() - t0 < 5
        status, body = await plain
        assert status == 503 and body["error"]["code"] == "shutting_down"
        status, text = await streamed
        assert status == 200 and '"code":"shutting_down"' in text and text.rstrip().endswith("data: [DONE]")
        assert engine.live == 0 and not s.server.admission.tasks


async def one_client(session: aiohttp.ClientSession, url: str, k: int, requests: int) -> list[tuple[int, str]]:
    out = []
    for r in range(requests):
        stream = (k + r) % 2 == 1
        async with session.post(url + "/v1/chat/completions", json=chat_body(stream=stream, seed=k)) as resp:
            text = await resp.text()
        answer = json.loads(text)["asyncthink"]["answer"] if not stream and resp.status == 200 else \
            ("42" if '"answer":"42"' in text and text.rstrip().endswith("[DONE]") else text[:200])
        out.append((resp.status, answer))
    return out


async def test_load_64_clients_x_4_requests_all_answered_without_5xx():
    engine = ScriptedEngine(TWO, delay_s=0.001)
    async with serving(engine, limits={"max_concurrent_episodes": 32, "max_queued": 64}) as s:
        connector = aiohttp.TCPConnector(limit=64)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
            results = await asyncio.gather(*(one_client(session, s.url, k, 4) for k in range(64)))
        flat = [r for rs in results for r in rs]
        assert len(flat) == 256 and all(r == (200, "42") for r in flat), [r for r in flat if r != (200, "42")][:5]
        assert engine.live == 0 and not s.server.admission.tasks
