"""Connections that send no complete request are closed: a deadline for request heads, a cap on idle ones.

aiohttp closes a connection that sends nothing, but one that sends part of a
request head and then stalls stays open forever, and idle keep-alive
connections are not counted. ``ConnectionGuard`` hooks into aiohttp's
low-level server: a connection is *idle* from its opening, and again after
each request, until the next request head is complete; an idle connection
past ``header_timeout_s`` is closed by a sweeper task, and when more than
``max_idle_connections`` are idle the oldest is closed at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from typing import Any

from aiohttp import web

from asyncthink.serve.config import ServeLimits

logger = logging.getLogger(__name__)


class ConnectionGuard:
    """Tracks idle connections of one aiohttp ``web.Server`` and closes the stalled and the surplus."""

    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self.idle: OrderedDict[Any, float] = OrderedDict()  # protocol -> deadline for its next request head
        self.closed_stalled = 0
        self.closed_surplus = 0
        self._sweeper: asyncio.Task | None = None

    def attach(self, server: web.Server) -> None:
        """Wrap the server's connection hooks (before it accepts connections)."""
        made, lost, factory = server.connection_made, server.connection_lost, server.request_factory

        def connection_made(handler: Any, transport: Any) -> None:
            made(handler, transport)
            self.mark_idle(handler)

        def connection_lost(handler: Any, exc: BaseException | None) -> None:
            self.idle.pop(handler, None)
            lost(handler, exc)

        def request_factory(message: Any, payload: Any, protocol: Any, writer: Any, task: Any) -> web.BaseRequest:
            self.idle.pop(protocol, None)  # the head is complete
            return factory(message, payload, protocol, writer, task)

        server.connection_made = connection_made  # type: ignore[method-assign]
        server.connection_lost = connection_lost  # type: ignore[method-assign]
        server.request_factory = request_factory

    def mark_idle(self, protocol: Any) -> None:
        """``protocol`` now waits for a request head: start its deadline; close the oldest idle past the cap."""
        if protocol is None or protocol.transport is None:
            return
        self.idle[protocol] = asyncio.get_running_loop().time() + self.limits.header_timeout_s
        self.idle.move_to_end(protocol)
        while len(self.idle) > self.limits.max_idle_connections:
            oldest, _ = self.idle.popitem(last=False)
            self.closed_surplus += 1
            _close(oldest)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Once a response is fully written the connection waits for the next head: idle again, with a fresh
        deadline. (The outermost middleware, so the response is final when it writes it out here; marking it
        idle before the body is out would let the sweeper cut a slow reader off mid-body.)"""
        try:
            response = await handler(request)
            if not response.prepared:
                await response.prepare(request)
            await response.write_eof()
            return response
        finally:
            self.mark_idle(request.protocol)

    def start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep(), name="connection-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper

    async def _sweep(self) -> None:
        step = min(1.0, self.limits.header_timeout_s / 4)
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(step)
            now = loop.time()
            for protocol in [p for p, deadline in self.idle.items() if deadline <= now]:
                self.idle.pop(protocol, None)
                self.closed_stalled += 1
                _close(protocol)


def _close(protocol: Any) -> None:
    transport = protocol.transport
    if transport is not None:
        transport.close()
