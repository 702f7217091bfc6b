"""Upstream servers as users name them: base URLs with or without ``/v1``, and the start-up check of each.

Fakes cover every way an upstream can answer wrongly (404 on the API paths, a key refused, another model, no
token ids, no logprobs) or not at all; the slow tests run both URL forms against the session's real vLLM
server, through the engine and through ``asyncthink serve`` as a process.
"""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys

import pytest
from aiohttp import web

from asyncthink.engines import EngineConfig
from asyncthink.engines.base import generate_all
from asyncthink.engines.health import wait_healthy
from asyncthink.engines.openai_engine import HTTPOptions, OpenAIEngine
from asyncthink.engines.types import EngineError, EngineErrorKind, GenerateRequest, SamplingParams
from asyncthink.engines.upstream import UpstreamConfigError, UpstreamProblem, normalize_base_url
from tests.conftest import free_port
from tests.fakes import LoopbackServer, ScriptedEngine
from tests.test_serve_support import chat_body, post, serving


@pytest.mark.parametrize("written", ["http://h:8000", "http://h:8000/", "http://h:8000/v1", "http://h:8000/v1/",
                                     " http://h:8000/v1 "])
def test_a_base_url_means_the_server_root_with_or_without_v1(written):
    assert normalize_base_url(written) == "http://h:8000"


def test_a_path_prefix_is_kept_and_only_a_last_v1_dropped():
    assert normalize_base_url("https://proxy.example/vllm/v1") == "https://proxy.example/vllm"
    assert normalize_base_url("http://h/v1/models/v2") == "http://h/v1/models/v2"
    assert normalize_base_url("http://v1") == "http://v1" and normalize_base_url("http://v1:8000/v1") == "http://v1:8000"


@pytest.mark.parametrize("bad", ["127.0.0.1:8000", "localhost", "ftp://h/v1", "http://h:8000/v1?x=1", ""])
def test_a_url_that_is_no_base_url_is_refused_quoting_it(bad):
    with pytest.raises(ValueError, match="a base URL .*got " + repr(bad).replace("?", r"\?")):
        normalize_base_url(bad)


def test_engine_configs_and_the_engine_store_the_root():
    cfg = EngineConfig(kind="openai", base_urls=["http://127.0.0.1:8000/v1/", "http://127.0.0.1:8001"])
    assert cfg.base_urls == ["http://127.0.0.1:8000", "http://127.0.0.1:8001"]
    assert OpenAIEngine(["http://127.0.0.1:8000/v1"], "m", None).base_urls == ["http://127.0.0.1:8000"]
    with pytest.raises(ValueError, match="got 'localhost:8000'"):
        EngineConfig(kind="openai", base_urls=["localhost:8000"])


# ------------------------------------------------------------ a fake upstream, wrong in one chosen way


class Upstream(LoopbackServer):
    """An OpenAI-style server: ``behaviour`` picks what goes wrong; it counts the requests of each path."""

    def __init__(self, behaviour: str = "ok", model: str = "m") -> None:
        super().__init__()
        self.behaviour, self.model = behaviour, model
        self.calls: dict[str, int] = {}

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.calls[request.path] = self.calls.get(request.path, 0) + 1
        if self.behaviour == "404" or (self.behaviour == "404_completions" and "completions" in request.path):
            return web.json_response({"detail": "Not Found"}, status=404)
        if self.behaviour in ("401", "429"):
            return web.json_response({"error": "refused"}, status=int(self.behaviour))
        if request.path.endswith("/v1/models"):
            return web.json_response({"data": [{"id": self.model, "max_model_len": 512}]})
        body = await request.json()
        if body.get("stream"):
            return await self._stream(request)
        choice = {"text": "x", "token_ids": [7], "logprobs": {"token_logprobs": [-0.5]}, "finish_reason": "length"}
        if self.behaviour in ("text_only", "ids_in_logprobs"):
            del choice["token_ids"]
        if self.behaviour == "ids_in_logprobs":  # vLLM's --return-tokens-as-token-ids
            choice["logprobs"]["tokens"] = ["token_id:7"]
        if self.behaviour == "no_logprobs":
            choice["logprobs"] = None
        return web.json_response({"choices": [choice]})

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse()
        await resp.prepare(request)
        chunk = {"choices": [{"text": "x", "token_ids": [7], "finish_reason": "length"}]}
        await resp.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())
        return resp

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/{tail:.*}", self.handle)


def engine_on(*urls: str) -> OpenAIEngine:
    options = HTTPOptions(connect_timeout_s=1.0, read_timeout_s=2.0, retries=2, backoff_s=0.01)
    return OpenAIEngine(list(urls), "", None, options=options)


async def check(urls: list[str], model: str | None):
    engine = engine_on(*urls)
    try:
        return await engine.check_upstreams(model), engine
    finally:
        await engine.close()


async def test_token_ids_written_in_the_logprobs_pass_too():
    async with Upstream("ids_in_logprobs") as up:
        served, _ = await check([up.url], "m")
    assert served.ok


async def test_a_busy_upstream_is_down_for_now_not_misconfigured():
    async with Upstream("429") as up:
        served, engine = await check([up.url], "m")
    assert served.models == ["m"] and "answered 429" in engine.not_ready_reason()


async def test_a_good_upstream_passes_written_either_way():
    async with Upstream() as up:
        for url in (up.url, up.url + "/v1", up.url + "/v1/"):
            served, _ = await check([url], "m")
            assert served.ok and served.models == ["m"] and served.max_model_len == 512
        served, _ = await check([up.url + "/v1"], None)  # no model named: the server's is taken
        assert served.models == ["m"]
    assert up.calls == {"/v1/models": 4, "/v1/completions": 4}  # the check asked both paths, at the root


@pytest.mark.parametrize(("behaviour", "problem", "words"), [
    ("404", UpstreamProblem.NOT_FOUND, "/api/v1/models answered 404.*must be the server root or end in /v1"),
    ("401", UpstreamProblem.UNAUTHORIZED, "answered 401.*api_key"),
    ("text_only", UpstreamProblem.NO_TOKEN_IDS, "/v1/completions returned no token ids"),
    ("no_logprobs", UpstreamProblem.NO_LOGPROBS, "without their logprobs"),
    ("404_completions", UpstreamProblem.NOT_FOUND, "/v1/completions answered 404.*model name"),
])
async def test_an_upstream_that_answers_wrongly_stops_start_up_naming_url_and_fix(behaviour, problem, words):
    async with Upstream(behaviour) as up:
        with pytest.raises(UpstreamConfigError, match=words) as err:
            await check([up.url + "/api"], "m")
    assert f"{up.url}/api/v1/" in str(err.value) and problem in set(UpstreamProblem)


async def test_another_model_is_a_configuration_error_listing_what_is_served():
    async with Upstream(model="/abs/path/model") as up:
        with pytest.raises(UpstreamConfigError, match=r"lists \['/abs/path/model'\], not 'models/x'"):
            await check([up.url], "models/x")


async def test_servers_of_different_models_are_refused_when_none_is_named():
    async with Upstream(model="a") as a, Upstream(model="b") as b:
        with pytest.raises(UpstreamConfigError, match="every server must serve the same model"):
            await check([a.url, b.url], None)


async def test_an_upstream_down_at_start_is_a_one_line_warning_and_health_says_why(caplog):
    dead = f"http://127.0.0.1:{free_port()}"
    with caplog.at_level(logging.WARNING, logger="asyncthink.engines.openai_engine"):
        served, engine = await check([dead + "/v1"], "m")
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "\n" not in warnings[0] and dead in warnings[0] and "cannot connect" in warnings[0]
    assert served.models == ["m"] and dead in engine.not_ready_reason()
    with pytest.raises(UpstreamConfigError, match="no upstream server answered.*name the model"):
        await check([dead], None)


async def test_health_is_503_with_the_reason_while_the_upstream_is_down():
    dead = f"http://127.0.0.1:{free_port()}"
    engine = OpenAIEngine([dead + "/v1"], "m", ScriptedEngine({}).tokenizer, max_model_len=100,
                          options=HTTPOptions(connect_timeout_s=1.0))
    async with serving(engine, owns_engine=True) as s:
        status, body = await _get(s.url + "/health")
    assert status == 503 and body["status"] == "engine_unavailable"
    assert body["reason"].startswith(f"GET {dead}/health:") and "v1/health" not in body["reason"]


async def test_a_404_is_not_retried_and_reaches_clients_as_upstream_not_found():
    async with Upstream("404") as up:
        engine = engine_on(up.url)
        engine.model = "m"
        request = GenerateRequest([1], SamplingParams(max_tokens=2), request_id="r")
        with pytest.raises(EngineError) as err:
            await generate_all(engine, request)
        await engine.close()
        assert err.value.kind == EngineErrorKind.NOT_FOUND and up.calls == {"/v1/completions": 1}
        served = OpenAIEngine([up.url], "m", ScriptedEngine({}).tokenizer, max_model_len=4096)
        async with serving(served, owns_engine=True) as s:
            status, body = await post(s.url, "/v1/chat/completions", chat_body())
    assert status == 502 and body["error"]["code"] == "upstream_not_found"


async def _get(url: str):
    import aiohttp

    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.json()


# ------------------------------------------------------------ the real vLLM server


@pytest.mark.slow
async def test_both_url_forms_generate_the_same_on_the_real_server(vllm_server, tiny_model_dir):
    request = GenerateRequest([1, 5, 9], SamplingParams(max_tokens=8, temperature=0.0), request_id="v1-form")
    outs = []
    for url in (vllm_server, vllm_server + "/v1", vllm_server + "/v1/"):
        engine = await OpenAIEngine.create([url], tokenizer=str(tiny_model_dir))
        try:
            assert await engine.ready() and engine.model == str(tiny_model_dir) and engine.max_model_len == 2048
            outs.append((await generate_all(engine, request))[0])
        finally:
            await engine.close()
    assert outs[0] == outs[1] == outs[2] and len(outs[0]) == 8


def _serve(tmp_path, *args: str) -> tuple[subprocess.Popen, str, object]:
    port, log = free_port(), tmp_path / "serve.log"
    cmd = [sys.executable, "-m", "asyncthink", "serve", "--engine", "openai", "--port", str(port), *args]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    return proc, f"http://127.0.0.1:{port}", log


@pytest.mark.slow
def test_serve_behind_the_real_server_named_with_v1(vllm_server, tiny_model_dir, tmp_path):
    """The issue's reproduction: ``--base-url http://host:port/v1`` used to probe ``/v1/v1/...`` for ever."""
    from openai import OpenAI

    proc, url, log = _serve(tmp_path, "--model", str(tiny_model_dir), "--base-url", vllm_server + "/v1",
                            "--served-model-name", "tiny", "--prompt-style", "compact", "--max-tokens", "24",
                            "--max-worker-tokens", "16")
    try:
        wait_healthy(url, 180, proc, log, name="asyncthink serve")
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=60)
        resp = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "2 + 2?"}])
        assert resp.usage.completion_tokens > 0
    finally:
        proc.kill()
        proc.wait()
    assert "/v1/v1/" not in log.read_text()


@pytest.mark.slow
async def test_serve_stops_at_start_when_the_upstream_answers_404(tmp_path):
    async with Upstream("404") as up:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "asyncthink", "serve", "--engine", "openai", "--model", "m",
            "--base-url", up.url + "/openai", "--port", str(free_port()),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = out.decode()
    assert proc.returncode == 2, text[-3000:]
    assert f"GET {up.url}/openai/v1/models answered 404" in text and "server root or end in /v1" in text
    assert "Traceback" not in text
