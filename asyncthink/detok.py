"""Incremental detokenization: the text each generated token adds, in O(1) per token.

The runtime parses the organizer's text as it streams, so it needs the text
each new token completes. For byte-level tokenizers (GPT-2, Llama 3, Qwen:
the decoder is ``ByteLevel``) a token is a fixed byte string, so feeding those
bytes to an incremental UTF-8 decoder is exact and cheap. Other tokenizers
decode a small window (as vLLM and TGI do) and hold back a piece while it ends
in an incomplete UTF-8 sequence. Either way the concatenated pieces equal
``tokenizer.decode(ids, skip_special_tokens=False)``.

``push_plain`` is the bulk path the executor takes through an engine delta:
on byte-level tokenizers, a run of tokens none of whose bytes is ``<`` cannot
start or hold a protocol tag, so it is decoded in one step with no per-token
Python work. Tokens from a ``<`` until the tag it starts is read go one by one
through ``push``.
"""

from __future__ import annotations

import codecs
import weakref
from bisect import bisect_right
from itertools import accumulate
from typing import Any

_WINDOW = 6  # tokens of left context kept for tokenizers that merge across tokens
_TABLES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def token_bytes_table(tokenizer: Any) -> dict[int, bytes] | None:
    """``id -> bytes`` for byte-level tokenizers (cached per tokenizer), else ``None``."""
    try:
        return _TABLES[tokenizer]
    except (KeyError, TypeError):
        pass
    table = _build_table(tokenizer)
    try:
        _TABLES[tokenizer] = table
    except TypeError:
        pass
    return table


def _build_table(tokenizer: Any) -> dict[int, bytes] | None:
    if hasattr(tokenizer, "token_bytes"):  # tokenizers that know their own bytes (test fakes)
        return None
    backend = getattr(tokenizer, "backend_tokenizer", None) or getattr(tokenizer, "_tokenizer", None)
    decoder = getattr(backend, "decoder", None)
    if decoder is None or type(decoder).__name__ != "ByteLevel":
        return None
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    to_byte = {ch: b for b, ch in bytes_to_unicode().items()}
    added = {tok.content for tok in backend.get_added_tokens_decoder().values()}
    table = {}
    for token, tid in backend.get_vocab(with_added_tokens=True).items():
        if token in added:
            table[tid] = token.encode("utf-8")
        elif all(ch in to_byte for ch in token):
            table[tid] = bytes(to_byte[ch] for ch in token)
        else:
            return None  # not a pure byte-level vocabulary: use the window path
    return table


class IncrementalDetokenizer:
    """Feeds token ids, returns the new text each one completes."""

    bulk = True
    """Whether ``push_plain`` may decode runs of tokens (tests turn it off to compare with the per-token path)."""

    def __init__(self, tokenizer: Any, context_ids: list[int] | None = None) -> None:
        self.tokenizer = tokenizer
        self._own = getattr(tokenizer, "token_bytes", None)
        self._table = None if self._own else token_bytes_table(tokenizer)
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._split = False  # whether the decoder holds the first bytes of a character
        self.ids: list[int] = list(context_ids or [])[-_WINDOW:]
        self.prefix_offset = 0
        self.read_offset = len(self.ids)

    def push(self, token_id: int) -> str:
        if self._own is not None:
            return self._decode(self._own(token_id))
        if self._table is not None and token_id in self._table:
            return self._decode(self._table[token_id])
        return self._push_window(token_id)

    def push_plain(self, token_ids: list[int]) -> tuple[int, str]:
        """Decode the longest run of leading ``token_ids`` none of whose bytes is ``<``, in one step.

        Returns how many tokens that run holds (consumed) and their text; ``(0, "")`` consumes nothing.
        Only byte-level tokenizers take this path: a window tokenizer may merge text across tokens, so its
        bytes per token are unknown and every token goes through ``push``.
        """
        if not self.bulk:
            return 0, ""
        if len(token_ids) == 1:  # one token a delta, the usual case while we keep up with the engine
            raw = self._own(token_ids[0]) if self._own is not None else self._table_bytes(token_ids[0])
            return (0, "") if raw is None or b"<" in raw else (1, self._decode(raw))
        if self._own is not None:
            pieces = list(map(self._own, token_ids))
        elif self._table is not None:
            try:
                pieces = list(map(self._table.__getitem__, token_ids))
            except KeyError:  # an id outside the vocabulary: the window path decides what it is
                return 0, ""
        else:
            return 0, ""
        raw = b"".join(pieces)
        cut = raw.find(b"<")
        if cut < 0:
            return len(token_ids), self._decode(raw)
        ends = list(accumulate(map(len, pieces)))
        n = bisect_right(ends, cut)  # tokens that end at or before the first "<"
        return n, self._decode(raw[: ends[n - 1]]) if n else ""

    def _decode(self, raw: bytes) -> str:
        """``self._utf8.decode(raw)``, without its Python-level wrapper for ASCII while no character is split."""
        if raw.isascii() and not self._split:
            return raw.decode("ascii")
        text = self._utf8.decode(raw)
        self._split = bool(self._utf8.getstate()[0])
        return text

    def _table_bytes(self, token_id: int) -> bytes | None:
        return None if self._table is None else self._table.get(token_id)

    def _push_window(self, token_id: int) -> str:
        self.ids.append(token_id)
        decode = self.tokenizer.decode
        prefix = decode(self.ids[self.prefix_offset : self.read_offset], skip_special_tokens=False)
        full = decode(self.ids[self.prefix_offset :], skip_special_tokens=False)
        piece = ""
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            piece = full[len(prefix) :]
            self.prefix_offset, self.read_offset = self.read_offset, len(self.ids)
            self._trim()
        return piece

    def _trim(self) -> None:
        if self.prefix_offset > 4 * _WINDOW:
            cut = self.prefix_offset - _WINDOW
            self.ids = self.ids[cut:]
            self.prefix_offset -= cut
            self.read_offset -= cut
