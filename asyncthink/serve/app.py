"""The aiohttp application: OpenAI-compatible routes over one engine, one episode per request.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions`` (JSON or SSE
streaming), ``GET /v1/models``, ``GET /v1/models/{model}``, ``GET /health``.

A request is read (size and time bounded), validated, admitted (a slot, a
bounded queue, else 429), and then runs one episode as a registered task. If
the client goes away the handler is cancelled (``handler_cancellation``), and
cancelling the episode aborts its workers' engine requests. Shutdown
(``runner.cleanup()``) stops listening, refuses new requests with 503, lets
in-flight episodes finish for ``shutdown_grace_s``, cancels the rest, and
closes the engine if the app owns it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import web

from asyncthink.engines.base import Engine
from asyncthink.engines.types import EngineErrorKind
from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.executor import OFF_LOOP_CHARS, EpisodeExecutor, TextDelta
from asyncthink.gc_tuning import serving_gc
from asyncthink.modes import ORGANIZER_ROW
from asyncthink.prompts import render
from asyncthink.serve.admission import Admission
from asyncthink.serve.config import ServeConfig
from asyncthink.serve.connections import ConnectionGuard
from asyncthink.serve.errors import ApiError, auth_middleware, error_middleware
from asyncthink.serve.responses import ResponseShape
from asyncthink.serve.schema import ApiKind, EpisodeRequest, RequestParser, decode_json
from asyncthink.serve.streaming import END, SSE_HEADERS, StreamEncoder, next_events

READY_TTL_S = 1.0  # /health reuses the engine's last readiness answer for this long
logger = logging.getLogger(__name__)

# A write that leaves the transport's buffer this far below asyncio's pause point (64 KiB) cannot wait on the
# client, so it skips the write timeout, which costs more than the write itself at one chunk per token.
NO_WAIT_BYTES = 16 * 1024
ENGINE_ERRORS = {  # engine failure kind -> (status, code) a client sees; details go to the log only
    EngineErrorKind.TIMEOUT: (504, "engine_timeout"),
    EngineErrorKind.CONNECTION: (502, "engine_unavailable"),
    EngineErrorKind.NOT_FOUND: (502, "upstream_not_found"),  # a wrong upstream URL or model name
}
EXECUTOR_CACHE = 32  # executors keep per-tokenizer tag caches: reuse them across requests with equal settings


class Server:
    """The state behind the routes: engine, settings, admission and episode tasks."""

    def __init__(self, engine: Engine, config: ServeConfig, model_name: str, owns_engine: bool) -> None:
        self.engine, self.config, self.model_name, self.owns_engine = engine, config, model_name, owns_engine
        self.parser = RequestParser(model_name, config, engine.max_model_len)
        self.admission = Admission(config.limits)
        self.eos = getattr(engine.tokenizer, "eos_token", None)
        self._executors: OrderedDict[str, EpisodeExecutor] = OrderedDict()
        self.connections = ConnectionGuard(config.limits)
        self._ready: tuple[float, asyncio.Task[bool]] | None = None  # (when asked, the shared engine check)
        self._gc = contextlib.ExitStack()

    # ------------------------------------------------------------ routes

    async def chat(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, ApiKind.CHAT)

    async def completions(self, request: web.Request) -> web.StreamResponse:
        return await self._complete(request, ApiKind.COMPLETION)

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [self._model_card()]})

    async def model(self, request: web.Request) -> web.Response:
        name = request.match_info["model"]
        if name != self.model_name:
            raise ApiError(404, f"The model {name!r} does not exist", "model_not_found", "model")
        return web.json_response(self._model_card())

    async def health(self, request: web.Request) -> web.Response:
        """200 only when this server admits requests and its engine can serve them (a frozen upstream is 503)."""
        adm = self.admission
        ready = await self._engine_ready()
        status = "draining" if adm.draining else "ok" if ready else "engine_unavailable"
        body = {"status": status, "engine_ready": ready, "running": adm.running, "queued": adm.waiting}
        if not ready:
            body["reason"] = self.engine.not_ready_reason() or "the engine is not ready"
        return web.json_response(body, status=200 if status == "ok" else 503)

    async def _engine_ready(self) -> bool:
        """The engine's readiness, asked at most once a second: a burst of health probes must not fan out
        to every upstream server (each check can take the HTTP engine's connect timeout)."""
        now = asyncio.get_running_loop().time()
        if self._ready is None or now - self._ready[0] > READY_TTL_S:
            self._ready = (now, asyncio.ensure_future(self.engine.ready()))
        return await asyncio.shield(self._ready[1])

    def _model_card(self) -> dict[str, Any]:
        return {"id": self.model_name, "object": "model", "created": 0, "owned_by": "asyncthink",
                "max_model_len": self.engine.max_model_len}

    # ------------------------------------------------------------ one request

    async def _complete(self, request: web.Request, kind: ApiKind) -> web.StreamResponse:
        self.admission.check_open()
        raw = await self._read_body(request)
        if request.content_type != "application/json":  # not form or text bodies that happen to parse
            raise ApiError(415, f"the body must be JSON (Content-Type: application/json), got {request.content_type!r}",
                           "unsupported_media_type")
        req = self.parser.parse(kind, decode_json(raw))
        await self._check_context(req)  # before a stream starts: a 400, not a 200 that ends in an error event
        shape = ResponseShape.new(kind, req.model)
        async with self.admission.slot():
            if req.stream:
                return await self._stream(request, req, shape)
            return web.json_response(shape.full(await self._run(req, shape), self.eos),
                                     dumps=lambda d: json.dumps(d, ensure_ascii=False))

    async def _read_body(self, request: web.Request) -> bytes:
        limits = self.config.limits
        too_big = ApiError(413, f"the request body is larger than {limits.max_body_bytes} bytes",
                           "request_too_large")
        if request.content_length is not None and request.content_length > limits.max_body_bytes:
            raise too_big
        try:
            async with asyncio.timeout(limits.body_timeout_s):
                return await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise too_big from None
        except TimeoutError:
            raise ApiError(408, f"the request body took longer than {limits.body_timeout_s:g}s",
                           "request_timeout") from None

    async def _check_context(self, req: EpisodeRequest) -> None:
        limit = self.engine.max_model_len
        if not limit:
            return
        big = len(req.question) > OFF_LOOP_CHARS
        tokens = len(await asyncio.to_thread(_top_prompt, self.engine.tokenizer, req) if big
                     else _top_prompt(self.engine.tokenizer, req))
        if tokens >= limit:
            raise ApiError(400, f"the prompt is {tokens} tokens; the model's context is {limit}",
                           "context_length_exceeded", "messages")

    async def _run(self, req: EpisodeRequest, shape: ResponseShape) -> Episode:
        task = self._launch(req, shape.id)
        try:
            ep = await task
        except asyncio.CancelledError:
            if _cancelling():
                raise  # the client went away: the episode is being cancelled with us
            raise ApiError(503, "the server shut down before the episode finished", "shutting_down") from None
        finally:
            await _stop(task)
        failure = engine_failure(ep)
        if failure is not None:
            raise failure
        return ep

    async def _stream(self, request: web.Request, req: EpisodeRequest, shape: ResponseShape) -> web.StreamResponse:
        queue: asyncio.Queue = asyncio.Queue()
        task = self._launch(req, shape.id, queue.put_nowait if req.stream_workers else _without_worker_text(queue))
        task.add_done_callback(lambda _: queue.put_nowait(END))
        encoder = StreamEncoder(shape, req, self.eos, engine_failure)
        response = web.StreamResponse(headers=SSE_HEADERS)
        try:
            await response.prepare(request)
            await self._write(request, response, encoder.start())
            while not encoder.finished:
                await self._write(request, response, encoder.encode(await next_events(queue), task))
        except (ConnectionError, TimeoutError) as exc:  # the client went away or stopped reading
            logger.info("stream %s: client gone (%r); cancelling its episode", shape.id, exc)
        finally:
            await _stop(task)
        return response

    async def _write(self, request: web.Request, response: web.StreamResponse, payload: bytes) -> None:
        transport = request.transport
        if transport is None:
            raise ConnectionResetError("the client is gone")
        if not payload:
            return
        if transport.get_write_buffer_size() + len(payload) < NO_WAIT_BYTES:
            await response.write(payload)
            return
        async with asyncio.timeout(self.config.limits.write_timeout_s):  # the client is falling behind
            await response.write(payload)

    def _launch(self, req: EpisodeRequest, episode_id: str, on_event: Any = None) -> asyncio.Task[Episode]:
        executor = self._executor(req)
        problem = {"question": req.question}
        return self.admission.start(executor.run(problem, seed=req.seed, episode_id=episode_id, on_event=on_event))

    def _executor(self, req: EpisodeRequest) -> EpisodeExecutor:
        executor = self._executors.pop(req.runtime_key, None) or EpisodeExecutor(self.engine, req.runtime)
        self._executors[req.runtime_key] = executor
        if len(self._executors) > EXECUTOR_CACHE:
            self._executors.popitem(last=False)
        return executor

    # ------------------------------------------------------------ lifecycle

    async def on_startup(self, app: web.Application) -> None:
        self.connections.start()
        # the start-up heap (collected, then frozen) is skipped by every pass; full passes rarer while serving
        self._gc.enter_context(serving_gc(collect_first=True))

    async def on_shutdown(self, app: web.Application) -> None:
        await self.admission.drain(self.config.shutdown_grace_s)

    async def on_cleanup(self, app: web.Application) -> None:
        self._gc.close()
        await self.connections.stop()
        if self.owns_engine:
            await self.engine.close()


def engine_failure(ep: Episode) -> ApiError | None:
    """How an episode that failed in the engine is reported (None if it did not)."""
    if ep.status != EpisodeStatus.ERROR:
        return None
    logger.warning("episode %s failed in the engine: %s", ep.episode_id, ep.error)
    if ep.error_kind == EngineErrorKind.CONTEXT_LENGTH:
        return ApiError(400, "the question does not fit the model's context", "context_length_exceeded", "messages")
    kind = EngineErrorKind(ep.error_kind) if ep.error_kind in set(EngineErrorKind) else None
    status, code = ENGINE_ERRORS.get(kind, (500, "engine_error"))
    return ApiError(status, f"the engine failed ({kind or 'internal'}); see the server log", code)


def _top_prompt(tokenizer: Any, req: EpisodeRequest) -> list[int]:
    """The ids of the organizer's (or each trace's) prompt, as the executor renders them (no task instruction)."""
    rt = req.runtime
    return render(tokenizer, rt.mode.top_messages(rt.prompts, req.question, "", rt.capacity), rt.prompts)


def _without_worker_text(queue: asyncio.Queue) -> Any:
    """An observer that queues all but the workers' text (most tokens of an episode), which no one reads."""
    def observe(event: Any) -> None:
        if not (isinstance(event, TextDelta) and event.row_id != ORGANIZER_ROW):
            queue.put_nowait(event)

    return observe


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


async def _stop(task: asyncio.Task) -> None:
    """Cancel the episode if it is still running and wait until its workers are gone."""
    if not task.done():
        task.cancel()
    await asyncio.gather(task, return_exceptions=True)


SERVER_KEY = web.AppKey("asyncthink_server", Server)


def create_app(engine: Engine, config: ServeConfig | None = None, model_name: str | None = None,
               owns_engine: bool = False) -> web.Application:
    """The application serving ``engine``; ``owns_engine`` closes the engine at cleanup."""
    config = config or ServeConfig()
    name = config.served_model_name or model_name or getattr(engine, "model", None) or "asyncthink"
    server = Server(engine, config, name, owns_engine)
    middlewares = [server.connections.middleware, error_middleware, auth_middleware(config.api_key)]
    app = web.Application(middlewares=middlewares, client_max_size=config.limits.max_body_bytes)
    app[SERVER_KEY] = server
    app.add_routes([
        web.post("/v1/chat/completions", server.chat),
        web.post("/v1/completions", server.completions),
        web.get("/v1/models", server.models),
        web.get("/v1/models/{model:.+}", server.model),
        web.get("/health", server.health),
    ])
    app.on_startup.append(server.on_startup)
    app.on_shutdown.append(server.on_shutdown)
    app.on_cleanup.append(server.on_cleanup)
    return app


async def start_server(app: web.Application, host: str = "127.0.0.1", port: int = 0,
                       access_log: bool = False) -> tuple[web.AppRunner, int]:
    """Start listening; returns the runner (``await runner.cleanup()`` shuts down gracefully) and the port."""
    kwargs: dict[str, Any] = {} if access_log else {"access_log": None}
    # handler_cancellation: a client that disconnects cancels its handler, hence its episode and workers
    runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=10.0, **kwargs)
    await runner.setup()
    assert runner.server is not None
    app[SERVER_KEY].connections.attach(runner.server)
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, runner.addresses[0][1]
