"""Server-sent events: executor events become OpenAI stream chunks as the episode runs.

The organizer's text goes out as ordinary content deltas (``delta.content`` for
chat, ``text`` for completions) as it is generated, including the returned
text the runtime appends after each ``<JOIN-i>``, so the concatenated deltas
equal the non-streaming text. Consecutive text events waiting in the queue
are merged into one chunk. Everything else rides in an extra ``asyncthink``
field of a chunk with an empty delta, which plain clients ignore:

- ``{"event": "fork", "parent", "row_id", "index", "subquery"}``
- ``{"event": "join", "parent", "row_id", "index", "returned", "wait_s"}``
- ``{"event": "text", "row_id", "text"}``: a worker's (or parallel trace's)
  text, only with ``asyncthink.stream_workers``
- ``{"event": "done", ...summary}`` on the chunk that carries ``finish_reason``.

In parallel mode no single row is the answer until the vote, so the winning
trace's text is sent as one content chunk at the end. An episode that fails
in the engine, or is cancelled by shutdown, ends the stream with an OpenAI
error object (``data: {"error": ...}``); the stream always ends with
``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any

from asyncthink.episode import Episode, EpisodeStatus
from asyncthink.executor import EpisodeDone, TextDelta, WorkerForked, WorkerJoined
from asyncthink.serve.errors import ApiError
from asyncthink.serve.responses import ResponseShape
from asyncthink.serve.schema import ApiKind, EpisodeRequest
from asyncthink.serve.summary import finish_reason, response_text, summary

logger = logging.getLogger(__name__)
END = object()  # queued once the episode task is done, whatever its outcome
SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache",
               "X-Accel-Buffering": "no"}


def sse(data: dict[str, Any] | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


async def next_events(queue: asyncio.Queue) -> list[Any]:
    """Wait for one event, then take whatever else is already queued (merging text cuts chunk count)."""
    events = [await queue.get()]
    while not queue.empty():
        events.append(queue.get_nowait())
    return events


class StreamEncoder:
    """Turns batches of executor events into SSE bytes for one request."""

    def __init__(self, shape: ResponseShape, req: EpisodeRequest, eos: str | None,
                 failure: Callable[[Episode], ApiError | None] | None = None) -> None:
        self.shape, self.req, self.eos = shape, req, eos
        self.content_row = req.runtime.mode.content_row()
        self.failure = failure  # how an episode that failed in the engine is reported
        self.finished = False

    def start(self) -> bytes:
        return sse(self.shape.chunk(role=True)) if self.shape.kind == ApiKind.CHAT else b""

    def encode(self, events: list[Any], task: asyncio.Task) -> bytes:
        out: list[bytes] = []
        text: list[str] = []
        for ev in events:
            if isinstance(ev, TextDelta) and ev.row_id == self.content_row:
                text.append(ev.text[: -len(self.eos)] if self.eos and ev.text.endswith(self.eos) else ev.text)
                continue
            if text:
                out.append(self._text(text))
                text = []
            out += self._other(ev, task)
        if text:
            out.append(self._text(text))
        return b"".join(out)

    def _text(self, parts: list[str]) -> bytes:
        text = "".join(parts)
        return sse(self.shape.chunk(text)) if text else b""

    def _other(self, ev: Any, task: asyncio.Task) -> list[bytes]:
        if isinstance(ev, WorkerForked):
            return [self._event({"event": "fork", "parent": ev.parent, "row_id": ev.row_id, "index": ev.index,
                                 "subquery": ev.subquery})]
        if isinstance(ev, WorkerJoined):
            return [self._event({"event": "join", "parent": ev.parent, "row_id": ev.row_id, "index": ev.index,
                                 "returned": ev.returned, "wait_s": round(ev.wait_s, 6)})]
        if isinstance(ev, TextDelta):
            return [self._event({"event": "text", "row_id": ev.row_id, "text": ev.text})] \
                if self.req.stream_workers else []
        if isinstance(ev, EpisodeDone):
            return self._done(ev.episode)
        if ev is END and not self.finished:
            return self._abort(task)
        return []

    def _event(self, event: dict[str, Any]) -> bytes:
        return sse(self.shape.chunk(event=event))

    def _done(self, ep: Episode) -> list[bytes]:
        error = self.failure(ep) if self.failure is not None and ep.status == EpisodeStatus.ERROR else None
        if error is not None:
            return self._close([sse(error.body())])
        out = []
        if self.content_row is None:
            out.append(sse(self.shape.chunk(response_text(ep, self.eos))))
        out.append(sse(self.shape.chunk(finish=finish_reason(ep), event={"event": "done", **summary(ep)})))
        if self.req.include_usage:
            out.append(sse(self.shape.usage_chunk(ep)))
        return self._close(out)

    def _abort(self, task: asyncio.Task) -> list[bytes]:
        """The episode ended without a record: cancelled at shutdown, or a bug."""
        if task.cancelled():
            error = ApiError(503, "the server shut down before the episode finished", "shutting_down")
        else:
            logger.error("episode %s failed", self.shape.id, exc_info=task.exception())
            error = ApiError(500, "internal server error", "internal_error")
        return self._close([sse(error.body())])

    def _close(self, out: list[bytes]) -> list[bytes]:
        self.finished = True
        return [*out, sse("[DONE]")]
