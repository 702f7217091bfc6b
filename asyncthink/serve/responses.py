"""The OpenAI objects this server returns: ``chat.completion``, ``text_completion`` and their stream chunks.

Every body carries the standard fields that clients parse, plus one extra
top-level ``asyncthink`` field (plain clients ignore unknown fields). Stream
chunks always hold one choice (an empty delta when the chunk only carries an
``asyncthink`` event), except the optional usage chunk, whose choices are
empty as in OpenAI's ``stream_options.include_usage``.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from asyncthink.episode import Episode
from asyncthink.serve.schema import ApiKind
from asyncthink.serve.summary import finish_reason, response_text, summary, usage


@dataclass(frozen=True)
class ResponseShape:
    """Builds the bodies and chunks of one request (one id, one ``created`` time)."""

    kind: ApiKind
    model: str
    id: str = ""
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def new(cls, kind: ApiKind, model: str) -> ResponseShape:
        prefix = "chatcmpl" if kind == ApiKind.CHAT else "cmpl"
        return cls(kind, model, f"{prefix}-{uuid.uuid4().hex}")

    def full(self, ep: Episode, eos: str | None) -> dict[str, Any]:
        """The non-streaming body."""
        text, reason = response_text(ep, eos), finish_reason(ep)
        if self.kind == ApiKind.CHAT:
            choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                      "finish_reason": reason}
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": reason}
        return {**self._head(final=True), "choices": [choice], "usage": usage(ep), "asyncthink": summary(ep)}

    def chunk(self, text: str | None = None, *, role: bool = False, finish: str | None = None,
              event: dict[str, Any] | None = None) -> dict[str, Any]:
        """One stream chunk: a text delta, the chat role opener, the finish reason, and/or an event."""
        if self.kind == ApiKind.CHAT:
            delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {}
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        out = {**self._head(final=False), "choices": [choice]}
        if event is not None:
            out["asyncthink"] = event
        return out

    def usage_chunk(self, ep: Episode) -> dict[str, Any]:
        return {**self._head(final=False), "choices": [], "usage": usage(ep)}

    def _head(self, final: bool) -> dict[str, Any]:
        if self.kind == ApiKind.CHAT:
            kind = "chat.completion" if final else "chat.completion.chunk"
        else:
            kind = "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model}
