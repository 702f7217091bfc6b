"""AsyncThink over the HTTP engine against stock vLLM servers (at most 4 stop strings), tags as text or tokens.

The tiny random models cannot write a protocol on their own, so ``ForcedEngine`` asks the server to
constrain each request to the rest of a scripted row (vLLM structured outputs, a regex): the tokens
are still sampled by the real server, and stop strings, stop ids and resumes are the server's own.
"""

from __future__ import annotations

import re

import pytest

from asyncthink.engines.openai_engine import OpenAIEngine
from asyncthink.episode import EpisodeStatus
from asyncthink.executor import EpisodeExecutor
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.tiny_model import build_tiny_model
from tests.conftest import VLLMServer
from tests.test_serve_support import chat_body, post, serving

pytestmark = pytest.mark.slow

SCRIPT = {
    "organizer": "plan <FORK-1>alpha</FORK-1> and <FORK-12>beta</FORK-12> then <JOIN-12> and <JOIN-1> so "
                 "<ANSWER>42</ANSWER>",
    "alpha": "a<RETURN>r1</RETURN>",
    "beta": "bb<RETURN>r2</RETURN>",
}


class ForcedEngine(OpenAIEngine):
    """Constrains every request to the remainder of its row's script; records the stop strings sent."""

    def __init__(self, *args, **kw) -> None:
        super().__init__(*args, **kw)
        self.stops_sent: list[list[str]] = []

    def _body(self, request, sp):
        body = super()._body(request, sp)
        text = self.tokenizer.decode(request.prompt_ids, skip_special_tokens=False)
        head, _, tail = text.rpartition("<|im_start|>assistant\n")
        user = head.rsplit("<|im_start|>user\n", 1)[-1]
        row = next((k for k in ("alpha", "beta") if k in user), "organizer")
        generated = re.sub(r"(<JOIN-(\d+)>).*?</JOIN-\2>", r"\1", tail, flags=re.S)  # drop appended returns
        assert SCRIPT[row].startswith(generated), (row, generated)
        rest = SCRIPT[row][len(generated):]
        final_tag = next((t for t in ("</ANSWER>", "</RETURN>") if rest.endswith(t)), "")
        final_id = self.tokenizer.convert_tokens_to_ids(final_tag) if final_tag else None
        if final_id is not None and final_id != self.tokenizer.unk_token_id:
            # a grammar writes tag tokens as text pieces, but ends on an allowed stop id: make it this one
            rest = rest[: -len(final_tag)]
            body["logit_bias"] = {str(final_id): 100}
        body["structured_outputs"] = {"regex": re.escape(rest)}
        self.stops_sent.append(body.get("stop", []))
        return body


@pytest.fixture(scope="module")
def text_tag_server(tmp_path_factory):
    """A stock vLLM server on a tiny model whose tokenizer holds no fork or join tag as a token."""
    model = build_tiny_model(tmp_path_factory.mktemp("texttags") / "model", seed=0, max_index=0)
    server = VLLMServer(model, tmp_path_factory.mktemp("logs") / "vllm_text.log")
    try:
        yield server.wait_ready(), model
    finally:
        server.stop()


async def run_forced(url: str, model) -> tuple[object, ForcedEngine]:
    engine = await ForcedEngine.create([url], tokenizer=str(model))
    try:
        cfg = RuntimeConfig(capacity=4, max_organizer_tokens=128, max_worker_tokens=32, temperature=0.7)
        return await EpisodeExecutor(engine, cfg).run({"question": "Q"}, seed=1), engine
    finally:
        await engine.close()


@pytest.mark.parametrize("which", ["all-text", "partly-tokens"])
async def test_asyncthink_episode_through_a_stock_vllm_server(which, request):
    if which == "all-text":
        url, model = request.getfixturevalue("text_tag_server")
    else:  # the session's tiny model: <JOIN-1..8> are tokens, <JOIN-9..16> text
        url, model = request.getfixturevalue("vllm_server"), request.getfixturevalue("tiny_model_dir")
    ep, engine = await run_forced(url, model)
    assert ep.status == EpisodeStatus.OK, (ep.error, ep.format_errors)
    assert ep.answer == "42" and [e.index for e in ep.organizer.events if e.kind == "join"] == [12, 1]
    assert "<JOIN-12>r2</JOIN-12> and <JOIN-1>r1</JOIN-1> so <ANSWER>42</ANSWER>" in ep.organizer.text
    assert max(len(s) for s in engine.stops_sent) <= 2
    assert all(r.logprobs and len(r.logprobs) == len(r.completion_ids) for r in ep.rows)


async def test_serve_on_the_http_engine_answers_asyncthink_requests(vllm_server, tiny_model_dir):
    """``asyncthink serve --engine openai`` in its default mode: 200s, not 500 engine_error."""
    engine = await OpenAIEngine.create([vllm_server], tokenizer=str(tiny_model_dir))
    runtime = {"prompts": {"style": "compact"}, "max_organizer_tokens": 48, "max_worker_tokens": 24}
    async with serving(engine, owns_engine=True, runtime=runtime) as s:
        for seed in range(3):
            status, body = await post(s.url, "/v1/chat/completions", chat_body("Use 3 5 7 to make 22", seed=seed))
            assert status == 200, body
            assert body["asyncthink"]["mode"] == "asyncthink" and body["asyncthink"]["status"] != "error"
