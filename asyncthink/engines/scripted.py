"""A real, deterministic engine with no model: a character tokenizer and an engine that plays written rows.

For tests, benchmarks and demos of the runtime without a model. ``CharTokenizer``
maps every character to one token and every protocol tag to one token (or, with
``text_tags``, writes tags character by character, as a tokenizer that was never
extended would), so decoding is exact and fast. ``ScriptedEngine`` answers each
row from a script keyed by the row's last user message (the question for the
organizer, the sub-query for a worker). A row's script is its generated text
with joins written as in the protocol (``A<JOIN-1>B``): a request resumed after
``k`` joins continues with segment ``k`` (``split_after_joins``,
``joins_done``). It keeps the whole engine contract: it streams
``tokens_per_delta`` tokens per delta every ``delay_s``, honours stop ids, stop
strings, max_tokens and the context length, counts live and aborted requests,
and with ``push_native`` its ``stream_to`` works as vLLM's output loop does:
requests produce into one outbox, and one dispatcher task hands every delta to
its consumer, so consumers run outside the task that waits for them.

Rows are found by their user message in the plain prompt format (the
tokenizer has no chat template), so the engine serves only prompts rendered
with this tokenizer. ``asyncthink.training.replay`` plays written traces under a
real tokenizer and chat template instead, keyed by the rendered prompt ids; it
uses the same script format and resume rule (``split_after_joins``,
``joins_done``).
"""

from __future__ import annotations

import asyncio
import functools
import re
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing

from asyncthink.engines.base import Engine, clamp_to_context
from asyncthink.engines.types import Delta, Final, FinishReason, GenerateRequest
from asyncthink.protocol import protocol_tags

__all__ = ["EOS", "CharTokenizer", "ScriptedEngine", "joins_done", "split_after_joins"]

EOS = "<|im_end|>"
_JOIN_SPLIT = re.compile(r"(?<=<JOIN-\d>)|(?<=<JOIN-\d\d>)")
_APPENDED = re.compile(r"(<JOIN-(\d+)>).*?</JOIN-\2>", re.S)  # a join and the return the runtime appended


def split_after_joins(script: str) -> list[str]:
    """A row's script cut after each ``<JOIN-i>``: segment ``k`` is what the row writes after its ``k``-th join
    (``"A<JOIN-1>B"`` -> ``["A<JOIN-1>", "B"]``)."""
    return _JOIN_SPLIT.split(script)


def joins_done(text: str) -> int:
    """How many joins a row's text has been resumed after: the runtime closes each with ``</JOIN-i>``."""
    return text.count("</JOIN-")


class _Lazy(dict):
    """``key -> value`` computed on first use; lookups stay in C (``map(table.__getitem__, ids)``)."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key):
        value = self[key] = self.make(key)
        return value


class CharTokenizer:
    """One token per character, one per protocol tag (or, with ``text_tags``, tags written character by
    character, as in a tokenizer that was never extended); no chat template (prompts use the plain fallback)."""

    chat_template = None
    text_tags = False
    """Default for new tokenizers; flip it to run the same scripts on the text-tag path."""

    def __init__(self, max_index: int = 16, text_tags: bool | None = None) -> None:
        self.text_tags = type(self).text_tags if text_tags is None else text_tags
        self.specials = [EOS] if self.text_tags else [EOS, *protocol_tags(max_index)]
        self.special_ids = {t: 1 + i for i, t in enumerate(self.specials)}
        self.by_id = {i: t for t, i in self.special_ids.items()}
        self.eos_token_id = self.special_ids[EOS]
        self.eos_token = EOS
        self._text = _Lazy(lambda i: self.by_id[i] if i in self.by_id else chr(i - 1000))
        self._bytes = _Lazy(lambda i: self._text[i].encode("utf-8"))
        self.token_bytes = self._bytes.__getitem__  # C-level lookups, like a byte-level tokenizer's table
        self._id = _Lazy(lambda c: 1000 + ord(c)).__getitem__
        self._paragraph = functools.lru_cache(maxsize=4096)(self._encode_paragraph)
        self._pattern = re.compile("|".join(re.escape(t) for t in sorted(self.specials, key=len, reverse=True)))

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        """Paragraph by paragraph, each cached: one token per character makes any split exact, and prompts share
        their long system text, as a fast tokenizer's piece cache would (``asyncthink.piece_encoder``)."""
        *paragraphs, last = text.split("\n\n")
        ids: list[int] = []
        for paragraph in paragraphs:
            ids += self._paragraph(paragraph + "\n\n")
        ids += self._paragraph(last)
        return ids

    def _encode_paragraph(self, text: str) -> tuple[int, ...]:
        ids, pos = [], 0
        for m in self._pattern.finditer(text):
            ids += map(self._id, text[pos : m.start()])
            ids.append(self.special_ids[m.group()])
            pos = m.end()
        ids += map(self._id, text[pos:])
        return tuple(ids)

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return "".join(map(self._text.__getitem__, ids))

    def __len__(self) -> int:
        return 1000 + 0x10FFFF


class ScriptedEngine(Engine):
    """Replays scripted rows; unknown rows generate ``default`` text."""

    kind = "scripted"
    default_tokens_per_delta = 1
    """Used when ``tokens_per_delta`` is not given; raise it to coalesce deltas as a lagging vLLM does."""

    push_native = False
    """``stream_to`` through one dispatcher task (a batched output loop) instead of iterating ``generate``."""

    def __init__(self, scripts: dict[str, str], delay_s: float = 0.0, default: str = "<RETURN>?</RETURN>",
                 max_model_len: int = 100_000, tokens_per_delta: int | None = None) -> None:
        self.tokenizer = CharTokenizer()
        self.scripts = scripts
        self.delay_s = delay_s
        self.default = default
        self.max_model_len = max_model_len
        self.tokens_per_delta = tokens_per_delta or self.default_tokens_per_delta
        self.live = 0
        self.requests: list[GenerateRequest] = []
        self.aborted = 0
        self._outbox: list[tuple[_Push, Delta]] = []
        self._mail = asyncio.Event()
        self._dispatcher: asyncio.Task | None = None
        self._pushing = 0  # streams in stream_to; the dispatcher ends when none are left

    async def stream_to(self, request: GenerateRequest, on_delta: Callable[[Delta], bool]) -> None:
        if not self.push_native:
            return await super().stream_to(request, on_delta)
        if self._dispatcher is None or self._dispatcher.done():
            self._dispatcher = asyncio.get_running_loop().create_task(self._dispatch())
        push = _Push(on_delta)
        producer = asyncio.get_running_loop().create_task(self._produce(request, push))
        self._pushing += 1
        try:
            await push.done
        finally:
            self._pushing -= 1
            self._mail.set()  # lets the dispatcher end if this was the last stream
            producer.cancel()  # stopped, failed or cancelled: abort the request
            await asyncio.gather(producer, return_exceptions=True)

    async def _produce(self, request: GenerateRequest, push: _Push) -> None:
        try:
            async with aclosing(self.generate(request)) as stream:
                async for delta in stream:
                    self._outbox.append((push, delta))
                    self._mail.set()
        except Exception as exc:  # an engine error reaches the consumer's caller, as vLLM's does
            self._outbox.append((push, exc))
            self._mail.set()

    async def _dispatch(self) -> None:
        while self._pushing or self._outbox:
            await self._mail.wait()
            self._mail.clear()
            batch, self._outbox = self._outbox, []
            for push, delta in batch:
                push.deliver(delta)

    def _segment(self, request: GenerateRequest) -> str:
        """What the row's script still has to say: it continues from wherever the row's text stands (after a
        join, or mid-tag after a stop at ``<JOIN-``), the runtime's appended returns left out."""
        text = self.tokenizer.decode(request.prompt_ids)
        head, _, tail = text.rpartition("Assistant:")
        user = head.rsplit("User: ", 1)[-1].strip()
        key = user.rsplit("\n\n", 1)[-1].strip()  # the question or sub-query after any instruction
        script = self.scripts.get(key, self.default)
        generated = _APPENDED.sub(r"\1", tail)
        if script.startswith(generated):
            return script[len(generated) :]
        segments = split_after_joins(script)  # a script that does not match the text: resume by joins done
        done = joins_done(tail)
        return segments[done] if done < len(segments) else ""

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        sp = clamp_to_context(request, self.max_model_len)
        self.requests.append(request)
        ids = self.tokenizer.encode(self._segment(request)) + [self.tokenizer.eos_token_id]
        self.live += 1
        out: list[int] = []
        pending: list[int] = []
        finished = False
        try:
            for tok in ids:
                if self.delay_s:
                    await asyncio.sleep(self.delay_s)
                out.append(tok)
                pending.append(tok)
                final = self._final(out, sp, len(request.prompt_ids))
                if final or len(pending) >= self.tokens_per_delta:
                    yield Delta(pending, [-0.25] * len(pending), final)
                    pending = []
                if final:
                    finished = True
                    return
        finally:
            self.live -= 1
            if not finished:
                self.aborted += 1

    def _final(self, out: list[int], sp, prompt_len: int) -> Final | None:
        tok = out[-1]
        if tok in sp.stop_token_ids or tok == self.tokenizer.eos_token_id:
            return Final(FinishReason.STOP, tok, 0, prompt_len, len(out))
        text = self.tokenizer.decode(out[-20:]) if sp.stop else ""
        for s in sp.stop:
            if text.endswith(s):
                return Final(FinishReason.STOP, s, 0, prompt_len, len(out))
        if len(out) >= sp.max_tokens:
            return Final(FinishReason.LENGTH, None, 0, prompt_len, len(out))
        return None


class _Push:
    """One pushed stream: its consumer, and the future its caller waits on."""

    def __init__(self, on_delta: Callable[[Delta], bool]) -> None:
        self.on_delta = on_delta
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def deliver(self, delta: Delta | Exception) -> None:
        if self.done.done():
            return
        if isinstance(delta, Exception):
            self.done.set_exception(delta)
            return
        try:
            stop = self.on_delta(delta)
        except Exception as exc:
            self.done.set_exception(exc)
            return
        if stop or delta.final is not None:
            self.done.set_result(None)
