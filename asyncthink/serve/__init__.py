"""``asyncthink serve``: AsyncThink behind an OpenAI-compatible API (aiohttp).

One idea per module: ``config`` (settings and limits), ``schema`` (request
validation), ``errors`` (OpenAI-style errors), ``admission`` (concurrency,
queue, drain), ``summary`` (what an episode looks like to a client),
``responses`` (OpenAI response objects), ``streaming`` (SSE), ``app`` (routes
and lifecycle) and ``cli`` (the command).
"""

from asyncthink.serve.app import create_app, start_server
from asyncthink.serve.config import ServeConfig, ServeLimits

__all__ = ["ServeConfig", "ServeLimits", "create_app", "start_server"]
