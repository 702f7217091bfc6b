"""Prompts encoded piece by piece between added tokens give the tokenizer's own ids, or the cache steps aside."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, pre_tokenizers
from transformers import AutoTokenizer

from asyncthink.models import shipped_model
from asyncthink.piece_encoder import PieceEncoder, encoder_for
from asyncthink.prompts import organizer_messages, render, worker_messages
from asyncthink.runtime_config import RuntimeConfig


def _prefix_space(tok):
    tok.backend_tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    return tok


TOKENIZERS = {
    "tiny-organizer": lambda: AutoTokenizer.from_pretrained(shipped_model()),
    "tiny-math-organizer": lambda: AutoTokenizer.from_pretrained(shipped_model("tiny-math-organizer")),
    "prefix-space": lambda: _prefix_space(AutoTokenizer.from_pretrained(shipped_model())),
}
PIECES = ["<|im_start|>", "<|im_end|>", "<FORK-1>", "</FORK-1>", "<JOIN-2>", "<ANSWER>", "\n", " ", "  ", "12",
          "user\n", "Use 3 5 7", "é", "<", "FORK", "ANSWER>", "x"]


@pytest.fixture(scope="module", params=list(TOKENIZERS))
def tokenizer(request):
    return TOKENIZERS[request.param]()


@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(st.sampled_from(PIECES), max_size=14))
def test_pieces_encode_like_the_whole_text(tokenizer, pieces):
    text = "".join(pieces)
    encoder = PieceEncoder(tokenizer)
    encoder.checks_left = 0  # the piece path itself, unchecked
    assert encoder.encode(text) == tokenizer.encode(text, add_special_tokens=False)


def test_rendered_prompts_are_the_tokenizers_own_ids(tokenizer):
    cfg = RuntimeConfig(capacity=4)
    for q in ["Use 3 5 7 to make 22.", "What is 2+2?"]:
        org, worker = organizer_messages(cfg.prompts, q, "Rule", 4), worker_messages(cfg.prompts, "s", q, "", False, 4)
        for messages in (org, worker):
            text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
            assert render(tokenizer, messages, cfg.prompts) == tokenizer.encode(text, add_special_tokens=False)
    assert encoder_for(tokenizer)._split is not None  # the cache stayed on


def test_a_stripping_added_token_turns_the_cache_off():
    tok = AutoTokenizer.from_pretrained(shipped_model())
    tok.add_tokens([AddedToken("<STRIP>", lstrip=True)])
    assert PieceEncoder(tok)._split is None
    assert PieceEncoder(tok).encode("a <STRIP> b") == tok.encode("a <STRIP> b", add_special_tokens=False)


def test_a_tokenizer_that_disagrees_is_caught_by_the_first_checks(caplog):
    tok = AutoTokenizer.from_pretrained(shipped_model())
    encoder = PieceEncoder(tok)
    encoder._piece = lambda piece: (0,)  # a piece encoding that is wrong
    with caplog.at_level(logging.WARNING):
        ids = encoder.encode("<|im_start|>user\nhi<|im_end|>")
    assert ids == tok.encode("<|im_start|>user\nhi<|im_end|>", add_special_tokens=False)
    assert encoder._split is None and "caching no pieces" in caplog.text
