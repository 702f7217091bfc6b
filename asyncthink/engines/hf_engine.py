"""Hugging Face transformers engine: many concurrent requests on one in-process model.

Step-level continuous batching: a background loop admits new requests
(prefilling each), then runs one batched decode step for every active
request over a shared, left-padded KV cache. Requests join and leave between
steps; the cache is re-formed only when membership changes. Forward passes
run in a worker thread so the event loop stays responsive.

The engine can serve a model object it does not own (``HFEngine(model,
tokenizer)``), so an RL trainer's rollouts use its live weights with no copy.
There is no prefix cache: a resumed organizer prefills its whole prompt again
(``cached_tokens`` is reported as 0).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import torch

from asyncthink.engines.base import Engine, clamp_to_context
from asyncthink.engines.types import (
    Delta,
    EngineError,
    EngineErrorKind,
    Final,
    FinishReason,
    GenerateRequest,
    SamplingParams,
)


@dataclass
class _Seq:
    """One in-flight request inside the batch loop."""

    request: GenerateRequest
    sampling: SamplingParams
    out: asyncio.Queue
    generator: torch.Generator | None
    tokens: list[int] = field(default_factory=list)
    next_input: int | None = None
    length: int = 0  # real tokens in the cache
    cancelled: bool = False
    done: bool = False


class HFEngine(Engine):
    """A transformers causal LM served with step-level batching."""

    kind = "hf"

    def __init__(self, model: Any, tokenizer: Any, *, max_batch: int = 64, max_model_len: int | None = None) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_batch = max_batch
        self.max_model_len = max_model_len or int(getattr(model.config, "max_position_embeddings", 4096))
        self._pending: list[_Seq] = []
        self._active: list[_Seq] = []
        self._cache: Any = None
        self._mask: torch.Tensor | None = None
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self._lock = threading.Lock()  # one forward at a time (trainer and engine may share the model)
        self._closed = False
        self._eos = set(_eos_ids(model, tokenizer))

    @classmethod
    def from_pretrained(cls, path: str, *, device: str = "cpu", dtype: str = "auto", **kw: Any) -> HFEngine:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype).to(device)
        model.eval()
        return cls(model, AutoTokenizer.from_pretrained(path), **kw)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------ public API

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        if self._closed:
            raise EngineError(EngineErrorKind.CLOSED, "the transformers engine is closed")
        sampling = clamp_to_context(request, self.max_model_len)
        seq = _Seq(request, sampling, asyncio.Queue(), _generator(sampling.seed, self.device))
        self._pending.append(seq)
        self._ensure_loop()
        self._wake.set()
        try:
            while True:
                item = await seq.out.get()
                if isinstance(item, Exception):
                    raise item
                yield item
                if item.final is not None:
                    return
        finally:
            seq.cancelled = True

    async def close(self) -> None:
        self._closed = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)
        for seq in self._pending + self._active:
            seq.out.put_nowait(EngineError(EngineErrorKind.CLOSED, "engine closed"))
        self._pending, self._active, self._cache = [], [], None

    # ------------------------------------------------------------ batch loop

    def _ensure_loop(self) -> None:
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="hf-engine-loop")

    async def _run(self) -> None:
        while not self._closed:
            self._drop_finished()
            if not self._active and not self._pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            try:
                await self._admit()
                # a request cancelled (or finished on its first token) while prefills ran has no next input
                self._drop_finished()
                if self._active:
                    await asyncio.to_thread(self._locked, self._decode_step)
                    self._emit_step()
            except Exception as exc:  # a failed forward fails every request in the batch, not the loop
                self._fail_all(exc)
            await asyncio.sleep(0)

    def _locked(self, fn: Any, *args: Any) -> Any:
        with self._lock, torch.inference_mode():
            return fn(*args)

    def _drop_finished(self) -> None:
        keep = [i for i, s in enumerate(self._active) if not (s.done or s.cancelled)]
        if len(keep) != len(self._active):
            self._active = [self._active[i] for i in keep]
            self._select_rows(keep)
        self._pending = [s for s in self._pending if not s.cancelled]

    async def _admit(self) -> None:
        room = self.max_batch - len(self._active)
        # admitted requests stay in _pending until merged, so a failed prefill (or close) still answers them
        for seq in list(self._pending[:room]):
            if seq.cancelled:
                self._pending.remove(seq)
                continue
            cache, logits = await asyncio.to_thread(self._locked, self._prefill, seq.request.prompt_ids)
            self._pending.remove(seq)
            if seq.cancelled:  # cancelled during its own prefill: never joins the batch
                continue
            seq.length = len(seq.request.prompt_ids)
            self._merge(seq, cache)
            self._sample_and_emit(seq, logits)

    def _fail_all(self, exc: Exception) -> None:
        err = EngineError(EngineErrorKind.SERVER, f"{type(exc).__name__}: {exc}")
        for seq in self._active + self._pending:
            if not seq.done:
                seq.done = True
                seq.out.put_nowait(err)
        self._active, self._pending, self._cache, self._mask = [], [], None, None

    # ------------------------------------------------------------ model steps (worker thread)

    def _prefill(self, prompt_ids: list[int]) -> tuple[Any, torch.Tensor]:
        from transformers import DynamicCache

        ids = torch.tensor([prompt_ids], device=self.device)
        out = self.model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True)
        return out.past_key_values, out.logits[0, -1].float()

    def _decode_step(self) -> None:
        seqs = self._active
        ids = torch.tensor([[s.next_input] for s in seqs], device=self.device)
        positions = torch.tensor([[s.length] for s in seqs], device=self.device)
        ones = torch.ones(len(seqs), 1, dtype=self._mask.dtype, device=self.device)
        self._mask = torch.cat([self._mask, ones], dim=1)
        out = self.model(
            input_ids=ids,
            attention_mask=self._mask,
            position_ids=positions,
            past_key_values=self._cache,
            use_cache=True,
        )
        self._cache = out.past_key_values
        self._step_logits = out.logits[:, -1].float()

    # ------------------------------------------------------------ cache bookkeeping

    def _merge(self, seq: _Seq, cache: Any) -> None:
        """Add one prefilled sequence to the batch cache, left-padding to a common length."""
        from transformers import DynamicCache

        new_layers = [(k, v) for k, v, *_ in cache]
        if self._cache is None or not self._active:
            self._cache = DynamicCache(ddp_cache_data=new_layers)
            self._mask = torch.ones(1, seq.length, dtype=torch.long, device=self.device)
            self._active = [seq]
            return
        old_layers = [(k, v) for k, v, *_ in self._cache]
        width = max(self._mask.shape[1], seq.length)
        merged = []
        for (ok, ov), (nk, nv) in zip(old_layers, new_layers, strict=True):
            merged.append(
                (torch.cat([_lpad(ok, width), _lpad(nk, width)]), torch.cat([_lpad(ov, width), _lpad(nv, width)]))
            )
        new_mask = torch.ones(1, seq.length, dtype=self._mask.dtype, device=self.device)
        self._mask = torch.cat([_lpad(self._mask, width, dim=1), _lpad(new_mask, width, dim=1)])
        self._cache = DynamicCache(ddp_cache_data=merged)
        self._active.append(seq)

    def _select_rows(self, keep: list[int]) -> None:
        if not keep:
            self._cache, self._mask = None, None
            return
        index = torch.tensor(keep, device=self.device)
        self._cache.batch_select_indices(index)
        self._mask = self._mask[index]
        trim = int((self._mask.cumsum(dim=1) == 0).sum(dim=1).min())  # left padding shared by all rows
        if trim:
            self._mask = self._mask[:, trim:]
            _trim_left(self._cache, trim)

    # ------------------------------------------------------------ sampling and streaming

    def _emit_step(self) -> None:
        for row, seq in enumerate(self._active):
            seq.length += 1
            self._sample_and_emit(seq, self._step_logits[row])

    def _sample_and_emit(self, seq: _Seq, logits: torch.Tensor) -> None:
        if seq.cancelled or seq.done:
            return
        token, logprob = _sample(logits, seq.sampling, seq.generator)
        seq.tokens.append(token)
        seq.next_input = token
        final = self._final(seq, token)
        seq.out.put_nowait(Delta([token], [logprob] if seq.request.sampling.logprobs else None, final))
        if final is not None:
            seq.done = True

    def _final(self, seq: _Seq, token: int) -> Final | None:
        sp = seq.sampling
        stop: int | str | None = None
        if token in self._eos or token in sp.stop_token_ids:
            stop = token
        elif sp.stop:
            stop = _matched_stop_string(self.tokenizer, seq.tokens, sp.stop)
        if stop is None and len(seq.tokens) < sp.max_tokens:
            return None
        reason = FinishReason.STOP if stop is not None else FinishReason.LENGTH
        return Final(reason, stop, 0, len(seq.request.prompt_ids), len(seq.tokens))


# ---------------------------------------------------------------- helpers


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    ids = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = ids if isinstance(ids, list) else [ids]
    return [i for i in [*ids, getattr(tokenizer, "eos_token_id", None)] if i is not None]


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _lpad(t: torch.Tensor, width: int, dim: int = 2) -> torch.Tensor:
    missing = width - t.shape[dim]
    if missing <= 0:
        return t
    shape = list(t.shape)
    shape[dim] = missing
    return torch.cat([torch.zeros(shape, dtype=t.dtype, device=t.device), t], dim=dim)


def _trim_left(cache: Any, n: int) -> None:
    for layer in cache.layers:
        layer.keys = layer.keys[:, :, n:]
        layer.values = layer.values[:, :, n:]


def processed_logprobs(logits: torch.Tensor, sp: SamplingParams) -> torch.Tensor:
    """Log-probabilities of the distribution sampled from: temperature, then top-k, then top-p."""
    if sp.temperature == 0:
        return torch.log_softmax(logits, dim=-1)
    scaled = logits / sp.temperature
    if sp.top_k > 0 and sp.top_k < scaled.shape[-1]:
        kth = torch.topk(scaled, sp.top_k).values[-1]
        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
    if sp.top_p < 1.0:
        sorted_logits, order = torch.sort(scaled, descending=True)
        cum = torch.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        drop = cum - torch.softmax(sorted_logits, dim=-1) > sp.top_p
        scaled = scaled.scatter(0, order, sorted_logits.masked_fill(drop, float("-inf")))
    return torch.log_softmax(scaled, dim=-1)


def _sample(logits: torch.Tensor, sp: SamplingParams, generator: torch.Generator | None) -> tuple[int, float]:
    logprobs = processed_logprobs(logits, sp)
    if sp.temperature == 0:
        token = int(torch.argmax(logits))
    else:
        token = int(torch.multinomial(logprobs.exp(), 1, generator=generator))
    return token, float(logprobs[token])


def _matched_stop_string(tokenizer: Any, tokens: list[int], stops: tuple[str, ...]) -> str | None:
    longest = max(len(s) for s in stops)
    tail = tokenizer.decode(tokens[-(longest + 8):], skip_special_tokens=False)
    last = tokenizer.decode(tokens[-1:], skip_special_tokens=False)
    for s in stops:
        # the stop must end inside the newest token, else it would have matched earlier
        at = tail.rfind(s)
        if at >= 0 and at + len(s) > len(tail) - len(last):
            return s
    return None
