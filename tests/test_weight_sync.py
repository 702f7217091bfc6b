"""RL weight sync, one test over engines: after ``load_weights`` an engine serves the new weights.

In-process vLLM reloads them directly; the HTTP engine writes them to a folder
the server reads (``weights_dir``) and leaves nothing behind. Each is checked
against the transformers engine's greedy output on the same weights.
"""

from __future__ import annotations

import pytest

from asyncthink.engines import GenerateRequest, SamplingParams
from asyncthink.engines.base import generate_all

pytestmark = pytest.mark.slow

PROMPT = list(range(10, 60))


def greedy(prompt, rid):
    return GenerateRequest(list(prompt), SamplingParams(max_tokens=12, temperature=0), rid)


@pytest.mark.parametrize("kind", ["vllm", "http"])
async def test_load_weights_changes_the_served_model(kind, vllm_engine, http_engine, hf_engine, tmp_path):
    import torch

    engine = {"vllm": vllm_engine, "http": http_engine}[kind]
    if kind == "http":
        engine.options.weights_dir = str(tmp_path)
    before, _, _ = await generate_all(engine, greedy(PROMPT, f"{kind}-w0"))
    original = {k: v.clone() for k, v in hf_engine.model.state_dict().items()}
    try:
        with torch.no_grad():
            for p in hf_engine.model.parameters():
                p.add_(torch.randn_like(p) * 0.05)
        await engine.load_weights(hf_engine.model.state_dict())
        after, _, _ = await generate_all(engine, greedy(PROMPT, f"{kind}-w1"))
        expect, _, _ = await generate_all(hf_engine, greedy(PROMPT, f"{kind}-w1"))
        assert after == expect and after != before
    finally:
        hf_engine.model.load_state_dict(original)
        await engine.load_weights(original)
    restored, _, _ = await generate_all(engine, greedy(PROMPT, f"{kind}-w2"))
    assert restored == before
    assert kind != "http" or list(tmp_path.iterdir()) == []
