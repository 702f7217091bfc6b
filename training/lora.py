"""LoRA for SFT and RL of pretrained models: the options, the PEFT config, the merged weights, and rebuilding.

``train sft`` with ``lora.enabled`` hands TRL's ``SFTTrainer`` a ``peft.LoraConfig`` built here. When the
protocol tags are added tokens (``train prepare``), their embedding rows are new and must be learned, so they
are trained too, as PEFT trainable tokens (only those rows, not the whole embedding matrix). The run writes
the small adapter (``out/adapter/``) and the merged full checkpoint (``out/``), which every engine loads;
``merge_adapter`` rebuilds the merged checkpoint from a base folder and a shipped adapter.

``train rl`` with ``lora.enabled`` wraps its model the same way (``wrap_lora``), optionally continuing an SFT
adapter, so the base weights stay frozen and what ships is one small adapter over the fetched base. The rollout
engine serves base + adapter: ``merged_state_dict`` folds the adapter into a copy of the weights, under the
base model's parameter names, without touching the trained module.
"""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncthink.config_io import require


@dataclass
class LoRAOptions:
    """LoRA settings of one SFT or RL run (off by default: full fine-tuning)."""

    enabled: bool = False
    """Train a LoRA adapter instead of every weight."""
    r: int = 16
    """Rank of the low-rank update."""
    alpha: int = 32
    """Scale numerator (the update is scaled by alpha / r)."""
    dropout: float = 0.0
    """Dropout on the adapter's input."""
    target_modules: list[str] = field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"])
    """Linear modules that get adapters (names of the Llama family)."""
    train_tag_tokens: bool = True
    """When the tags are added tokens, train their embedding rows too (PEFT trainable tokens)."""
    adapter: str = ""
    """RL only: an adapter folder to continue training (e.g. the SFT run's ``out/adapter``), applied to
    ``model``, which must then be that adapter's base. Empty: a fresh adapter (zero update) over ``model``; its
    other settings are then those above, and with an adapter they are the adapter's own."""

    def __post_init__(self) -> None:
        require(
            (
                not (self.r < 1 or self.alpha < 1),
                f"lora.r and lora.alpha must be >= 1, got r={self.r}, alpha={self.alpha}",
            ),
            (0.0 <= self.dropout < 1.0, f"lora.dropout must be in [0, 1), got {self.dropout}"),
            (self.target_modules, f"lora.target_modules must name at least one module, got {self.target_modules}"),
        )


def require_peft() -> None:
    """Raise a clear ``ImportError`` unless ``peft`` is installed."""
    try:
        import peft  # noqa: F401
    except ImportError:
        raise ImportError("LoRA needs the `peft` package: pip install 'asyncthink[train]' (or pip install peft)"
                          ) from None


def tag_token_ids(tokenizer: Any, max_index: int = 16) -> list[int]:
    """Ids of the protocol tags that the tokenizer holds as single tokens."""
    from asyncthink.protocol import protocol_tags

    ids = [tokenizer.encode(t, add_special_tokens=False) for t in protocol_tags(max_index)]
    return sorted({i[0] for i in ids if len(i) == 1})


def peft_config(opts: LoRAOptions, tokenizer: Any, tied_embeddings: bool = False) -> Any:
    """The ``peft.LoraConfig`` for ``opts``; tag tokens become trainable rows when the tokenizer has them.

    TRL 1.16's fused LM head reads ``lm_head.bias``, which PEFT's trainable-tokens wrapper of a *tied* LM head
    lacks, so that combination is refused here with the alternatives, before any training starts.
    """
    require_peft()
    from peft import LoraConfig

    tags = tag_token_ids(tokenizer) if opts.train_tag_tokens else []
    if tags and tied_embeddings:
        raise ValueError(
            f"LoRA with the {len(tags)} protocol tags as trainable tokens is not supported on a model with tied "
            "embeddings (TRL's fused LM head cannot train PEFT trainable tokens there). Use full fine-tuning "
            "(lora.enabled=false) for tags as tokens, or keep the tags as text (tags_as_tokens=false on the "
            "unprepared model), or set lora.train_tag_tokens=false to leave their rows untrained")
    return LoraConfig(
        r=opts.r, lora_alpha=opts.alpha, lora_dropout=opts.dropout, target_modules=list(opts.target_modules),
        task_type="CAUSAL_LM", bias="none", trainable_token_indices={"embed_tokens": tags} if tags else None,
    )


def wrap_lora(model: Any, opts: LoRAOptions, tokenizer: Any) -> Any:
    """``model`` with a trainable LoRA adapter (``opts.adapter`` continued, or a fresh one); base weights frozen."""
    require_peft()
    from peft import PeftModel, get_peft_model

    if opts.adapter:
        if not (Path(opts.adapter) / "adapter_config.json").is_file():
            raise FileNotFoundError(f"lora.adapter={opts.adapter!r} holds no adapter_config.json")
        wrapped = PeftModel.from_pretrained(model, opts.adapter, is_trainable=True)
    else:
        tied = bool(getattr(model.config, "tie_word_embeddings", False))
        wrapped = get_peft_model(model, peft_config(opts, tokenizer, tied_embeddings=tied))
    if any("token_adapter" in name for name, _ in wrapped.named_parameters()):
        raise ValueError("LoRA RL does not train tag tokens' embedding rows (PEFT trainable tokens): keep the tags "
                         "as text, set lora.train_tag_tokens=false, or fine-tune fully (lora.enabled=false)")
    _check_plain_lora(wrapped.peft_config["default"], opts.adapter)
    return wrapped


def _check_plain_lora(config: Any, adapter: str) -> None:
    """RL serves ``merged_state_dict``, which folds plain LoRA on linear layers only; and the trainer's logprobs
    must be the sampler's, so no dropout. Refuse anything else before training starts."""
    where = f"the adapter {adapter!r}" if adapter else "lora"
    targets = config.target_modules if isinstance(config.target_modules, str) else sorted(config.target_modules)
    problems = [
        (bool(config.modules_to_save), f"modules_to_save={config.modules_to_save}"),
        (bool(getattr(config, "use_dora", False)), "use_dora=True"),
        (bool(getattr(config, "lora_bias", False)), "lora_bias=True"),
        (config.lora_dropout > 0, f"lora_dropout={config.lora_dropout} (the trainer's logprobs would not be the "
                                  "sampler's)"),
        (any(t in str(targets) for t in ("embed_tokens", "lm_head")), f"target_modules={targets} (embeddings)"),
    ]
    bad = [what for found, what in problems if found]
    if bad:
        raise ValueError(f"LoRA RL supports plain LoRA on linear layers without dropout; {where} has "
                         f"{', '.join(bad)}")


def merged_state_dict(model: Any) -> dict[str, Any]:
    """The weights a plain (non-PEFT) model of the same architecture would hold: base + scaled ``B @ A`` for
    every LoRA layer, under the base model's names. Copies; the PEFT module itself is left as it is (merging in
    place and back would drift the frozen weights by rounding, step after step)."""
    import torch
    from peft.tuners.lora import LoraLayer

    base = model.get_base_model()
    weights = {name.replace(".base_layer.", "."): t.detach()
               for name, t in base.state_dict().items() if "lora_" not in name}
    with torch.no_grad():
        for name, module in base.named_modules():
            if isinstance(module, LoraLayer) and module.active_adapters:
                key = f"{name}.weight"
                weights[key] = weights[key] + sum(module.get_delta_weight(a) for a in module.active_adapters)
    return weights


def save_lora_run(model: Any, tokenizer: Any, out: Path) -> dict[str, int]:
    """Write the adapter to ``out/adapter`` and the merged model to ``out``; return their sizes in bytes."""
    adapter = out / "adapter"
    model.save_pretrained(adapter)
    tokenizer.save_pretrained(adapter)
    merged = copy.deepcopy(model).merge_and_unload()  # a copy: the caller's module stays a trainable adapter
    merged.save_pretrained(out)
    tokenizer.save_pretrained(out)
    size = sum(p.stat().st_size for p in adapter.iterdir() if p.is_file())
    return {"adapter_bytes": size}


def merge_adapter(base: str | Path, adapter: str | Path, out: str | Path) -> Path:
    """Rebuild a merged checkpoint: ``base`` plus the LoRA ``adapter``.

    An adapter trained on tags as text needs no tokenizer of its own (``base``'s is used). One trained on
    tags as tokens carries its tokenizer; if that holds the protocol tags and ``base`` does not, the tags are
    added first (as ``train prepare`` did), and the vocabularies must then match exactly. Written to a temporary
    folder beside ``out`` and renamed into place.
    """
    require_peft()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from asyncthink.training.model_prep import add_protocol_tokens

    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} already exists; choose another folder or remove it")
    has_tokenizer = (Path(adapter) / "tokenizer_config.json").is_file()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter if has_tokenizer else base))
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    base_tok = AutoTokenizer.from_pretrained(str(base))
    if len(base_tok) != len(tokenizer):
        n_tags = len(tag_token_ids(tokenizer))
        added = add_protocol_tokens(model, base_tok, max_index=max(1, (n_tags - 4) // 4))
        if len(base_tok) != len(tokenizer) or base_tok.get_vocab() != tokenizer.get_vocab():
            raise ValueError(f"the adapter's tokenizer ({len(tokenizer)} tokens) is not {base} plus the protocol "
                             f"tags ({len(base_tok)} tokens after adding {added}); wrong base model?")
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.merge-", dir=out.parent))
    try:
        merged.save_pretrained(work / "model")
        tokenizer.save_pretrained(work / "model")
        os.replace(work / "model", out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out
