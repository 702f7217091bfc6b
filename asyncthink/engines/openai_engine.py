"""OpenAI-compatible HTTP engine: ``/v1/completions`` with token-id prompts, over aiohttp.

Works against ``python -m vllm.entrypoints.openai.api_server`` and any server
with the same API that returns generated token ids (vLLM's
``return_token_ids``, or ``return_tokens_as_token_ids`` in logprobs). One or
many base URLs: each request goes to the URL with the fewest requests in
flight. One shared ``aiohttp.ClientSession`` with no cap on connections (each
stream holds one for its whole life, and aiohttp's default of 100 made the
101st stream wait, then fail; ``max_connections`` caps streams instead, and
the rest wait); connect and read timeouts;
connection errors and 5xx answers are retried with exponential backoff only
before the first token arrived (after that, a retry would duplicate tokens);
the last failure is raised as a classified ``EngineError``, never a hang. A
404 is a configuration error (wrong base URL or model), never retried.

Base URLs may be written as the server root or ending in ``/v1``
(``asyncthink.engines.upstream``); ``create`` checks every server once before
the engine is used: a server that is down is a warning, one that answers
wrongly stops start-up with the URL tried and the fix.

Start vLLM servers with ``--logprobs-mode processed_logprobs`` (so logprobs are
those sampled from) and ``--enable-prompt-tokens-details`` (so prefix-cache hits
are reported).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp

from asyncthink.engines.base import Engine, clamp_to_context
from asyncthink.engines.types import (
    Delta,
    EngineError,
    EngineErrorKind,
    Final,
    FinishReason,
    GenerateRequest,
    SamplingParams,
)
from asyncthink.engines.upstream import (
    UpstreamCheck,
    UpstreamConfigError,
    UpstreamProblem,
    check_upstream,
    normalize_base_url,
    token_ids_in,
)

logger = logging.getLogger(__name__)
PROBE_IDS = [0]  # the start-up check's prompt: id 0 exists in every vocabulary, and no tokenizer is needed yet


@dataclass
class HTTPOptions:
    """Connection behaviour of the HTTP engine."""

    connect_timeout_s: float = 10.0
    """Seconds to open a connection (the socket's connect; waiting for a free one under ``max_connections`` is
    not timed)."""
    read_timeout_s: float = 300.0
    """Seconds without any bytes from the server before the request fails."""
    retries: int = 3
    """Extra attempts after a connection error or 5xx, before any token arrived."""
    backoff_s: float = 0.5
    """First retry delay; doubles each attempt."""
    api_key: str | None = None
    """Sent as ``Authorization: Bearer``."""
    weights_dir: str | None = None
    """A folder the servers can read: ``load_weights`` writes new weights there for them to reload."""
    max_connections: int = 0
    """Streams open at once over all servers (each holds a connection until it ends); 0 for no limit. Requests
    beyond it wait for a stream to end; health checks and weight reloads never wait on them."""

    def __post_init__(self) -> None:
        if not isinstance(self.max_connections, int) or self.max_connections < 0:
            raise ValueError(f"max_connections must be an integer >= 0 (0: no limit), got {self.max_connections!r}")


class OpenAIEngine(Engine):
    """Token-level generation through OpenAI-compatible ``/v1/completions`` servers."""

    kind = "openai"

    def __init__(
        self,
        base_urls: list[str],
        model: str,
        tokenizer: Any,
        *,
        max_model_len: int | None = None,
        options: HTTPOptions | None = None,
    ) -> None:
        if not base_urls:
            raise ValueError("the HTTP engine needs at least one base URL")
        self.base_urls = [normalize_base_url(u) for u in base_urls]
        self.model = model
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len or 0
        self.options = options or HTTPOptions()
        self.in_flight = dict.fromkeys(self.base_urls, 0)
        self._rr = itertools.count()
        self._session: aiohttp.ClientSession | None = None
        cap = self.options.max_connections
        self._slots: Any = asyncio.Semaphore(cap) if cap else contextlib.nullcontext()
        self._problems: dict[str, str] = {}  # url -> why its last check failed, for /health

    @classmethod
    async def create(
        cls, base_urls: list[str], model: str | None = None, tokenizer: str | None = None, **kw: Any
    ) -> OpenAIEngine:
        """Check every server once (``check_upstreams``), take the model name and context length from the
        servers when not given, and load the tokenizer locally."""
        from transformers import AutoTokenizer

        engine = cls(base_urls, model or "", None, **kw)
        try:
            served = await engine.check_upstreams(model)
            engine.model = model or served.models[0]
            engine.max_model_len = engine.max_model_len or served.max_model_len
            engine.tokenizer = AutoTokenizer.from_pretrained(tokenizer or engine.model)
        except BaseException:
            await engine.close()
            raise
        return engine

    async def check_upstreams(self, model: str | None) -> UpstreamCheck:
        """Check each server; warn for each that is down; raise ``UpstreamConfigError`` for any that answers
        wrongly, or when none answers and the model name is unknown. Returns the first server that answered
        (a stand-in naming ``model`` when every one is down)."""
        timeout = self.options.connect_timeout_s + 20.0  # a cold server's first token can take seconds
        checks = await asyncio.gather(*(check_upstream(self._client(), u, model, PROBE_IDS, timeout)
                                         for u in self.base_urls))
        served = next((c for c in checks if c.ok), None)
        if served is not None and model is None:  # every server must serve the name the first one gave
            for check in checks:
                if check.ok and served.models[0] not in check.models:
                    check.problem = UpstreamProblem.MODEL_MISSING
                    check.detail = (f"{check.url} serves {check.models}, {served.url} serves {served.models[0]!r}:"
                                    f" every server must serve the same model")
        _raise_for_fatal(checks)
        for check in checks:
            if not check.ok:
                self._problems[check.url] = check.detail
                logger.warning("upstream server down at start: %s (requests to it fail until it answers)",
                               check.detail)
        if served is None and model is None:
            raise UpstreamConfigError(f"no upstream server answered, so the model name is unknown: "
                                      f"{'; '.join(c.detail for c in checks)}; name the model to start anyway")
        return served or UpstreamCheck(self.base_urls[0], models=[model or ""])

    # ------------------------------------------------------------ HTTP plumbing

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            o = self.options
            # sock_connect, not connect: aiohttp's connect timeout also counts the wait for a free connection
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=o.connect_timeout_s, sock_read=o.read_timeout_s)
            headers = {"Authorization": f"Bearer {o.api_key}"} if o.api_key else {}
            connector = aiohttp.TCPConnector(limit=0, limit_per_host=0)  # the cap is _slots, for streams only
            self._session = aiohttp.ClientSession(timeout=timeout, headers=headers, connector=connector)
        return self._session

    def _pick_url(self) -> str:
        least = min(self.in_flight.values())
        candidates = [u for u in self.base_urls if self.in_flight[u] == least]
        return candidates[next(self._rr) % len(candidates)]

    def _body(self, request: GenerateRequest, sp: SamplingParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": list(request.prompt_ids),
            "max_tokens": sp.max_tokens,
            "temperature": sp.temperature,
            "top_p": sp.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
            "return_token_ids": True,
            "skip_special_tokens": False,
            "include_stop_str_in_output": True,
        }
        if sp.top_k:
            body["top_k"] = sp.top_k
        if sp.seed is not None:
            body["seed"] = sp.seed
        if sp.stop:
            body["stop"] = list(sp.stop)
        if sp.stop_token_ids:
            body["stop_token_ids"] = list(sp.stop_token_ids)
        if sp.logprobs:
            body["logprobs"] = 0
        return body

    # ------------------------------------------------------------ generate

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        sp = clamp_to_context(request, self.max_model_len) if self.max_model_len else request.sampling
        body = self._body(request, sp)
        attempt = 0
        while True:
            url = self._pick_url()
            state = _StreamState(prompt_tokens=len(request.prompt_ids))
            self.in_flight[url] += 1
            try:
                async for delta in self._stream(url, body, state):
                    yield delta
                return
            except EngineError as exc:
                retryable = exc.kind in (EngineErrorKind.CONNECTION, EngineErrorKind.SERVER)
                if state.produced or not retryable or attempt >= self.options.retries:
                    exc.partial_tokens = state.produced
                    raise
            finally:
                self.in_flight[url] -= 1
            await asyncio.sleep(self.options.backoff_s * 2**attempt)
            attempt += 1

    async def _stream(self, url: str, body: dict[str, Any], state: _StreamState) -> AsyncIterator[Delta]:
        endpoint = f"{url}/v1/completions"
        try:
            async with self._slots, self._client().post(endpoint, json=body) as resp:
                if resp.status != 200:
                    raise _http_error(resp.status, await resp.text(), endpoint)
                async for line in resp.content:
                    delta = state.on_line(line)
                    if delta is not None:
                        yield delta
        except EngineError:
            raise
        except aiohttp.ConnectionTimeoutError as exc:  # a TimeoutError too: no connection, not a silent stream
            raise EngineError(
                EngineErrorKind.CONNECTION, f"{endpoint}: no connection within {self.options.connect_timeout_s}s"
            ) from exc
        except TimeoutError as exc:
            raise EngineError(
                EngineErrorKind.TIMEOUT, f"{endpoint}: no data for {self.options.read_timeout_s}s"
            ) from exc
        except (aiohttp.ClientError, ConnectionError) as exc:
            raise EngineError(EngineErrorKind.CONNECTION, f"{endpoint}: {exc!r}") from exc
        if state.final is None:
            raise EngineError(EngineErrorKind.CONNECTION, f"{endpoint}: stream ended before the request finished")
        yield Delta([], [], state.final_result())

    async def load_weights(self, state_dict: Any) -> None:
        """Push new weights to every server, then drop their prefix caches (RL weight sync).

        Writes a safetensors file into ``options.weights_dir`` (which the servers must
        see at the same path) and asks each vLLM server to reload from it through its
        dev endpoints ``/collective_rpc`` (``reload_weights``) and ``/reset_prefix_cache``;
        the servers must run with ``VLLM_SERVER_DEV_MODE=1``.
        """
        import os
        import uuid

        from safetensors.torch import save_file

        if not self.options.weights_dir:
            raise EngineError(EngineErrorKind.BAD_REQUEST, "load_weights over HTTP needs options.weights_dir")
        folder = os.path.join(self.options.weights_dir, f"weights-{uuid.uuid4().hex[:8]}")
        os.makedirs(folder, exist_ok=True)
        tensors = {k: v.detach().to("cpu").clone() for k, v in state_dict.items()}  # clone: tied weights
        await asyncio.to_thread(save_file, tensors, os.path.join(folder, "model.safetensors"))
        try:
            for url in self.base_urls:
                body = {"method": "reload_weights", "kwargs": {"weights_path": folder}}
                await self._post_ok(f"{url}/collective_rpc", body)
                await self._post_ok(f"{url}/reset_prefix_cache", None)
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    async def _post_ok(self, url: str, body: dict[str, Any] | None) -> None:
        try:
            async with self._client().post(url, json=body) as resp:
                if resp.status != 200:
                    raise _http_error(resp.status, await resp.text(), url)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise EngineError(EngineErrorKind.CONNECTION, f"POST {url}: {exc!r}") from exc

    async def ready(self) -> bool:
        """True when at least one upstream server answers its ``/health`` with 200 within the connect timeout."""
        checks = await asyncio.gather(*(self._healthy(u) for u in self.base_urls))
        return any(checks)

    def not_ready_reason(self) -> str | None:
        """Why each server failed its last health check (None if none did)."""
        return "; ".join(self._problems[u] for u in self.base_urls if u in self._problems) or None

    async def _healthy(self, url: str) -> bool:
        timeout = aiohttp.ClientTimeout(total=self.options.connect_timeout_s)
        endpoint = f"{url}/health"
        try:
            async with self._client().get(endpoint, timeout=timeout) as resp:
                if resp.status == 200:
                    self._problems.pop(url, None)
                    return True
                self._problems[url] = f"GET {endpoint} answered {resp.status}"
        except TimeoutError:
            self._problems[url] = f"GET {endpoint}: no answer within {self.options.connect_timeout_s}s"
        except (aiohttp.ClientError, ConnectionError) as exc:
            self._problems[url] = f"GET {endpoint}: {type(exc).__name__}: {exc}"
        return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


@dataclass
class _StreamState:
    """Accumulates one SSE stream; the final delta is sent after ``[DONE]``, once usage is known."""

    prompt_tokens: int
    produced: int = 0
    final: FinishReason | None = None
    stop: int | str | None = None
    cached_tokens: int | None = None

    def on_line(self, raw: bytes) -> Delta | None:
        line = raw.decode("utf-8", errors="replace").strip()
        if not line.startswith("data:"):
            return None
        payload = line[5:].strip()
        if payload == "[DONE]":
            return None
        data = json.loads(payload)
        if "error" in data:
            raise EngineError(EngineErrorKind.SERVER, f"server error mid-stream: {data['error']}", self.produced)
        details = (data.get("usage") or {}).get("prompt_tokens_details") or {}
        if details.get("cached_tokens") is not None:
            self.cached_tokens = int(details["cached_tokens"])
        return self._on_choices(data.get("choices") or [])

    def _on_choices(self, choices: list[dict[str, Any]]) -> Delta | None:
        if not choices:
            return None
        choice = choices[0]
        ids = _token_ids(choice)
        lps = (choice.get("logprobs") or {}).get("token_logprobs")
        if choice.get("finish_reason"):
            self.final = _FINISH.get(choice["finish_reason"], FinishReason.ERROR)
            self.stop = choice.get("stop_reason")
        self.produced += len(ids)
        if not ids:
            return None
        if lps is not None and (len(lps) != len(ids) or any(x is None for x in lps)):
            # a missing logprob is the server's failure, never a 0.0 the trainer would believe
            raise EngineError(EngineErrorKind.SERVER, f"{len(ids)} tokens came with logprobs {lps!r}", self.produced)
        return Delta(ids, [float(x) for x in lps] if lps is not None else None)

    def final_result(self) -> Final:
        return Final(self.final or FinishReason.ERROR, self.stop, self.cached_tokens, self.prompt_tokens, self.produced)


_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORT}


def _raise_for_fatal(checks: list[UpstreamCheck]) -> None:
    fatal = [c.detail for c in checks if c.fatal]
    if fatal:
        raise UpstreamConfigError("upstream server misconfigured: " + "; ".join(fatal))


def _token_ids(choice: dict[str, Any]) -> list[int]:
    ids = token_ids_in(choice)
    if ids is not None:
        return ids
    if choice.get("text"):
        raise EngineError(
            EngineErrorKind.BAD_REQUEST,
            "the server returned text without token ids; asyncthink needs return_token_ids "
            "(vLLM) or return_tokens_as_token_ids",
        )
    return []


def _http_error(status: int, text: str, endpoint: str) -> EngineError:
    message = f"{endpoint} answered {status}: {text[:500]}"
    if status >= 500:
        return EngineError(EngineErrorKind.SERVER, message)
    if status == 404:
        return EngineError(EngineErrorKind.NOT_FOUND, f"{message}; check the base URL (the server root or .../v1) "
                                                      f"and the model name")
    if "context length" in text or "maximum model length" in text or "too long" in text:
        return EngineError(EngineErrorKind.CONTEXT_LENGTH, message)
    return EngineError(EngineErrorKind.BAD_REQUEST, message)
