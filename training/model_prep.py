"""Give a model the protocol tags as tokens before any data is tokenized for it.

Single-token tags make joins exact engine stops and keep traces short. The
tags are added as normal (not special) tokens, since engines drop special
tokens when detokenizing and the runtime must see the tags; new embedding
rows start at the mean of the existing ones. Run this before ``train synth``,
so the SFT data is tokenized with the same vocabulary the model trains on.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from asyncthink.protocol import protocol_tags


def missing_tags(tokenizer: Any, max_index: int) -> list[str]:
    """Protocol tags that the tokenizer does not hold as one token."""
    return [t for t in protocol_tags(max_index) if len(tokenizer.encode(t, add_special_tokens=False)) != 1]


def tokenizer_digest(tokenizer: Any) -> str:
    """A short fingerprint of the vocabulary, to check that data and model were tokenized alike."""
    vocab = sorted(tokenizer.get_vocab().items())
    return hashlib.sha256(repr(vocab).encode()).hexdigest()[:16]


def add_protocol_tokens(model: Any, tokenizer: Any, max_index: int = 16) -> int:
    """Add missing tags to ``tokenizer`` and grow ``model``'s embeddings; return how many were added."""
    import torch
    from tokenizers import AddedToken

    missing = missing_tags(tokenizer, max_index)
    if not missing:
        return 0
    old = model.get_input_embeddings().weight.shape[0]
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in missing])
    model.resize_token_embeddings(len(tokenizer))
    with torch.no_grad():
        emb = model.get_input_embeddings().weight
        emb[old:] = emb[:old].mean(dim=0, keepdim=True)
    return len(missing)


def prepare_model(model_path: str, out: str | Path, max_index: int = 16) -> Path:
    """Save a copy of ``model_path`` whose tokenizer holds every protocol tag as one token."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    add_protocol_tokens(model, tokenizer, max_index)
    out = Path(out)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
