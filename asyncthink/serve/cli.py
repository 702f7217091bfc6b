"""``asyncthink serve``: run AsyncThink behind an OpenAI-compatible HTTP API until SIGINT or SIGTERM.

Settings come from ``--config`` (a YAML ``ServeConfig``), then ``--set
key=value`` overrides, then the flags given on the command line. The engine
is the config's ``engine`` section (an ``EngineConfig``, as in eval), whose
fields ``--engine``, ``--model``, ``--base-url`` and the other engine flags set.
Defaults in the help come from the config classes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path

import typer

from asyncthink.config_io import default_of
from asyncthink.engines.factory import EngineConfig
from asyncthink.prompts import PromptConfig
from asyncthink.runtime_config import RuntimeConfig
from asyncthink.serve.config import ServeConfig, ServeLimits


def _default(cls: type, name: str) -> str:
    """`` (default X)`` for a help text, X read from the config class (a default is written once)."""
    return f" (default {default_of(cls, name)})"  # enums here are StrEnums: they print as their value


# flag -> the config key it sets; a flag left out keeps the value of --config and --set
ENGINE_FLAGS = {"engine": "engine.kind", "model": "engine.model", "base_url": "engine.base_urls",
                "tokenizer": "engine.tokenizer", "dtype": "engine.dtype", "max_model_len": "engine.max_model_len",
                "connect_timeout": "engine.connect_timeout_s", "read_timeout": "engine.read_timeout_s",
                "retries": "engine.retries", "upstream_api_key": "engine.api_key"}
SERVE_FLAGS = {"served_model_name": "served_model_name", "host": "host", "port": "port", "mode": "runtime.mode",
               "capacity": "runtime.capacity", "max_tokens": "runtime.max_organizer_tokens",
               "max_worker_tokens": "runtime.max_worker_tokens", "prompt_style": "runtime.prompts.style",
               "max_concurrent": "limits.max_concurrent_episodes", "max_queued": "limits.max_queued",
               "max_body_bytes": "limits.max_body_bytes", "max_tokens_limit": "limits.max_tokens",
               "api_key": "api_key"}
NO_ENGINE = ("serve needs an engine: --model (with --engine vllm or hf), --engine openai --base-url URL, "
             "or an engine section in --config")


def serve(
    model: str = typer.Option(None, help="Model folder or name (for --engine openai: the upstream served name)."),
    engine: str = typer.Option(None, help="vllm | openai | hf" + _default(EngineConfig, "kind") + "."),
    base_url: list[str] = typer.Option(
        [], help="--engine openai: upstream server URL, e.g. http://127.0.0.1:8001/v1 (/v1 optional; repeatable)."
    ),
    tokenizer: str = typer.Option(None, help="Tokenizer folder or name (defaults to the model)."),
    dtype: str = typer.Option(None, help="Weights dtype for vllm and hf" + _default(EngineConfig, "dtype") + "."),
    max_model_len: int = typer.Option(None, help="Context length (defaults to the model's)."),
    served_model_name: str = typer.Option(None, help="The model name clients send (defaults to --model)."),
    host: str = typer.Option(None, help="Address to listen on" + _default(ServeConfig, "host") + "."),
    port: int = typer.Option(None, help="Port to listen on" + _default(ServeConfig, "port") + "."),
    mode: str = typer.Option(
        None, help="Default mode: asyncthink | sequential | parallel" + _default(RuntimeConfig, "mode") + "."
    ),
    capacity: int = typer.Option(
        None, help="Default pool size (organizer + workers)" + _default(RuntimeConfig, "capacity") + "."
    ),
    max_tokens: int = typer.Option(
        None, help="Default organizer token budget when a request gives none"
        + _default(RuntimeConfig, "max_organizer_tokens") + "."
    ),
    max_worker_tokens: int = typer.Option(
        None, help="Default per-worker token budget" + _default(RuntimeConfig, "max_worker_tokens") + "."
    ),
    prompt_style: str = typer.Option(
        None, help="full | compact (compact for tiny models)" + _default(PromptConfig, "style") + "."
    ),
    max_concurrent: int = typer.Option(
        None, help="Episodes running at once" + _default(ServeLimits, "max_concurrent_episodes") + "."
    ),
    max_queued: int = typer.Option(
        None, help="Requests waiting for a slot before 429" + _default(ServeLimits, "max_queued") + "."
    ),
    max_body_bytes: int = typer.Option(
        None, help="Largest request body in bytes" + _default(ServeLimits, "max_body_bytes") + "."
    ),
    max_tokens_limit: int = typer.Option(
        None, help="Largest max_tokens a request may ask for" + _default(ServeLimits, "max_tokens") + "."
    ),
    config: Path = typer.Option(None, help="YAML ServeConfig file."),
    set_: list[str] = typer.Option([], "--set", help="ServeConfig override key=value (repeatable)."),
    access_log: bool = typer.Option(True, help="Log every request."),
    api_key: str = typer.Option(
        None,
        envvar="ASYNCTHINK_API_KEY",
        help="Require 'Authorization: Bearer KEY' on /v1/* (as vllm serve --api-key).",
    ),
    connect_timeout: float = typer.Option(
        None, help="--engine openai: seconds to connect upstream" + _default(EngineConfig, "connect_timeout_s") + "."
    ),
    read_timeout: float = typer.Option(
        None, help="--engine openai: seconds without upstream data" + _default(EngineConfig, "read_timeout_s") + "."
    ),
    retries: int = typer.Option(
        None, help="--engine openai: retries before the first token" + _default(EngineConfig, "retries") + "."
    ),
    upstream_api_key: str = typer.Option(None, help="--engine openai: bearer token for the upstream servers."),
) -> None:
    """Serve /v1/chat/completions, /v1/completions, /v1/models and /health; each request runs one episode."""
    from asyncthink.config_io import load_config

    flags = {**SERVE_FLAGS, **ENGINE_FLAGS}
    given = {k: v for k, v in locals().items() if k in flags}  # the parameters, before anything else is bound
    overrides = [*set_, *(f"{flags[k]}={json.dumps(v)}" for k, v in given.items() if v not in (None, []))]
    try:
        cfg = load_config(ServeConfig, config, overrides)
    except (ValueError, TypeError) as exc:
        raise typer.BadParameter(str(exc)) from exc
    if cfg.engine is None:
        raise typer.BadParameter(NO_ENGINE)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(run_server(cfg, access_log))


async def run_server(cfg: ServeConfig, access_log: bool = True) -> None:
    """Build ``cfg.engine``, serve until a signal, then shut down gracefully (the app closes the engine)."""
    from asyncthink.engines import build_engine
    from asyncthink.serve.app import SERVER_KEY, create_app, start_server

    engine = await build_engine(cfg.engine)
    try:
        web_app = create_app(engine, cfg, model_name=cfg.engine.model, owns_engine=True)
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
