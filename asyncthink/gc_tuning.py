"""Garbage-collector settings for a process that runs many episodes at once.

CPython's full (generation 2) collection walks every tracked object, including
each element of every token-id list. A thousand episodes in flight hold
hundreds of thousands of such objects and millions of list elements, so one
full pass stops the event loop for 100-200 ms on one core. During that time no
engine output is read and no fork or join is served, so every episode in
flight gets that much slower. By default a full pass may come after every 10
middle-generation passes, whenever the long-lived heap grew by a quarter since
the last. A batch whose records pile up keeps growing, so it pays for several.

``serving_gc`` does two things while a batch runs:

- it moves the heap that existed before (modules, model, tokenizer) to the
  permanent generation (``gc.freeze``, as vLLM does after start-up), so no
  pass walks it;
- it lets a full pass come only every ``full_every`` middle passes (100, not
  10).

Young collections are untouched, and they still reclaim cycles that die
young. Whatever the batch leaves behind is collected later, as usual. On exit
the thresholds and the frozen heap are given back. Anything changed by
someone else stays as they left it: a heap frozen before the block (vLLM
freezes its own, when it runs in this process) or more of it frozen inside
(judged by the frozen count having grown), and thresholds set inside. Nested
and concurrent batches share one setting: the last to leave restores it.

Measured in ``benchmarks/runtime_overhead.py`` (1,024 episodes with 3 forks
each, on the 2-core development machine): seven full passes, 0.8 s in all,
with the default settings; none with these.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

FULL_EVERY = 100  # middle-generation passes per full pass while a batch runs (CPython's default is 10)

_holders = 0
_saved: tuple[int, int, int] | None = None  # the thresholds before the first holder came
_ours: tuple[int, int, int] | None = None  # the thresholds we set
_frozen_by_us: int | None = None  # objects our freeze moved, or None if we did not freeze


@contextmanager
def serving_gc(full_every: int = FULL_EVERY, collect_first: bool = False) -> Iterator[None]:
    """Rarer full collections and a frozen start-up heap for the duration of the block.

    ``collect_first`` collects before freezing, so no start-up garbage is frozen: worth its one full pass
    for a server that holds the setting for its whole life, not for a batch that gives it back soon.
    """
    global _holders
    if _holders == 0:
        _take(full_every, collect_first)
    _holders += 1
    try:
        yield
    finally:
        _holders -= 1
        if _holders == 0:
            _give_back()


def _take(full_every: int, collect_first: bool) -> None:
    global _saved, _ours, _frozen_by_us
    _saved = gc.get_threshold()
    _frozen_by_us = None
    # someone who froze the heap already (vLLM in this process) keeps it frozen: unfreezing is theirs
    if gc.get_freeze_count() == 0:
        if collect_first:
            gc.collect()
        gc.freeze()  # without a collection first, garbage frozen here is unfrozen, and collected, on exit
        _frozen_by_us = gc.get_freeze_count()
    _ours = (_saved[0], _saved[1], max(_saved[2], full_every))
    gc.set_threshold(*_ours)


def _give_back() -> None:
    """Thresholds back unless someone changed them meanwhile; our freeze undone unless someone froze more
    (their heap would be unfrozen with ours)."""
    if _saved is not None and gc.get_threshold() == _ours:
        gc.set_threshold(*_saved)
    if _frozen_by_us is not None and gc.get_freeze_count() <= _frozen_by_us:
        gc.unfreeze()
