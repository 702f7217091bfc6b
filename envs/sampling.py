"""How generated tasks split and draw problems: the hash train/test split and distinct draws.

**Split.** A problem belongs to the test split iff the SHA-256 of its key (the
part of the problem that makes it that problem: countdown's number multiset,
a Sudoku puzzle, math_gen's groups and give-away), read as a fraction of
``2**64`` from its first 8 bytes, is below ``test_fraction``. The split thus
depends on the problem alone, never on a seed or the order of draws, so train
and test never share a problem. Shipped models' held-out sets depend on this
exact rule: do not change it.

**Distinct draws.** ``draw_distinct`` keeps calling a task's generator and
keeps the first problem of each key, until it has ``n``; it gives up, with an
error, after ``MAX_DRAWS_PER_PROBLEM * n + MAX_DRAWS_EXTRA`` draws (a split
holding fewer distinct problems than asked would loop for ever).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Hashable
from typing import TypeVar

T = TypeVar("T")

MAX_DRAWS_PER_PROBLEM = 50
"""Draws allowed per problem asked (with ``MAX_DRAWS_EXTRA``): far above what a split with room needs."""
MAX_DRAWS_EXTRA = 1000
"""Draws allowed on top, so that small requests from small splits still get a fair chance."""


def hash_split(key: str, test_fraction: float) -> str:
    """``"test"`` or ``"train"``: test iff ``key``'s hash bucket falls in the first ``test_fraction``."""
    bucket = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return "test" if bucket < test_fraction else "train"


def draw_distinct(draw: Callable[[], T | None], key: Callable[[T], Hashable], n: int, what: str) -> list[T]:
    """``n`` draws with distinct keys, in the order drawn (a repeat is skipped; a draw of ``None``, say one
    off the split, is skipped too). Raises ``ValueError`` naming ``what`` when the draws run out first."""
    picked: list[T] = []
    seen: set[Hashable] = set()
    for _ in range(MAX_DRAWS_PER_PROBLEM * n + MAX_DRAWS_EXTRA):
        if len(picked) == n:
            return picked
        item = draw()
        if item is None or key(item) in seen:
            continue
        seen.add(key(item))
        picked.append(item)
    if len(picked) == n:
        return picked
    raise ValueError(f"only {len(picked)} distinct {what} found, {n} asked")
