"""``asyncthink train sft``: format fine-tuning on synthesized traces with TRL's ``SFTTrainer``.

The dataset rows (``training/sft_data.py``) carry ``input_ids`` and a
``completion_mask`` that is 0 on prompts and on runtime-appended worker
returns, so ``completion_only_loss`` trains on the policy's own tokens only.
The model must hold the protocol tags as tokens, and the data must have been
tokenized with its tokenizer (checked by fingerprint). The result is a normal
Hugging Face checkpoint in ``out/`` that every engine loads, with the loss
curve (``metrics.jsonl``, ``loss.png``) and the resolved config beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asyncthink.config_io import require, save_config
from asyncthink.modes import untrainable
from asyncthink.training.lora import LoRAOptions


@dataclass
class SFTRunConfig:
    """One supervised fine-tuning run."""

    model: str = ""
    """Model folder or name to start from (it must already hold the protocol tags: ``train prepare``)."""
    datasets: list[str] = field(default_factory=list)
    """Folders written by ``train synth`` (their ``dataset/`` is read)."""
    modes: list[str] = field(default_factory=lambda: ["asyncthink"])
    """Rows of which episodes to train on: ``asyncthink`` and/or ``sequential``."""
    out: str = "runs/sft"
    """Output folder: the checkpoint, metrics and config."""
    max_steps: int = 200
    """Optimizer steps (takes precedence over epochs)."""
    batch_size: int = 16
    """Sequences per step (per device)."""
    grad_accum: int = 1
    """Gradient accumulation steps."""
    learning_rate: float = 1e-3
    """Peak learning rate."""
    warmup_steps: int = 10
    """Steps spent warming up the learning rate."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    max_length: int = 2048
    """Longer rows are truncated (and reported)."""
    seed: int = 0
    """Seed for data order and initialisation of new rows."""
    logging_steps: int = 10
    """Log (and record) the loss every this many steps."""
    bf16: bool = False
    """Train in bfloat16 (GPU)."""
    device: str = "auto"
    """``cpu``, ``cuda`` or ``auto``."""
    check_tokenizer: bool = True
    """Refuse data tokenized with another vocabulary."""
    tags_as_tokens: bool = True
    """Require the protocol tags as single tokens (``train prepare``); false trains on them as text (several
    BPE tokens each; joins then stop on the string ``<JOIN-``)."""
    lora: LoRAOptions = field(default_factory=LoRAOptions)
    """LoRA instead of full fine-tuning (``lora.enabled``); writes ``out/adapter`` beside the merged model."""

    def __post_init__(self) -> None:
        require(
            (self.model, "sft needs a model, got ''"),
            (self.datasets, "sft needs at least one synth folder in datasets, got []"),
        )
        bad = untrainable(self.modes)
        require(
            (not (bad or not self.modes), f"modes must be asyncthink and/or sequential, got {self.modes}"),
            (
                not (self.max_steps < 1 or self.batch_size < 1 or self.learning_rate <= 0),
                f"need max_steps >= 1, batch_size >= 1, learning_rate > 0; "
                f"got {self.max_steps}, {self.batch_size}, {self.learning_rate}",
            ),
        )


def load_rows(cfg: SFTRunConfig, tokenizer: Any):
    """The training rows of ``cfg.datasets``, filtered by mode, checked against ``tokenizer``."""
    import datasets

    from asyncthink.training.model_prep import tokenizer_digest

    parts = []
    for folder in cfg.datasets:
        stats = json.loads((Path(folder) / "stats.json").read_text())
        if cfg.check_tokenizer and stats.get("tokenizer_digest") not in (None, tokenizer_digest(tokenizer)):
            raise ValueError(f"{folder} was tokenized with another vocabulary than {cfg.model}; "
                             "synthesize it again with this model's tokenizer")
        parts.append(datasets.load_from_disk(str(Path(folder) / "dataset")))
    rows = datasets.concatenate_datasets(parts).filter(lambda r: r["mode"] in cfg.modes)
    if len(rows) == 0:
        raise ValueError(f"no rows of modes {cfg.modes} in {cfg.datasets}")
    return rows.select_columns(["input_ids", "completion_mask"]).shuffle(seed=cfg.seed)


def train_sft(cfg: SFTRunConfig) -> Path:
    """Run SFT; return the checkpoint folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    from asyncthink.training.model_prep import missing_tags

    out = Path(cfg.out)
    save_config(cfg, out / "config.yaml")
    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if cfg.tags_as_tokens and missing_tags(tokenizer, 4):
        raise ValueError(f"{cfg.model} lacks protocol tags as tokens; run `asyncthink train prepare` first "
                         "(or set tags_as_tokens=false to train on them as text)")
    model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=torch.bfloat16 if cfg.bf16 else torch.float32)
    rows = load_rows(cfg, tokenizer)
    log_path = out / "metrics.jsonl"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_path.write_text("")

    class _Log(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            with open(log_path, "a") as f:
                f.write(json.dumps({"step": state.global_step, **(logs or {})}) + "\n")

    args = SFTConfig(
        output_dir=str(out / "trainer"), max_steps=cfg.max_steps, per_device_train_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, learning_rate=cfg.learning_rate, warmup_steps=cfg.warmup_steps,
        weight_decay=cfg.weight_decay, lr_scheduler_type="cosine", logging_steps=cfg.logging_steps,
        save_strategy="no", report_to="none", completion_only_loss=True, max_length=cfg.max_length,
        seed=cfg.seed, bf16=cfg.bf16, use_cpu=cfg.device == "cpu" or not torch.cuda.is_available(),
        dataloader_num_workers=0, disable_tqdm=False, train_sampling_strategy="group_by_length",  # less padding
    )
    peft = None
    if cfg.lora.enabled:
        from asyncthink.training.lora import peft_config

        peft = peft_config(cfg.lora, tokenizer, tied_embeddings=bool(model.config.tie_word_embeddings))
    trainer = SFTTrainer(model=model, args=args, train_dataset=rows, processing_class=tokenizer, callbacks=[_Log()],
                         peft_config=peft)
    trainer.train()
    if peft is not None:
        from asyncthink.training.lora import save_lora_run

        save_lora_run(trainer.model, tokenizer, out)
    else:
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
    plot_loss(log_path, out / "loss.png")
    return out


def plot_loss(metrics_path: Path, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logs = [json.loads(line) for line in metrics_path.read_text().splitlines() if line.strip()]
    points = [(r["step"], r["loss"]) for r in logs if "loss" in r]
    if not points:
        return
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot(*zip(*points, strict=True), marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("SFT loss (policy tokens)")
    ax.set_title("cold-start SFT")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)
