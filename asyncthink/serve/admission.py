"""Admission control: a bounded number of episodes run, a bounded queue waits, everyone else gets 429.

Every episode runs as a task registered here, so shutdown can find it:
``drain`` stops admitting (503), gives running episodes a grace period, then
cancels what is left (which aborts their engine requests) and awaits it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from asyncthink.serve.config import ServeLimits
from asyncthink.serve.errors import ApiError

T = TypeVar("T")


class Admission:
    """Slots for running episodes, a bounded wait for one, and the set of episode tasks."""

    def __init__(self, limits: ServeLimits) -> None:
        self.limits = limits
        self.running = 0
        self.waiting = 0
        self.draining = False
        self.tasks: set[asyncio.Task] = set()
        self._slots = asyncio.Semaphore(limits.max_concurrent_episodes)

    def check_open(self) -> None:
        if self.draining:
            raise ApiError(503, "the server is shutting down", "shutting_down")

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one episode slot; 429 when the queue is full or the wait runs out, 503 when draining."""
        await self._acquire()
        self.running += 1
        try:
            yield
        finally:
            self.running -= 1
            self._slots.release()

    async def _acquire(self) -> None:
        self.check_open()
        if self._slots.locked() and self.waiting >= self.limits.max_queued:
            raise _overloaded(f"{self.running} episodes running and {self.waiting} requests queued")
        self.waiting += 1
        try:
            async with asyncio.timeout(self.limits.queue_timeout_s):
                await self._slots.acquire()
        except TimeoutError:
            raise _overloaded(f"no episode slot freed up within {self.limits.queue_timeout_s:g}s") from None
        finally:
            self.waiting -= 1
        if self.draining:  # queued before shutdown began: refuse rather than start late
            self._slots.release()
            self.check_open()

    def start(self, coro: Coroutine[Any, Any, T]) -> asyncio.Task[T]:
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def drain(self, grace_s: float) -> None:
        """Refuse new work, let running episodes finish for ``grace_s``, then cancel and await the rest."""
        self.draining = True
        pending = set(self.tasks)
        if pending and grace_s > 0:
            await asyncio.wait(pending, timeout=grace_s)
        left = [t for t in pending | self.tasks if not t.done()]
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)


def _overloaded(why: str) -> ApiError:
    return ApiError(429, f"the server is at capacity ({why}); retry later", "rate_limit_exceeded",
                    headers={"Retry-After": "1"})
