"""``asyncthink serve``: run AsyncThink behind an OpenAI-compatible HTTP API until SIGINT or SIGTERM.

Settings come from ``--config`` (a YAML ``ServeConfig``), then ``--set
key=value`` overrides, then the flags given on the command line. The engine
is built from ``--engine``/``--model``/``--base-url`` as for ``asyncthink solve``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import Any

import typer


def serve(
    model: str = typer.Option(None, help="Model folder or name (for --engine openai: the upstream served name)."),
    engine: str = typer.Option(None, help="vllm | openai | hf (default vllm)."),
    base_url: list[str] = typer.Option(
        [], help="--engine openai: upstream server URL, e.g. http://127.0.0.1:8001/v1 (/v1 optional; repeatable)."
    ),
    tokenizer: str = typer.Option(None, help="Tokenizer folder or name (defaults to the model)."),
    dtype: str = typer.Option(None, help="Weights dtype for vllm and hf (default auto)."),
    max_model_len: int = typer.Option(None, help="Context length (defaults to the model's)."),
    served_model_name: str = typer.Option(None, help="The model name clients send (defaults to --model)."),
    host: str = typer.Option(None, help="Address to listen on (default 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default 8000)."),
    mode: str = typer.Option(None, help="Default mode: asyncthink | sequential | parallel (default asyncthink)."),
    capacity: int = typer.Option(None, help="Default pool size (organizer + workers) (default 4)."),
    max_tokens: int = typer.Option(
        None, help="Default organizer token budget when a request gives none (default 1024)."
    ),
    max_worker_tokens: int = typer.Option(None, help="Default per-worker token budget (default 512)."),
    prompt_style: str = typer.Option(None, help="full | compact (compact for tiny models) (default full)."),
    max_concurrent: int = typer.Option(None, help="Episodes running at once (default 16)."),
    max_queued: int = typer.Option(None, help="Requests waiting for a slot before 429 (default 64)."),
    max_body_bytes: int = typer.Option(None, help="Largest request body (default 1 MiB)."),
    max_tokens_limit: int = typer.Option(None, help="Largest max_tokens a request may ask for (default 4096)."),
    config: Path = typer.Option(None, help="YAML ServeConfig file."),
    set_: list[str] = typer.Option([], "--set", help="ServeConfig override key=value (repeatable)."),
    access_log: bool = typer.Option(True, help="Log every request."),
    api_key: str = typer.Option(
        None,
        envvar="ASYNCTHINK_API_KEY",
        help="Require 'Authorization: Bearer KEY' on /v1/* (as vllm serve --api-key).",
    ),
    connect_timeout: float = typer.Option(None, help="--engine openai: seconds to connect upstream (default 10)."),
    read_timeout: float = typer.Option(None, help="--engine openai: seconds without upstream data (default 300)."),
    retries: int = typer.Option(None, help="--engine openai: retries before the first token (default 3)."),
    upstream_api_key: str = typer.Option(None, help="--engine openai: bearer token for the upstream servers."),
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/models and /health; each request runs one episode."""
    from asyncthink.config_io import load_config
    from asyncthink.engines import EngineConfig
    from asyncthink.serve.config import ServeConfig

    flags = {
        "served_model_name": served_model_name, "host": host, "port": port, "runtime.mode": mode,
        "runtime.capacity": capacity, "runtime.max_organizer_tokens": max_tokens,
        "runtime.max_worker_tokens": max_worker_tokens, "runtime.prompts.style": prompt_style,
        "limits.max_concurrent_episodes": max_concurrent, "limits.max_queued": max_queued,
        "limits.max_body_bytes": max_body_bytes, "limits.max_tokens": max_tokens_limit, "api_key": api_key,
        "engine.connect_timeout_s": connect_timeout, "engine.read_timeout_s": read_timeout,
        "engine.retries": retries, "engine.api_key": upstream_api_key,
    }
    overrides = [*set_, *(f"{k}={json.dumps(v)}" for k, v in flags.items() if v is not None)]
    try:
        cfg = load_config(ServeConfig, config, overrides)
        given = {"kind": engine, "model": model, "base_urls": base_url, "tokenizer": tokenizer, "dtype": dtype,
                 "max_model_len": max_model_len}
        engine_cfg = EngineConfig(**{**cfg.engine, **{k: v for k, v in given.items() if v not in (None, [])}})
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_server(cfg, engine_cfg, access_log))


async def run_server(cfg: Any, engine_cfg: Any, access_log: bool = True) -> None:
    """Build the engine, serve until a signal, then shut down gracefully (the app closes the engine)."""
    from asyncthink.engines import build_engine
    from asyncthink.serve.app import SERVER_KEY, create_app, start_server

    engine = await build_engine(engine_cfg)
    try:
        web_app = create_app(engine, cfg, model_name=engine_cfg.model, owns_engine=True)
    except BaseException:
        await engine.close()
        raise
    runner, port = await start_server(web_app, cfg.host, cfg.port, access_log=access_log)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    logging.getLogger(__name__).info("serving %r on http://%s:%d", web_app[SERVER_KEY].model_name, cfg.host, port)
    try:
        await stop.wait()
    finally:
        logging.getLogger(__name__).info("shutting down: draining in-flight episodes")
        await runner.cleanup()


def register(app: typer.Typer) -> None:
    app.command()(serve)
