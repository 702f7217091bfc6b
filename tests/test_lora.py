"""LoRA for SFT on the tiny model: option validation, the PEFT config, and rebuilding a merged checkpoint from
a base and an adapter gives the same logits as the adapter applied live."""

from __future__ import annotations

import pytest

from asyncthink.training.lora import LoRAOptions, merge_adapter, peft_config, tag_token_ids


def test_lora_options_are_validated_with_the_values_quoted():
    with pytest.raises(ValueError, match="r=0"):
        LoRAOptions(r=0)
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\), got 1.5"):
        LoRAOptions(dropout=1.5)
    with pytest.raises(ValueError, match="target_modules"):
        LoRAOptions(target_modules=[])


def test_sft_config_reads_lora_and_the_tag_path_from_yaml(tmp_path):
    from asyncthink.config_io import load_config
    from asyncthink.training.sft import SFTRunConfig

    cfg = load_config(SFTRunConfig, None, ["model=m", "datasets=[d]", "tags_as_tokens=false", "lora.enabled=true",
                                           "lora.r=4"])
    assert cfg.lora == LoRAOptions(enabled=True, r=4) and cfg.tags_as_tokens is False


def test_tag_rows_are_trainable_only_when_the_tags_are_tokens(tiny_model_dir):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    ids = tag_token_ids(tok)
    assert len(ids) >= 4 and peft_config(LoRAOptions(enabled=True), tok).trainable_token_indices == {
        "embed_tokens": ids}
    assert peft_config(LoRAOptions(enabled=True, train_tag_tokens=False), tok).trainable_token_indices is None
    with pytest.raises(ValueError, match=r"tied embeddings.*\(lora\.enabled=false\)"):
        peft_config(LoRAOptions(enabled=True), tok, tied_embeddings=True)
    assert peft_config(LoRAOptions(enabled=True, train_tag_tokens=False), tok, tied_embeddings=True).r == 16


def test_merging_a_saved_adapter_reproduces_the_live_adapter(tiny_model_dir, tmp_path):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                  target_modules=["q_proj", "v_proj", "down_proj"]))
    peft_model.save_pretrained(tmp_path / "adapter")  # no tokenizer: the base's is used
    ids = torch.tensor([[1, 5, 9, 13, 17, 21]])
    with torch.no_grad():
        live = peft_model(ids).logits
        base = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)(ids).logits
    assert not torch.allclose(live, base, atol=1e-4)  # the adapter changes the model
    out = merge_adapter(tiny_model_dir, tmp_path / "adapter", tmp_path / "merged")
    with torch.no_grad():
        merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)(ids).logits
    torch.testing.assert_close(merged, live, atol=1e-4, rtol=1e-4)
    assert (out / "tokenizer_config.json").is_file()
    with pytest.raises(FileExistsError, match="already exists"):
        merge_adapter(tiny_model_dir, tmp_path / "adapter", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter", "merged"]  # no temporary folders left
