"""Protocol tags as tokens: stop conditions per row and the ids the runtime appends at a join.

When the tokenizer holds a tag as one token (our tiny models, or a model whose
tokenizer was extended for SFT), engines stop on its id; otherwise they stop
on the tag string. Joins written as text share one stop string, the prefix
``<JOIN-``, whatever the number of indices (a stock vLLM server accepts at
most 4 stop strings): the runtime then asks for the index and the closing
``>`` in a short follow-up request (``tail_stops``). The text appended after a join is ``{returned}</JOIN-i>``:
the worker's takeaway as the worker's own token ids, then the close tag
encoded once. SFT data builds its contexts through ``appended_ids`` too, so
training and inference agree token for token.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from asyncthink.protocol import ANSWER_CLOSE, JOIN_PREFIX, RETURN_CLOSE, TAG_END, join_close, join_open


class ProtocolTokens:
    """Tag ids and stop conditions for one tokenizer."""

    def __init__(self, tokenizer: Any, max_index: int = 16) -> None:
        self.tokenizer = tokenizer
        self.max_index = max_index
        self.eos_id = tokenizer.eos_token_id
        self._encode = lru_cache(maxsize=4096)(self._encode_uncached)

    def _encode_uncached(self, text: str) -> tuple[int, ...]:
        return tuple(self.tokenizer.encode(text, add_special_tokens=False))

    def single_token(self, tag: str) -> int | None:
        ids = self._encode(tag)
        return ids[0] if len(ids) == 1 else None

    def stops(self, final_tag: str, can_fork: bool) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """(stop token ids, stop strings) for a row ending in ``final_tag`` that may or may not join.

        At most two stop strings: ``final_tag`` when it is text, and ``JOIN_PREFIX`` when any join tag is.
        """
        final_id = self.single_token(final_tag)
        ids = [final_id] if final_id is not None else []
        strings = [] if final_id is not None else [final_tag]
        if can_fork:
            join_ids = [self.single_token(join_open(i)) for i in range(1, self.max_index + 1)]
            ids += [t for t in join_ids if t is not None]
            if None in join_ids:
                strings.append(JOIN_PREFIX)
        if self.eos_id is not None:
            ids.append(self.eos_id)
        return tuple(ids), tuple(strings)

    @staticmethod
    def tail_stops(stops: tuple[tuple[int, ...], tuple[str, ...]]) -> tuple[tuple[int, ...], tuple[str, ...]]:
        """Stops of the request that follows a stop at ``JOIN_PREFIX``: it ends at the ``>`` after the index."""
        return stops[0], (TAG_END,)

    def organizer_stops(self, can_fork: bool = True) -> tuple[tuple[int, ...], tuple[str, ...]]:
        return self.stops(ANSWER_CLOSE, can_fork)

    def worker_stops(self, can_fork: bool = False) -> tuple[tuple[int, ...], tuple[str, ...]]:
        return self.stops(RETURN_CLOSE, can_fork)

    def appended_ids(self, returned_ids: list[int], index: int) -> list[int]:
        """What follows ``<JOIN-i>`` in the organizer's context."""
        return list(returned_ids) + list(self._encode(join_close(index)))

    def encode_text(self, text: str) -> list[int]:
        """Ids of runtime text that did not come from the model (never used on model output)."""
        return list(self._encode(text))
