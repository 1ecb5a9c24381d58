import gc
import weakref

from burnish.train.heap import start_up_frozen


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
