"""Prompt encoding that pays once for the text every prompt shares.

Every organizer prompt holds the same system text, and every worker prompt
too; encoding it anew costs ~0.3 us a character on a fast tokenizer, which at
a thousand episodes in flight is most of the runtime's own CPU. A fast
tokenizer splits its input at added tokens (``<|im_start|>``, the protocol
tags) before normalizing and pre-tokenizing, and encodes each piece on its
own; so the ids of a rendered prompt are the ids of its pieces, joined by
the added tokens' ids, and the pieces are cached.

That holds only when no added token strips the whitespace next to it, matches
single words only, or is normalized. For any other tokenizer ``encode`` is the
tokenizer's own, and the first prompts are encoded both ways and compared: a
difference turns the cache off for that tokenizer, with a warning.
"""

from __future__ import annotations

import logging
import re
import weakref
from functools import lru_cache
from typing import Any

log = logging.getLogger(__name__)
CHECKS = 4  # prompts per tokenizer encoded both ways before the pieces are trusted
_ENCODERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class PieceEncoder:
    """``encode(text)`` equal to ``tokenizer.encode(text, add_special_tokens=False)``, with pieces cached."""

    def __init__(self, tokenizer: Any, cache_size: int = 256) -> None:
        self.tokenizer = tokenizer
        self.added = _splittable_added_tokens(tokenizer)
        self._split = re.compile("|".join(re.escape(t) for t in sorted(self.added, key=len, reverse=True))) \
            if self.added else None
        self._piece = lru_cache(maxsize=cache_size)(self._encode_piece)
        self.checks_left = CHECKS

    def encode(self, text: str) -> list[int]:
        if self._split is None:
            return self._whole(text)
        ids = self._by_pieces(text)
        if self.checks_left > 0:
            self.checks_left -= 1
            whole = self._whole(text)
            if whole != ids:
                log.warning("encoding between added tokens differs from %s's own encoding; caching no pieces",
                            type(self.tokenizer).__name__)
                self._split = None
                return whole
        return ids

    def _by_pieces(self, text: str) -> list[int]:
        ids: list[int] = []
        pos = 0
        for m in self._split.finditer(text):
            if m.start() > pos:
                ids += self._piece(text[pos : m.start()])
            ids.append(self.added[m.group()])
            pos = m.end()
        if pos < len(text):
            ids += self._piece(text[pos:])
        return ids

    def _encode_piece(self, piece: str) -> tuple[int, ...]:
        return tuple(self._whole(piece))

    def _whole(self, text: str) -> list[int]:
        return list(self.tokenizer.encode(text, add_special_tokens=False))


def _splittable_added_tokens(tokenizer: Any) -> dict[str, int]:
    """``content -> id`` of the added tokens when pieces between them encode on their own, else ``{}``."""
    decoder = getattr(tokenizer, "added_tokens_decoder", None)
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not decoder or backend is None:
        return {}
    tokens = list(decoder.items())
    if any(t.lstrip or t.rstrip or t.single_word for _, t in tokens):
        return {}
    if backend.normalizer is not None and any(t.normalized for _, t in tokens):
        return {}
    return {t.content: i for i, t in tokens}


def encoder_for(tokenizer: Any) -> PieceEncoder:
    """The shared encoder of ``tokenizer`` (so its pieces and checks are shared by every episode)."""
    try:
        return _ENCODERS[tokenizer]
    except (KeyError, TypeError):
        encoder = PieceEncoder(tokenizer)
    try:
        _ENCODERS[tokenizer] = encoder
    except TypeError:  # not weak-referenceable: a fresh encoder each time, still correct
        pass
    return encoder
