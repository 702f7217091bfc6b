"""Build a tiny random causal LM and tokenizer as a normal Hugging Face folder.

No downloads: the byte-level BPE tokenizer is trained here on a small corpus
(built in, or a file you pass), the protocol tags are single tokens, the chat
template is ChatML, and the Llama weights are drawn from ``seed``. The same
seed and corpus give the same files, byte for byte. ``head_dim`` is 64 because
vLLM's CPU attention rejects 16. Tests, benchmarks and users without a GPU use
these models; ``asyncthink tiny-model`` is the command.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from asyncthink.protocol import protocol_tags

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
EOS, PAD, IM_START = "<|im_end|>", "<|endoftext|>", "<|im_start|>"


@dataclass(frozen=True)
class TinySize:
    """Shape of a tiny Llama; ``head_dim`` stays 64 for vLLM CPU."""

    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int  # BPE vocabulary before special and protocol tokens
    max_positions: int = 4096


SIZES = {
    "tiny": TinySize(hidden=128, layers=2, heads=2, intermediate=256, vocab=512),
    "mini": TinySize(hidden=192, layers=4, heads=3, intermediate=576, vocab=1024),
    "small": TinySize(hidden=256, layers=4, heads=4, intermediate=768, vocab=1024),
    "base": TinySize(hidden=384, layers=6, heads=6, intermediate=1024, vocab=1024),
}


def default_corpus(seed: int, lines: int = 4000) -> list[str]:
    """A small deterministic corpus: protocol words, arithmetic and grids."""
    rng = random.Random(seed)
    words = (
        "the organizer worker fork join answer return sub-query think solve target numbers use each "
        "number exactly once expression solutions distinct find all four sudoku grid row column box "
        "cell digit puzzle valid unique question problem step check try so we get is not it and of to "
        "with from by then first next left right sum product difference quotient equals result take away"
    ).split()
    out = []
    for _ in range(lines):
        a, b, c = rng.randint(1, 99), rng.randint(1, 99), rng.randint(1, 99)
        op1, op2 = rng.choice("+-*/"), rng.choice("+-*/")
        out.append(f"{a} {op1} {b} = ?  ({a}{op1}{b}){op2}{c}  " + " ".join(rng.choices(words, k=12)))
        out.append(" ".join(rng.choice("1234.") for _ in range(16)))
    return out


def build_tokenizer(seed: int = 0, vocab: int = 512, max_index: int = 8, corpus: list[str] | None = None):
    """A byte-level BPE ``PreTrainedTokenizerFast`` with digits split and protocol tags as tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    # one token per digit, the same id whether or not a space precedes it: copying and arithmetic
    # are learnable digit by digit
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        special_tokens=[PAD, IM_START, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus if corpus is not None else default_corpus(seed), trainer)
    # Not "special": engines skip special tokens when detokenizing, and the tags must stay visible.
    tok.add_tokens([AddedToken(t, normalized=False, special=False) for t in protocol_tags(max_index)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=EOS, pad_token=PAD, chat_template=CHAT_TEMPLATE, model_max_length=4096
    )


def build_tiny_model(
    out_dir: str | Path,
    seed: int = 0,
    size: str = "tiny",
    max_index: int = 8,
    corpus: list[str] | None = None,
    dtype: str = "float32",
) -> Path:
    """Write a tiny random Llama and its tokenizer to ``out_dir``; return the path."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    if size not in SIZES:
        raise ValueError(f"size {size!r} is not one of {sorted(SIZES)}")
    shape = SIZES[size]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer(seed, shape.vocab, max_index, corpus)
    eos, pad = tokenizer.convert_tokens_to_ids([EOS, PAD])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=shape.hidden,
        intermediate_size=shape.intermediate,
        num_hidden_layers=shape.layers,
        num_attention_heads=shape.heads,
        num_key_value_heads=shape.heads,
        head_dim=64,
        max_position_embeddings=shape.max_positions,
        tie_word_embeddings=True,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=pad,
        dtype=dtype,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).to(getattr(torch, dtype))
    model.generation_config = GenerationConfig(eos_token_id=eos, pad_token_id=pad, bos_token_id=eos)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
