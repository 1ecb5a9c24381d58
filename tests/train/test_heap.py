import gc
import resource
import weakref

import pytest
import torch

from burnish.train import heap
from burnish.train.heap import freed_memory_kept, start_up_frozen, steps_heap

glibc = pytest.mark.skipif(heap._glibc() is None, reason="freed_memory_kept tunes glibc's malloc")


def test_objects_alive_at_start_up_are_frozen_for_the_block_only():
    assert gc.get_freeze_count() == 0
    with start_up_frozen():
        assert gc.get_freeze_count() > 1000  # the interpreter's own objects at least
    assert gc.get_freeze_count() == 0


def test_garbage_left_before_the_block_is_collected_not_frozen():
    class Node:
        pass

    gc.disable()  # keep the cycle alive until the block's own young collection
    try:
        a, b = Node(), Node()
        a.other, b.other = b, a
        ref = weakref.ref(a)
        del a, b
        assert ref() is not None
        with start_up_frozen():
            assert ref() is None
    finally:
        gc.enable()


def test_a_heap_frozen_by_the_caller_stays_frozen():
    gc.freeze()
    try:
        with start_up_frozen():
            pass
        assert gc.get_freeze_count() > 0  # not unfrozen (frozen objects that die leave it)
    finally:
        gc.unfreeze()


def test_training_steps_run_on_a_frozen_heap_and_the_run_unfreezes_it(tiny_dir, tmp_path):
    from train_helpers import run_overrides

    from burnish.config import load_config
    from burnish.train.loop import train

    counts = []
    config = load_config(None, run_overrides(tiny_dir, tmp_path / "run", "train.steps=2"))
    train(config, on_step=lambda step, m: counts.append(gc.get_freeze_count()))
    assert len(counts) == 2 and min(counts) > 1000
    assert gc.get_freeze_count() == 0


def _faults_per_block(n: int = 4) -> float:
    """Minor page faults per freshly written 48 MB tensor, over ``n`` allocate-free rounds after
    one 64 MB tensor came and went. Both are above glibc's largest mmap threshold (32 MB), so by
    default each is fresh memory; kept, each fits in the room the 64 MB one left. (Rounds of one
    size would not: torch's 64-byte-aligned allocations ask glibc for a little more than the
    hole the previous one left.)"""
    torch.ones(64 << 18)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.ones(48 << 18)  # written, then freed at once
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / n


def _rss_mb() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() >> 20


@glibc
def test_freed_memory_is_reused_inside_the_block_and_returned_after():
    fresh = _faults_per_block()
    assert fresh >= 24  # at least one fault per 2 MB huge page of 48 MB
    with freed_memory_kept() as kept:
        assert kept
        # glibc reuses the room in some rounds or all, by the heap's layout; by default in none
        assert _faults_per_block() < 0.75 * fresh
        before = _rss_mb()
        torch.ones(256 << 18)
        held = _rss_mb()
        assert held > before + 150  # freed, and still resident (less what reused the room)
    assert _rss_mb() < held - 150  # given back to the kernel when the block ends


@glibc
def test_nested_blocks_leave_it_to_the_outermost():
    fresh = _faults_per_block()
    with freed_memory_kept():
        with freed_memory_kept():
            pass
        assert _faults_per_block() < 0.75 * fresh  # still kept after the inner block ended
    assert heap._kept_depth == 0


def test_turned_off_it_changes_nothing():
    with freed_memory_kept(False) as kept:
        assert not kept
        assert heap._kept_depth == 0
    with steps_heap(keep_freed_memory=False):
        assert gc.get_freeze_count() > 0 and heap._kept_depth == 0
