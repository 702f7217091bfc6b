"""The server on the session's in-process vLLM engine and the tiny random model, through the official client.

A random model mostly ends in format errors (see ``asyncthink.serve.summary``);
what matters is that every request is answered in the OpenAI shape, streaming
and not, and that nothing outlives a request. Greedy decoding of this model
repeats a newline, which makes long, predictable streams.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from tests.test_serve_support import MODEL, chat_body, post, serving, wait_until

pytestmark = pytest.mark.slow

RUNTIME = {"prompts": {"style": "compact"}, "max_organizer_tokens": 64, "max_worker_tokens": 32}
QUESTION = [{"role": "user", "content": "Use 3 5 7 to make 22"}]


@pytest.fixture
async def served(vllm_engine):
    async with serving(vllm_engine, runtime=RUNTIME) as s:
        yield s


def unfinished(engine) -> int:
    return engine._llm.output_processor.get_num_unfinished_requests()


@pytest.mark.parametrize("mode", ["asyncthink", "sequential"])
async def test_chat_streaming_and_not_agree_on_the_same_seed(served, mode):
    client = served.openai()
    extra = {"asyncthink": {"mode": mode}}
    full = await client.chat.completions.create(model=MODEL, messages=QUESTION, seed=11, extra_body=extra)
    stream = await client.chat.completions.create(model=MODEL, messages=QUESTION, seed=11, extra_body=extra,
                                                  stream=True, stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    at = full.model_extra["asyncthink"]
    assert at["mode"] == mode and at["status"] in ("ok", "format_error", "budget_exceeded")
    assert full.usage.completion_tokens == at["total_tokens"] > 0
    assert full.choices[0].finish_reason == ("length" if at["status"] == "budget_exceeded" else "stop")
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == full.choices[0].message.content
    done = chunks[-2].model_extra["asyncthink"]
    assert done["event"] == "done" and done["total_tokens"] == at["total_tokens"]
    assert chunks[-1].usage.completion_tokens == full.usage.completion_tokens
    assert unfinished(served.server.engine) == 0


async def test_completions_streaming_and_not(served):
    client = served.openai()
    full = await client.completions.create(model=MODEL, prompt="What is 2 + 2?", seed=5, max_tokens=48)
    chunks = [c async for c in await client.completions.create(model=MODEL, prompt="What is 2 + 2?", seed=5,
                                                               max_tokens=48, stream=True)]
    assert "".join(c.choices[0].text for c in chunks) == full.choices[0].text
    assert chunks[-1].choices[0].finish_reason == full.choices[0].finish_reason
    assert full.model_extra["asyncthink"]["organizer_tokens"] <= 48


async def test_greedy_budget_is_a_length_finish(served):
    resp = await served.openai().chat.completions.create(
        model=MODEL, messages=QUESTION, temperature=0, max_tokens=40, extra_body={"asyncthink": {"mode": "sequential"}})
    assert resp.choices[0].finish_reason == "length" and resp.usage.completion_tokens == 40
    assert resp.model_extra["asyncthink"]["status"] == "budget_exceeded"


async def test_bad_inputs_leave_the_vllm_server_serving(served):
    cases = [(chat_body(model="gpt-4"), 404), (chat_body(max_tokens=5000), 400), (chat_body(max_tokens=-1), 400),
             (chat_body(temperature="x"), 400)]
    for body, status in cases:
        got, err = await post(served.url, "/v1/chat/completions", body)
        assert got == status and "error" in err
    got, _ = await post(served.url, "/v1/chat/completions", raw=b'{"model": "tiny", "messages": [' + b" " * 10_000_000)
    assert got == 413
    got, body = await post(served.url, "/v1/chat/completions", chat_body(max_tokens=16))
    assert got == 200 and body["usage"]["completion_tokens"] > 0


async def test_disconnect_mid_stream_aborts_every_vllm_request(served):
    engine = served.server.engine
    body = chat_body("Use 3 5 7 to make 22", stream=True, temperature=0, max_tokens=1500,
                     asyncthink={"mode": "sequential"})
    async with aiohttp.ClientSession() as session:
        resp = await session.post(served.url + "/v1/chat/completions", json=body)
        pieces = 0
        async for line in resp.content:
            if line.startswith(b"data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                pieces += 1
                if pieces == 5:
                    break
        assert unfinished(engine) == 1  # still generating: 1500 greedy tokens take seconds here
        resp.close()
    assert await wait_until(lambda: unfinished(engine) == 0, timeout=10)
    assert await wait_until(lambda: not served.server.admission.tasks, timeout=5)


async def test_small_load_on_vllm(served):
    async def client(k: int) -> list[int]:
        statuses = []
        for r in range(2):
            got, _ = await post(served.url, "/v1/chat/completions", chat_body(f"Make {k + 10} from 1 2 {r}", seed=k,
                                                                             stream=(k + r) % 2 == 1), timeout=120)
            statuses.append(got)
        return statuses

    results = await asyncio.gather(*(client(k) for k in range(8)))
    assert [s for rs in results for s in rs] == [200] * 16
    assert unfinished(served.server.engine) == 0
