"""Helpers for the server tests (no tests here): run the app in-process on a free loopback port."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
from aiohttp import web

from asyncthink.config_io import from_dict
from asyncthink.serve import ServeConfig, create_app, start_server
from asyncthink.serve.app import SERVER_KEY, Server

MODEL = "tiny"


@dataclass
class Served:
    """A running server: its base URL, app and runner (``runner.cleanup()`` shuts it down)."""

    url: str
    app: web.Application
    runner: web.AppRunner

    @property
    def server(self) -> Server:
        return self.app[SERVER_KEY]

    def openai(self, **kw: Any):
        from openai import AsyncOpenAI

        return AsyncOpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=kw.pop("timeout", 120),
                           **kw)


@asynccontextmanager
async def serving(engine: Any, owns_engine: bool = False, **config: Any) -> AsyncIterator[Served]:
    """Serve ``engine`` as model ``tiny``; ``config`` is a ``ServeConfig`` mapping (``limits={...}``)."""
    cfg = from_dict(ServeConfig, config)
    app = create_app(engine, cfg, model_name=MODEL, owns_engine=owns_engine)
    runner, port = await start_server(app, "127.0.0.1", 0)
    try:
        yield Served(f"http://127.0.0.1:{port}", app, runner)
    finally:
        await runner.cleanup()


async def post(url: str, path: str, body: Any = None, raw: bytes | None = None,
               timeout: float = 60) -> tuple[int, Any]:
    """POST JSON (or raw bytes); returns (status, parsed JSON or text)."""
    kwargs = {"data": raw, "headers": {"Content-Type": "application/json"}} if raw is not None else {"json": body}
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    async with aiohttp.ClientSession(timeout=client_timeout) as session:
        async with session.post(url + path, **kwargs) as resp:
            text = await resp.text()
            try:
                return resp.status, json.loads(text)
            except ValueError:
                return resp.status, text


async def wait_until(predicate, timeout: float = 10.0, step: float = 0.02) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while asyncio.get_running_loop().time() < deadline:
        if predicate():
            return True
        await asyncio.sleep(step)
    return predicate()


def chat_body(question: str = "Q", **extra: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": [{"role": "user", "content": question}], **extra}
