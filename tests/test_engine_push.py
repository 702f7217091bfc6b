"""Pushed streams (``Engine.stream_to``): the default over ``generate``, and vLLM's collector hand-off, with fakes."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import pytest

from asyncthink.engines import EngineError, EngineErrorKind, GenerateRequest, SamplingParams
from asyncthink.engines.vllm_engine import _Deltas, _Sink
from tests.fakes import ScriptedEngine


def request(prompt_ids=(1, 2, 3), max_tokens=50):
    return GenerateRequest(list(prompt_ids), SamplingParams(max_tokens=max_tokens, logprobs=True), "r")


@pytest.mark.parametrize("native", [False, True])
async def test_stop_and_errors_end_the_stream_and_abort(native, monkeypatch):
    monkeypatch.setattr(ScriptedEngine, "push_native", native)
    engine = ScriptedEngine({}, delay_s=0.001, default="x" * 40)  # paced, so the stop lands mid-stream
    got = []
    await engine.stream_to(request(), lambda d: got.append(d) or len(got) == 3)
    assert len(got) == 3 and got[-1].final is None

    def fail(delta):
        raise LookupError("consumer")

    with pytest.raises(LookupError, match="consumer"):
        await engine.stream_to(request(), fail)
    await asyncio.sleep(0)
    assert engine.live == 0 and engine.aborted == 2


def output(ids, finished=False):
    logprobs = [{t: SimpleNamespace(logprob=-0.5)} for t in ids]
    o = SimpleNamespace(token_ids=ids, logprobs=logprobs, finish_reason="length" if finished else None,
                        stop_reason=None)
    return SimpleNamespace(outputs=[o], finished=finished, num_cached_tokens=0)


async def test_the_sink_hands_on_what_vllm_put_before_it_was_attached():
    got = []
    sink = _Sink(_Deltas(request(), eos=None), lambda d: got.append(d) or False)
    queue = SimpleNamespace(output=output([7, 8]))  # what the output loop put while add_request returned
    sink.attach(queue)
    queue.put(output([9], finished=True))
    await sink.done
    assert [d.token_ids for d in got] == [[7, 8], [9]] and got[-1].final.completion_tokens == 3
    assert sink.finished and queue.output is None


async def test_nothing_escapes_the_sink_into_vllms_output_loop():
    def fail(delta):
        raise LookupError("consumer")

    sink = _Sink(_Deltas(request(), eos=None), fail)
    queue = SimpleNamespace(output=None)
    sink.attach(queue)
    queue.put(output([1]))  # would kill vLLM's output handler if it raised
    queue.put(output([2]))  # after a failure: dropped
    with pytest.raises(LookupError):
        await sink.done
    assert sink.consumer_failed and not sink.finished

    dead = _Sink(_Deltas(request(), eos=None), lambda d: False)
    dead.attach(SimpleNamespace(output=RuntimeError("engine dead")))
    with pytest.raises(RuntimeError, match="engine dead"):
        await dead.done
    missing = _Sink(_Deltas(request(), eos=None), lambda d: False)
    missing.put(SimpleNamespace(outputs=[SimpleNamespace(token_ids=[4], logprobs=None)], finished=False))
    with pytest.raises(EngineError) as err:
        await missing.done
    assert err.value.kind == EngineErrorKind.SERVER
