"""GRPO with LoRA (``RLConfig.lora``) on the tiny model with scripted outcomes.

- a step trains the adapter only: the base weights are bit-identical after it, the adapter's are not;
- the rollout engine is handed base + adapter merged, under the plain model's names, and that equals PEFT's own
  merge (the PEFT module is left unmerged);
- ``out/final`` holds the merged model and ``out/final/adapter`` the adapter;
- a run continuing an SFT adapter starts from it (its first rollout weights are base + that adapter);
- a resumed run restores the adapter and optimizer and ends where a straight run ends;
- trainable tag tokens, a folder without an adapter, dropout and adapters on the embeddings are refused with what
  to do; with a KL term, the reference is the starting policy.
"""

from __future__ import annotations

import copy
import json
from dataclasses import replace

import pytest
import torch

from asyncthink.training.lora import LoRAOptions, merged_state_dict, wrap_lora
from asyncthink.training.rl import GRPOTrainer
from tests.fakes import OutcomeEngine
from tests.rl_fake_run import OUTCOMES, config

LORA = LoRAOptions(enabled=True, r=4, alpha=8, train_tag_tokens=False)


def lora_config(model, out, steps: int, **lora):
    return replace(config(str(model), str(out), steps), lora=replace(LORA, **lora))


def split(model) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(base weights, adapter weights) of a PEFT model, cloned."""
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return ({k: v for k, v in state.items() if "lora_" not in k}, {k: v for k, v in state.items() if "lora_" in k})


async def run(cfg) -> GRPOTrainer:
    trainer = GRPOTrainer(cfg)
    await trainer.train(OutcomeEngine(trainer.tokenizer, OUTCOMES))
    return trainer


async def test_a_step_trains_the_adapter_only_and_the_engine_gets_the_merge(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM

    trainer = GRPOTrainer(lora_config(tiny_model_dir, tmp_path, 1))
    base0, adapter0 = split(trainer.model)
    await trainer.train(OutcomeEngine(trainer.tokenizer, OUTCOMES))
    base1, adapter1 = split(trainer.model)
    assert all(torch.equal(base0[k], base1[k]) for k in base0)
    assert any(not torch.equal(adapter0[k], adapter1[k]) for k in adapter0)
    final = AutoModelForCausalLM.from_pretrained(tmp_path / "final", dtype=torch.float32)
    assert (tmp_path / "final" / "adapter" / "adapter_config.json").is_file()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).state_dict()
    merged = final.state_dict()
    assert set(merged) == set(plain)
    assert any(not torch.equal(merged[k], plain[k]) for k in plain)
    sent = trainer.rollout_weights()
    assert all(torch.allclose(merged[k], sent[k], atol=1e-6) for k in plain)  # what the engine serves is final
    assert json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])["grad_norm"] > 0


def test_merged_state_dict_is_peft_merge_without_touching_the_module(tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = wrap_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), LORA,
                      AutoTokenizer.from_pretrained(tiny_model_dir))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)  # a fresh adapter's B is 0: give it an update to merge
    before = split(model)
    weights = merged_state_dict(model)
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
    assert set(weights) == set(expected)
    assert all(torch.allclose(weights[k], expected[k], atol=1e-6) for k in expected)
    after = split(model)
    assert all(torch.equal(before[i][k], after[i][k]) for i in (0, 1) for k in before[i])


async def test_a_run_continues_an_sft_adapter(tiny_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    sft = wrap_lora(AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32), LORA,
                    AutoTokenizer.from_pretrained(tiny_model_dir))
    with torch.no_grad():
        for name, p in sft.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.05)
    sft.save_pretrained(tmp_path / "adapter")
    trainer = GRPOTrainer(lora_config(tiny_model_dir, tmp_path / "rl", 1, adapter=str(tmp_path / "adapter")))
    start = trainer.rollout_weights()
    expected = sft.merge_and_unload().state_dict()
    assert all(torch.allclose(start[k], expected[k], atol=1e-6) for k in expected)
    assert any(p.requires_grad for n, p in trainer.model.named_parameters() if "lora_" in n)  # trained on


async def test_a_resumed_run_ends_where_a_straight_run_ends(tiny_model_dir, tmp_path):
    straight = await run(lora_config(tiny_model_dir, tmp_path / "straight", 2))
    await run(lora_config(tiny_model_dir, tmp_path / "resumed", 1))
    resumed_cfg = lora_config(tiny_model_dir, tmp_path / "resumed", 2)
    resumed = GRPOTrainer(resumed_cfg)
    resumed.maybe_resume()
    assert resumed.state.step == 1
    await resumed.train(OutcomeEngine(resumed.tokenizer, OUTCOMES))
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_a_folder_without_an_adapter_is_refused(tiny_model_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="adapter_config.json"):
        GRPOTrainer(lora_config(tiny_model_dir, tmp_path / "rl", 1, adapter=str(tmp_path)))


def test_trainable_tag_tokens_are_refused(tiny_model_dir, tmp_path):
    from transformers import AutoConfig, AutoTokenizer, LlamaForCausalLM

    # an untied copy of the tiny model, whose tokenizer holds the tags as tokens: SFT would train their rows
    untied = AutoConfig.from_pretrained(tiny_model_dir)
    untied.tie_word_embeddings = False
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    with pytest.raises(ValueError, match="LoRA RL does not train tag tokens"):
        wrap_lora(LlamaForCausalLM(untied), replace(LORA, train_tag_tokens=True), tokenizer)


def test_an_adapter_without_lora_enabled_is_refused():
    from asyncthink.config_io import load_config
    from asyncthink.training.rl_config import RLConfig

    with pytest.raises(ValueError, match="lora.adapter='runs/sft/adapter' is set but lora.enabled is false"):
        load_config(RLConfig, None, ["model=m", "lora={adapter: runs/sft/adapter}"])


@pytest.mark.parametrize(("change", "quoted"), [
    ({"dropout": 0.1}, "lora_dropout=0.1"),
    ({"target_modules": ["q_proj", "embed_tokens"]}, "embeddings"),
])
def test_lora_whose_merge_or_sampling_would_not_match_is_refused(tiny_model_dir, change, quoted):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    with pytest.raises(ValueError, match=quoted):
        wrap_lora(model, replace(LORA, **change), AutoTokenizer.from_pretrained(tiny_model_dir))


async def test_the_kl_reference_of_a_lora_run_is_its_starting_policy(tiny_model_dir, tmp_path):
    trainer = await run(replace(lora_config(tiny_model_dir, tmp_path, 1), kl_coef=0.05))
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert first["kl"] == pytest.approx(0.0, abs=1e-7)  # measured before the first update: policy == reference
    assert all(not p.requires_grad for p in trainer.ref.parameters())
