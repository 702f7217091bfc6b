"""The server on a scripted engine: OpenAI clients, response contents, the executor's observer, modes."""

from __future__ import annotations

import pytest

from asyncthink.episode import EpisodeStatus
from asyncthink.executor import EpisodeDone, EpisodeExecutor, TextDelta, WorkerForked, WorkerJoined
from asyncthink.runtime_config import RuntimeConfig
from tests.fakes import ScriptedEngine
from tests.test_serve_support import MODEL, serving

TWO = {
    "Q": "plan <FORK-1>s1</FORK-1> and <FORK-2>s2</FORK-2> think <JOIN-1> then <JOIN-2> so <ANSWER>42</ANSWER>",
    "s1": "a<RETURN>r1</RETURN>",
    "s2": "bbbbbbbbbbbbbbbbbbbb<RETURN>r2</RETURN>",
}
ORGANIZER_TEXT = ("plan <FORK-1>s1</FORK-1> and <FORK-2>s2</FORK-2> think <JOIN-1>r1</JOIN-1> then "
                  "<JOIN-2>r2</JOIN-2> so <ANSWER>42</ANSWER>")


async def test_observer_sees_text_forks_joins_and_the_record_in_order():
    events = []
    ep = await EpisodeExecutor(ScriptedEngine(TWO), RuntimeConfig()).run({"question": "Q"}, on_event=events.append)
    assert isinstance(events[-1], EpisodeDone) and events[-1].episode is ep
    org_text = "".join(e.text for e in events if isinstance(e, TextDelta) and e.row_id == "0")
    assert org_text == ep.organizer.text == ORGANIZER_TEXT
    kinds = [type(e).__name__ for e in events if not isinstance(e, TextDelta)]
    assert kinds == ["WorkerForked", "WorkerForked", "WorkerJoined", "WorkerJoined", "EpisodeDone"]
    fork1 = next(k for k, e in enumerate(events) if isinstance(e, WorkerForked))
    before = "".join(e.text for e in events[:fork1] if isinstance(e, TextDelta) and e.row_id == "0")
    assert before.endswith("</FORK-1>")  # a fork is reported right after its tag's text, not before
    joins = [e for e in events if isinstance(e, WorkerJoined)]
    assert [(j.index, j.row_id, j.returned) for j in joins] == [(1, "0.1", "r1"), (2, "0.2", "r2")]
    appended = [e.text for e in events if isinstance(e, TextDelta) and not e.generated]
    assert appended == ["r1</JOIN-1>", "r2</JOIN-2>"]


async def test_chat_completion_carries_the_organizer_text_usage_and_summary():
    engine = ScriptedEngine(TWO)
    async with serving(engine) as s:
        resp = await s.openai().chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Q"}])
    choice = resp.choices[0]
    assert choice.message.content == ORGANIZER_TEXT and choice.finish_reason == "stop"
    at = resp.model_extra["asyncthink"]
    assert at["status"] == "ok" and at["answer"] == "42" and at["format_errors"] == []
    assert (at["forks"], at["joins"], at["mode"], at["capacity"]) == (2, 2, "asyncthink", 4)
    assert at["latency"] > 0 and at["eta"] > 1
    workers = [(w["row_id"], w["index"], w["subquery"], w["returned"], w["joined"]) for w in at["workers"]]
    assert workers == [("0.1", 1, "s1", "r1", True), ("0.2", 2, "s2", "r2", True)]
    assert at["worker_tokens"] == 5 + 24  # one token per character, one per tag
    assert resp.usage.completion_tokens == at["total_tokens"] == at["organizer_tokens"] + at["worker_tokens"]
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + resp.usage.completion_tokens
    assert resp.id.startswith("chatcmpl-") and resp.model == MODEL


async def test_completions_endpoint_and_system_messages():
    engine = ScriptedEngine(TWO)
    async with serving(engine) as s:
        client = s.openai()
        resp = await client.completions.create(model=MODEL, prompt="Q", max_tokens=500)
        assert resp.choices[0].text == ORGANIZER_TEXT and resp.model_extra["asyncthink"]["answer"] == "42"
        messages = [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "earlier"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": [{"type": "text", "text": "Q"}]},
        ]
        chat = await client.chat.completions.create(model=MODEL, messages=messages)
    assert chat.choices[0].message.content == ORGANIZER_TEXT
    organizer_prompt = engine.tokenizer.decode(engine.requests[-1].prompt_ids)
    assert "Be brief.\n\nQ" in organizer_prompt and "earlier" not in organizer_prompt


async def test_chat_stream_sends_organizer_tokens_then_worker_events_and_a_summary():
    async with serving(ScriptedEngine(TWO, delay_s=0.001)) as s:
        stream = await s.openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Q"}], stream=True,
            stream_options={"include_usage": True})
        chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == ORGANIZER_TEXT
    assert chunks[0].choices[0].delta.role == "assistant"
    events = [c.model_extra["asyncthink"] for c in chunks if c.model_extra.get("asyncthink")]
    assert [e["event"] for e in events] == ["fork", "fork", "join", "join", "done"]
    assert (events[0]["index"], events[0]["subquery"], events[2]["returned"]) == (1, "s1", "r1")
    done = chunks[-2]
    assert done.choices[0].finish_reason == "stop" and done.model_extra["asyncthink"]["answer"] == "42"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == events[-1]["total_tokens"]
    content_chunks = sum(1 for c in chunks if c.choices and c.choices[0].delta.content)
    assert content_chunks > 10  # tokens go out as they come, not in one piece at the end


async def test_completion_stream_and_worker_text_events():
    async with serving(ScriptedEngine(TWO, delay_s=0.001)) as s:
        stream = await s.openai().completions.create(
            model=MODEL, prompt="Q", stream=True, extra_body={"asyncthink": {"stream_workers": True}})
        chunks = [c async for c in stream]
    assert "".join(c.choices[0].text for c in chunks) == ORGANIZER_TEXT
    worker_text = "".join(c.model_extra["asyncthink"]["text"] for c in chunks
                          if (c.model_extra.get("asyncthink") or {}).get("row_id") == "0.2"
                          and c.model_extra["asyncthink"]["event"] == "text")
    assert worker_text == TWO["s2"]
    assert chunks[-1].choices[0].finish_reason == "stop"


@pytest.mark.parametrize("stream", [False, True])
async def test_sequential_and_parallel_modes_per_request(stream):
    scripts = {"Q": "x<ANSWER>7</ANSWER>"}
    async with serving(ScriptedEngine(scripts)) as s:
        client = s.openai()
        for mode, extra in [("sequential", {}), ("parallel", {"parallel_traces": 3})]:
            body = {"asyncthink": {"mode": mode, **extra}}
            resp = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Q"}],
                                                        extra_body=body, stream=stream)
            if stream:
                chunks = [c async for c in resp]
                text = "".join(c.choices[0].delta.content or "" for c in chunks)
                at = chunks[-1].model_extra["asyncthink"]
            else:
                text, at = resp.choices[0].message.content, resp.model_extra["asyncthink"]
            assert text == "x<ANSWER>7</ANSWER>" and at["mode"] == mode and at["answer"] == "7"
            assert at["status"] == "ok" and at["forks"] == 0
            if mode == "parallel":
                assert at["votes"] == {"7": 3} and at["capacity"] == 3


async def test_format_errors_and_budgets_are_reported_not_refused():
    scripts = {"Q": "I have no answer", "long": "y" * 100 + "<ANSWER>1</ANSWER>"}
    async with serving(ScriptedEngine(scripts)) as s:
        client = s.openai()
        resp = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "Q"}])
        at = resp.model_extra["asyncthink"]
        assert resp.choices[0].message.content == "I have no answer" and resp.choices[0].finish_reason == "stop"
        assert at["status"] == "format_error" and at["format_errors"][0]["code"] == "no_answer"
        assert at["answer"] is None
        resp = await client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "long"}],
                                                    max_tokens=20)
        assert resp.choices[0].finish_reason == "length" and resp.usage.completion_tokens == 20
        assert resp.model_extra["asyncthink"]["status"] == str(EpisodeStatus.BUDGET_EXCEEDED)


async def test_per_request_budgets_reach_the_episode():
    async with serving(ScriptedEngine(TWO)) as s:
        resp = await s.openai().chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": "Q"}],
            extra_body={"asyncthink": {"max_forks": 1, "capacity": 3}})
    at = resp.model_extra["asyncthink"]
    assert at["status"] == "budget_exceeded" and "fork budget 1" in at["format_errors"][0]["detail"]
    assert at["capacity"] == 3 and resp.choices[0].finish_reason == "length"


async def test_models_and_health():
    async with serving(ScriptedEngine(TWO)) as s:
        client = s.openai()
        models = await client.models.list()
        assert [m.id for m in models.data] == [MODEL]
        assert (await client.models.retrieve(MODEL)).id == MODEL
        import aiohttp

        async with aiohttp.ClientSession() as session, session.get(s.url + "/health") as r:
            assert r.status == 200 and (await r.json())["status"] == "ok"
