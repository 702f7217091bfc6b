"""``serving_gc``: full collections rarer and the start-up heap frozen while a batch runs, all given back after."""

from __future__ import annotations

import gc

import pytest

from asyncthink.gc_tuning import FULL_EVERY, serving_gc


def full_passes_while_the_heap_grows() -> int:
    """Full collections CPython runs while 200,000 small lists pile up (as episode records do)."""
    before = gc.get_stats()[2]["collections"]
    kept = [[n] for n in range(200_000)]
    passes = gc.get_stats()[2]["collections"] - before
    del kept
    return passes


def test_full_collections_are_rarer_inside():
    gc.freeze()  # what the test session imported is not the heap under test: a full pass needs 25 % growth
    try:
        assert full_passes_while_the_heap_grows() >= 1  # the default lets a growing heap trigger full passes
        with serving_gc():
            assert full_passes_while_the_heap_grows() == 0
    finally:
        gc.unfreeze()


def test_the_heap_is_frozen_inside_and_the_defaults_return():
    defaults, frozen = gc.get_threshold(), gc.get_freeze_count()
    with serving_gc():
        assert gc.get_threshold() == (defaults[0], defaults[1], max(defaults[2], FULL_EVERY))
        assert gc.get_freeze_count() > 0  # the heap from before is skipped by every pass
    assert gc.get_threshold() == defaults and bool(gc.get_freeze_count()) == bool(frozen)


def test_nested_and_failing_blocks_restore_once_the_last_leaves():
    defaults, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(RuntimeError):
        with serving_gc():
            with serving_gc():
                pass
            assert gc.get_threshold()[2] == max(defaults[2], FULL_EVERY)  # the outer batch still runs
            raise RuntimeError("a batch that fails")
    assert gc.get_threshold() == defaults and bool(gc.get_freeze_count()) == bool(frozen)


def test_a_heap_frozen_by_someone_else_stays_frozen():
    gc.freeze()  # as vLLM does after its start-up, in this process
    try:
        frozen = gc.get_freeze_count()
        with serving_gc():
            assert gc.get_threshold()[2] >= FULL_EVERY
        assert gc.get_freeze_count() > frozen // 2  # not unfrozen (a frozen object may still be freed)
    finally:
        gc.unfreeze()


def test_what_changed_inside_is_left_alone():
    defaults = gc.get_threshold()
    with serving_gc():
        gc.set_threshold(5000, 10, 10)  # the user's own setting, made inside the block
        inner = gc.get_threshold()
    assert gc.get_threshold() == inner
    gc.set_threshold(*defaults)
    with serving_gc():
        engine = [[n] for n in range(10_000)]  # an engine built inside the block, its heap then frozen
        gc.freeze()  # unfreezing ours would unfreeze theirs
    try:
        assert gc.get_freeze_count() > len(engine)
    finally:
        gc.unfreeze()
